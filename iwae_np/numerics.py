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
from autograd.numpy.numpy_vjps import unbroadcast_f
from autograd.tracer import Box, getval, trace_stack

from .checks import axis_of, checked, flag, real


def stop_gradient(value):
    """``value``, held constant for the derivative being taken now (the innermost one).

    Only the box of the innermost trace is removed: an outer derivative (a Hessian-vector product
    of an STL gradient, say) still sees how the value depends on θ. ``getval`` would strip every
    level, and the second derivative would then be that of a different function."""
    if isinstance(value, Box) and value._trace == trace_stack.top:
        return value._value
    return value


def derivative_levels(*values):
    """How many derivatives are being taken through ``values`` now: the number of distinct
    autograd traces among their boxes, nested boxes included (0 for plain arrays, 2 inside a
    Hessian-vector product). Counted from the boxes themselves, not from autograd's global
    trace counter, which stays raised after an exception escapes a derivative."""
    traces = set()
    for value in values:
        while isinstance(value, Box):
            traces.add(value._trace)
            value = value._value
    return len(traces)


@primitive
def select(condition, x, y):
    """x where ``condition`` holds, else y (NumPy's where), differentiable in x and y.

    Autograd's own ``where`` gives the unselected side a float64 zero gradient, which turns a
    float32 gradient into float64; here each side's gradient is g where it was selected, else
    0, in g's dtype, summed back to the side's shape if it was broadcast."""
    return np.where(condition, x, y)


defvjp(
    select,
    None,
    lambda ans, condition, x, y: unbroadcast_f(x, lambda g: select(condition, g, 0.0)),
    lambda ans, condition, x, y: unbroadcast_f(y, lambda g: select(condition, 0.0, g)),
)


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
    ans = select(np.isneginf(getval(ans)), 0.0, ans)

    def vjp(g):
        if not keepdims:
            g = _keep_reduced_axes(g, axis, ndim)
        return g * anp.exp(a - ans)

    return vjp


defvjp(logsumexp, _logsumexp_vjp)
logsumexp = checked(a=real(allow_neg_inf=True, nonempty=True), axis=axis_of("a"), keepdims=flag())(
    logsumexp
)


def _reduced_size(shape, axis):
    """The number of entries a reduction over ``axis`` (None, an int or a tuple) combines."""
    axes = range(len(shape)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    return math.prod(shape[ax] for ax in axes)


@primitive
def log_mean_exp(a, axis=0):
    """log (1/k) Σ_i exp(a_i) = logsumexp(a) − log k, over ``axis`` of length k.

    a: (k, ...) with the default axis=0 -> (...).

    When the result is near 0 (the k values near 0, as the log-weights of a good q are), the form
    m + log c + log1p(·) − log k cancels: [1e-20, 1e-20] would give 0. So the mean is centred on
    the max m instead:

        log (1/k) Σ_i exp(a_i) = m + log1p( (1/k) Σ_i expm1(a_i − m) )

    Every expm1(a_i − m) is in [−1, 0], so their mean s is summed without cancellation, and
    log1p(s) keeps full relative precision. For s < −½ (a result more than log 2 below the max)
    log1p(s) = log(1 + s) would cancel instead, and the logsumexp form is the accurate one.
    """
    a = np.asarray(a)
    k = _reduced_size(a.shape, axis)
    a_max = np.max(a, axis=axis, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0)  # an all −inf slice: shift by 0
    with np.errstate(over="ignore"):
        centred = np.mean(np.expm1(a - a_max), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):  # log1p(−1) = −inf for an all −inf slice
        near = np.log1p(centred) + a_max
    far = logsumexp(a, axis=axis, keepdims=True) - math.log(k)
    out = np.where(centred >= -0.5, near, far).astype(far.dtype, copy=False)
    return out.reshape(()) if axis is None else np.squeeze(out, axis=axis)


def _log_mean_exp_vjp(ans, a, axis=0):
    """∂/∂a_i log mean exp(a) = exp(a_i − ans) / k, the softmax of a (all −inf slices: 0)."""
    ndim = anp.ndim(a)
    k = _reduced_size(anp.shape(a), axis)
    ans = _keep_reduced_axes(ans, axis, ndim)
    ans = select(np.isneginf(getval(ans)), 0.0, ans)
    return lambda g: _keep_reduced_axes(g, axis, ndim) * anp.exp(a - ans) / k


defvjp(log_mean_exp, _log_mean_exp_vjp)
log_mean_exp = checked(a=real(allow_neg_inf=True, nonempty=True), axis=axis_of("a"))(log_mean_exp)


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
