"""The fast tier: the same math as the reference functions, in fewer and cheaper passes.

A student reads the reference forms (``params.block``, one ``nets.MLP`` layer a(h W + b),
``distributions.bernoulli_logpmf``). The models run these kernels by default, because they were
measured faster (docs/design.md §1, §2); ``VAE(..., fast=False)`` runs the same model on the
reference tier. ``tests/test_kernels.py`` asserts every kernel equals its reference in values and
gradients, first and second order, in float32 and float64.

Each kernel is an autograd primitive with a hand-derived VJP. The VJPs take a fast in-place path
in the usual case and a traceable ``autograd.numpy`` path when they are differentiated again
(their input or cotangent is itself a box), so grad-of-grad works through every kernel.
"""

import autograd.numpy as anp
import numpy as np
from autograd.extend import SparseObject, defvjp, defvjp_argnums, primitive, vspace
from autograd.tracer import Box, getval

from .numerics import sigmoid

# ---------------------------------------------------------------- reading θ: the sparse block VJP


@primitive
def block(theta, start, stop, shape):
    """θ[start:stop] viewed as an array of ``shape`` (a view: no copy).

    Replaces ``params.block`` (``theta[start:stop].reshape(shape)``). Autograd's slice VJP builds
    a dense zero vector the size of θ per slice and fills it with ``np.add.at``; this VJP adds
    its slice in place into θ's one gradient accumulator (docs/design.md §1).
    """
    return theta[start:stop].reshape(shape)


@primitive
def _block_cotangent(g, start, stop, shape, space):
    """θ's gradient contribution from one block: g added into [start:stop] of the accumulator."""

    def add_into(total):
        # reshape the contiguous slice of total, not g: a transposed g (as matrix-product
        # gradients often are) would be copied by ravel
        total[start:stop].reshape(shape)[...] += g
        return total

    return SparseObject(space, add_into)


defvjp(
    block,
    lambda ans, theta, start, stop, shape: (
        lambda g: _block_cotangent(g, start, stop, shape, vspace(theta))
    ),
)
# Differentiating the cotangent again reads the same block back (it is linear in g).
defvjp(
    _block_cotangent,
    lambda ans, g, start, stop, shape, space: lambda gg: block(gg, start, stop, shape),
)


# ---------------------------------------------------------------- one dense layer, fused


@primitive
def dense(theta, h, W_block, b_block, activation=None):
    """a(h W + b), with W and b read from θ: one primitive for what the reference MLP writes as
    ``block``, ``block``, ``dot``, ``+`` and the activation (five autograd operations). The
    derivatives: tanh' = 1 − tanh², from the saved output (no cosh); relu' = 1 where the output
    is positive, else 0 (as the reference ``nets.relu``).

    Replaces one layer of ``nets.MLP`` on the reference tier. theta: (P,); h: (rows, d_in);
    W_block, b_block: (start, stop, shape) of W (d_in, d_out) and b (d_out,) in θ, adjacent;
    activation: None, "tanh" or "relu". -> (rows, d_out). Fewer operations means less of
    autograd's per-operation bookkeeping, which dominates a step at small k. The derivatives:
    tanh' = 1 − tanh², from the saved output (no cosh); relu' = 1 where the output is positive,
    else 0, as the reference ``nets.relu``.
    """
    W = theta[W_block[0] : W_block[1]].reshape(W_block[2])
    out = h @ W
    out += theta[b_block[0] : b_block[1]]
    if activation == "tanh":
        np.tanh(out, out=out)
    elif activation == "relu":
        np.maximum(out, 0, out=out)
    return out


def _dense_vjps(argnums, ans, args, kwargs):
    """Both cotangents from one pre-activation gradient g' = g ⊙ a'(pre):
    ∂/∂θ: W ← hᵀ g', b ← Σ_rows g' (added in place into θ's accumulator); ∂/∂h: g' Wᵀ."""
    theta, h, W_block, b_block = args[:4]
    activation = args[4] if len(args) > 4 else kwargs.get("activation")
    W = theta[W_block[0] : W_block[1]].reshape(W_block[2])
    space = vspace(theta)

    def vjp(g):
        traced = any(isinstance(v, Box) for v in (g, ans, theta, h))
        xp = anp if traced else np
        if activation == "tanh":
            g_pre = g * (1 - ans * ans)
        elif activation == "relu":
            g_pre = g * (getval(ans) > 0)  # relu' is a constant 0/1 mask
        else:
            g_pre = g
        out = []
        for argnum in argnums:
            if argnum == 0 and traced:  # differentiated again: a dense, traceable θ gradient
                out.append(
                    _dense_theta_cotangent(
                        anp.dot(anp.transpose(h), g_pre),
                        anp.sum(g_pre, axis=0),
                        W_block,
                        b_block,
                        space.size,
                    )
                )
            elif argnum == 0:
                out.append(
                    _dense_theta_sparse(h.T @ g_pre, g_pre.sum(axis=0), W_block, b_block, space)
                )
            else:
                out.append(xp.dot(g_pre, xp.transpose(W)))
        return tuple(out)

    return vjp


