"""Numerically stable building blocks, each an autograd primitive with a hand-derived VJP.

Why hand-derived: autograd would differentiate the stable formulas through ``max``/``where``
and several temporaries; the closed-form derivatives are one or two elementwise passes.
Why not ``np.logaddexp(0, x)`` for softplus: it measured 30x slower than ``np.exp`` here
(docs/design.md §2).

Every VJP is written with ``autograd.numpy`` operations, so it can itself be differentiated:
grad-of-grad and Hessian-vector products go through these functions (docs/design.md §13).
"""

import math

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

from .checks import axis_of, checked, flag, real


def _keep_reduced_axes(value, axis, ndim):
    """Re-insert the reduced axes of a reduction result so it broadcasts against the input."""
    if axis is None:
        return anp.reshape(value, (1,) * ndim)
    return anp.expand_dims(value, axis)


@primitive
def logsumexp(a, axis=None, keepdims=False):
    """log Σ_i exp(a_i) = m + log Σ_i exp(a_i − m), with m = max_i a_i. a: (...) -> (...).

    Shifting by the max keeps every exp(a_i − m) in [0, 1]: no overflow, and the largest term is
    exactly 1, so no total underflow. The max terms are counted apart, c = #{i: a_i = m}, and the
    rest summed as s, so the result is m + log c + log1p(s / c): terms far below the max
    (a = [0, −40] gives 4.2e-18) survive, where log(1 + s) would round them away. An all −inf
    slice has m = −inf; shift it by 0 instead and the result is log 0 = −inf.
    """
    a = np.asarray(a)
    a_max = np.max(a, axis=axis, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0)
    with np.errstate(over="ignore"):  # a − m below −1.8e308 is −inf, whose exp is the right 0
        terms = np.exp(a - a_max)
    at_max = a == a_max
    count = np.sum(at_max, axis=axis, keepdims=True)
    rest = np.sum(np.where(at_max, 0, terms), axis=axis, keepdims=True)
    c = np.maximum(count, 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = −inf for all −inf slices
        out = np.where(count > 0, np.log(c) + np.log1p(rest / c), np.log(rest)) + a_max
    out = out.astype(np.result_type(a.dtype, np.float32), copy=False)
    if keepdims:
        return out
    return out.reshape(()) if axis is None else np.squeeze(out, axis=axis)


def _logsumexp_vjp(ans, a, axis=None, keepdims=False):
    """∂/∂a_i logsumexp(a) = exp(a_i − logsumexp(a)) = softmax(a)_i.

    −inf entries get exp(−inf) = 0. An all −inf slice would give exp(−inf − (−inf)) = NaN, so its
    result is replaced by 0 there and every weight in it is 0.
    """
    ndim = anp.ndim(a)
    if not keepdims:
        ans = _keep_reduced_axes(ans, axis, ndim)
    ans = anp.where(np.isneginf(getval(ans)), 0.0, ans)

    def vjp(g):
        if not keepdims:
            g = _keep_reduced_axes(g, axis, ndim)
        return g * anp.exp(a - ans)

    return vjp


defvjp(logsumexp, _logsumexp_vjp)
logsumexp = checked(a=real(allow_neg_inf=True, nonempty=True), axis=axis_of("a"), keepdims=flag())(
    logsumexp
)


@checked(a=real(allow_neg_inf=True, nonempty=True), axis=axis_of("a"))
def log_mean_exp(a, axis=0):
    """log (1/k) Σ_i exp(a_i) = logsumexp(a) − log k, over ``axis`` of length k.

    a: (k, ...) with the default axis=0 -> (...).
    """
    shape = anp.shape(a)
    axes = range(len(shape)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    k = math.prod(shape[ax] for ax in axes)
    # a Python float, not np.log: a NumPy float64 scalar would upcast float32 input (NEP 50)
    return logsumexp(a, axis=axis) - math.log(k)


@primitive
def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}), elementwise, written with e = exp(−|x|) ∈ (0, 1] so nothing
    overflows: σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0. x: any shape."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


# σ' = σ(x)(1 − σ(x)) = σ(x) σ(−x); the second form keeps full precision for large x, where
# 1 − σ(x) would cancel (docs/design.md §12).
defvjp(sigmoid, lambda ans, x: lambda g: g * ans * sigmoid(-x))


@primitive
def softplus(x):
    """softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}), elementwise; the exp never
    overflows. x: any shape."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


defvjp(softplus, lambda ans, x: lambda g: g * sigmoid(x))  # softplus' = σ


@primitive
def log_sigmoid(x):
    """log σ(x) = −softplus(−x) = min(x, 0) − log1p(e^{−|x|}), elementwise. x: any shape."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


defvjp(log_sigmoid, lambda ans, x: lambda g: g * sigmoid(-x))  # (log σ)' = 1 − σ = σ(−x)

sigmoid = checked(x=real(allow_inf=True))(sigmoid)
softplus = checked(x=real(allow_inf=True))(softplus)
log_sigmoid = checked(x=real(allow_inf=True))(log_sigmoid)
