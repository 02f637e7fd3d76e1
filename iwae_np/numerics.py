"""Numerically stable building blocks, each an autograd primitive with a hand-derived VJP.

Why hand-derived: autograd would differentiate the stable formulas through ``max``/``where``
and several temporaries; the closed-form derivatives are one or two elementwise passes.
Why not ``np.logaddexp(0, x)`` for softplus: it measured 30x slower than ``np.exp`` here
(DESIGN.md, decision 2).

The public functions check their input (no NaN in, so no NaN out) and call the unchecked
kernels ``_logsumexp``, ``_softplus``, ... which the rest of the package uses on data that has
already been checked.
"""

import math

import numpy as onp
from autograd.extend import defvjp, primitive

from .checks import check_array


def _keep_reduced_axes(value, axis, ndim):
    """Re-insert the reduced axes of a reduction result so it broadcasts against the input."""
    if axis is None:
        return onp.reshape(value, (1,) * ndim)
    return onp.expand_dims(value, axis)


@primitive
def _logsumexp(a, axis=None, keepdims=False):
    """log Σ_i exp(a_i) = m + log Σ_i exp(a_i − m), with m = max_i a_i.

    Shifting by the max keeps every exp(a_i − m) in [0, 1]: no overflow, and the largest term is
    exactly 1, so no total underflow. An all −inf slice has m = −inf; shift it by 0 instead and
    the result is log 0 = −inf, as it should be.
    """
    a_max = onp.max(a, axis=axis, keepdims=True)
    a_max = onp.where(onp.isfinite(a_max), a_max, 0)
    with onp.errstate(divide="ignore"):  # log(0) = -inf is the right answer for all -inf slices
        out = onp.log(onp.sum(onp.exp(a - a_max), axis=axis, keepdims=True)) + a_max
    if keepdims:
        return out
    return out.reshape(()) if axis is None else onp.squeeze(out, axis=axis)


def _logsumexp_vjp(ans, a, axis=None, keepdims=False):
    """∂/∂a_i logsumexp(a) = exp(a_i − logsumexp(a)) = softmax(a)_i.

    −inf entries get exp(−inf) = 0. An all −inf slice would give exp(−inf − (−inf)) = NaN, so its
    result is replaced by 0 there and every weight in it is 0.
    """
    ndim = onp.ndim(a)
    if not keepdims:
        ans = _keep_reduced_axes(ans, axis, ndim)
    ans = onp.where(onp.isneginf(ans), 0, ans)

    def vjp(g):
        if not keepdims:
            g = _keep_reduced_axes(g, axis, ndim)
        return g * onp.exp(a - ans)

    return vjp


defvjp(_logsumexp, _logsumexp_vjp)


@primitive
def _sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}), written with e = exp(−|x|) ∈ (0, 1] so nothing overflows:
    σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0."""
    e = onp.exp(-onp.abs(x))
    return onp.where(x >= 0, 1, e) / (1 + e)


# σ' = σ(x)(1 − σ(x)) = σ(x) σ(−x); the second form keeps full precision for large x, where
# 1 − σ(x) would cancel.
defvjp(_sigmoid, lambda ans, x: lambda g: g * ans * _sigmoid(-x))


@primitive
def _softplus(x):
    """softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}); the exp never overflows."""
    return onp.maximum(x, 0) + onp.log1p(onp.exp(-onp.abs(x)))


defvjp(_softplus, lambda ans, x: lambda g: g * _sigmoid(x))  # softplus' = σ


@primitive
def _log_sigmoid(x):
    """log σ(x) = −softplus(−x) = min(x, 0) − log1p(e^{−|x|})."""
    return onp.minimum(x, 0) - onp.log1p(onp.exp(-onp.abs(x)))


defvjp(_log_sigmoid, lambda ans, x: lambda g: g * _sigmoid(-x))  # (log σ)' = 1 − σ = σ(−x)


# ---------------------------------------------------------------- public, checked entry points


def logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a) over ``axis``, stable for any finite input and for −inf entries.

    a: (...) array; axis: int, tuple or None (all axes). Gradient: the softmax of ``a``.
    """
    check_array("a", a, allow_neg_inf=True)
    if onp.size(a) == 0:
        raise ValueError(f"a: expected a non-empty array, got shape {onp.shape(a)}")
    return _logsumexp(a, axis=axis, keepdims=keepdims)


def log_mean_exp(a, axis=0):
    """log (1/k) Σ_i exp(a_i) = logsumexp(a) − log k, over ``axis`` of length k.

    a: (k, ...) with the default axis=0 -> (...).
    """
    check_array("a", a, allow_neg_inf=True)
    if onp.size(a) == 0:
        raise ValueError(f"a: expected a non-empty array, got shape {onp.shape(a)}")
    return _log_mean_exp(a, axis)


def _log_mean_exp(a, axis=0):
    axes = (axis,) if isinstance(axis, int) else tuple(range(onp.ndim(a))) if axis is None else axis
    k = int(onp.prod([onp.shape(a)[ax] for ax in axes]))
    # a Python float, not onp.log: a NumPy float64 scalar would upcast float32 input (NEP 50)
    return _logsumexp(a, axis=axis) - math.log(k)


def sigmoid(x):
    """σ(x) = 1 / (1 + exp(−x)), elementwise. x: any shape."""
    check_array("x", x, allow_inf=True)
    return _sigmoid(x)


def softplus(x):
    """softplus(x) = log(1 + exp(x)), elementwise; stable for |x| up to 1e4 and beyond."""
    check_array("x", x, allow_inf=True)
    return _softplus(x)


def log_sigmoid(x):
    """log σ(x) = −softplus(−x), elementwise; stable for |x| up to 1e4 and beyond."""
    check_array("x", x, allow_inf=True)
    return _log_sigmoid(x)