def _dense_theta_sparse(g_W, g_b, W_block, b_block, space):
    def add_into(total):
        total[W_block[0] : W_block[1]].reshape(W_block[2])[...] += g_W
        total[b_block[0] : b_block[1]] += g_b
        return total

    return SparseObject(space, add_into)


def _dense_theta_cotangent(g_W, g_b, W_block, b_block, size):
    """θ's gradient from one layer as a dense vector (W then b are adjacent in θ)."""
    dtype = np.result_type(getval(g_W))
    return anp.concatenate(
        [np.zeros(W_block[0], dtype), anp.ravel(g_W), g_b, np.zeros(size - b_block[1], dtype)]
    )


defvjp_argnums(dense, _dense_vjps)


# ---------------------------------------------------------------- the Bernoulli log-likelihood


def unbroadcast(g, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to ``shape``."""
    while anp.ndim(g) > len(shape):
        g = anp.sum(g, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and anp.shape(g)[axis] != 1:
            g = anp.sum(g, axis=axis, keepdims=True)
    return g


@primitive
def bernoulli_log_terms(x, logits):
    """With ``sum_last``, replaces ``distributions.bernoulli_logpmf``. Elementwise,

        log Bern(x_d; σ(ℓ_d)) = x_d ℓ_d − softplus(ℓ_d) = log σ(s_d ℓ_d),   s = 2x − 1.

    For x ∈ {0, 1} the sign s ∈ {−1, +1} folds both cases into one log-sigmoid: log σ(ℓ) when
    x = 1 and log σ(−ℓ) = log(1 − σ(ℓ)) when x = 0. With t = s ℓ,

        log σ(t) = min(t, 0) − log1p(e^{−|t|})          (no exp of a positive number)

    This runs on the largest array of an IWAE step, (k, n, x_dim), so every pass counts: two
    buffers, each pass written in place (docs/design.md §2).
    """
    t = (2 * x - 1) * logits
    softplus_part = np.abs(t)
    np.negative(softplus_part, out=softplus_part)
    np.exp(softplus_part, out=softplus_part)
    np.log1p(softplus_part, out=softplus_part)  # log1p(e^{−|t|})
    np.minimum(t, 0, out=t)
    t -= softplus_part
    return t


def _bernoulli_log_terms_vjp(ans, x, logits):
    """∂/∂ℓ log σ(s ℓ) = s σ(−s ℓ), and σ(−t) = 1 − σ(t) = −expm1(log σ(t)) = −expm1(ans):
    the gradient comes from the saved output in three passes, without recomputing a sigmoid.
    (expm1 keeps full precision where σ(−t) is tiny.)"""

    def vjp(g):
        if isinstance(g, Box) or isinstance(ans, Box):  # differentiated again: traceable ops
            # s σ(−s ℓ) through the sigmoid primitive, whose own derivative keeps full relative
            # precision; expm1(ans) would differentiate as (expm1(ans) + 1), which cancels.
            sign = 2 * x - 1
            return unbroadcast(sign * sigmoid(-sign * logits) * g, anp.shape(logits))
        grad = np.expm1(ans)  # the usual case: in place, one temporary
        grad *= 1 - 2 * x  # −s
        grad *= g
        return unbroadcast(grad, np.shape(logits))

    return vjp


# x is discrete data, so only the logits get a gradient.
defvjp(bernoulli_log_terms, None, _bernoulli_log_terms_vjp)


@primitive
def sum_last(a):
    """Σ over the last axis. a: (..., d) -> (...). Replaces ``anp.sum(a, axis=-1)``."""
    return np.sum(a, axis=-1)


# The gradient of a sum copies g to every summed entry. A broadcast view does that without
# allocating; autograd's own np.sum VJP materializes it as g + zeros(shape), two full passes.
defvjp(sum_last, lambda ans, a: lambda g: anp.broadcast_to(anp.expand_dims(g, -1), anp.shape(a)))


def bernoulli_logpmf(x, logits):
    """Σ_d log Bern(x_d; σ(ℓ_d)) in two fused kernels. Replaces
    ``distributions.bernoulli_logpmf``. x: (n, d) in {0, 1}, logits: (k, n, d) -> (k, n).
    Unchecked: the model calls it on data it has validated."""
    return sum_last(bernoulli_log_terms(x, logits))
