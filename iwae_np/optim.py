"""Optimizers on one flat array (θ, or the stacked per-point λ of classic VI).

Both *maximize*: they step along the gradient of the bound. Their state is a dict of arrays, so a
checkpoint can save it and a resumed run continues exactly.
"""

import math

import numpy as np
from autograd.tracer import getval

from . import kernels
from .checks import (
    all_of,
    check_array,
    check_positive,
    check_real,
    checked,
    finite_result,
    optional,
    positive,
    real,
    same_shape_as,
)


def _like_the_state(name, value, arguments):
    """Rule for ``params``: once an optimizer has stepped, its moments have θ's shape."""
    state = arguments["self"].state
    if state is not None and np.shape(getval(value)) != np.shape(state["m"]):
        raise ValueError(
            f"{name}: expected shape {np.shape(state['m'])}, the shape this "
            f"optimizer has been stepping, got {np.shape(getval(value))}"
        )
    return value


def _squares_representable(name, value, arguments):
    """Rule for Adam's ``grad``: Adam keeps (1 − β₂) g², so that must be a normal float. Above
    √(max)/2 it would overflow and the step would silently be 0. Below √(tiny / (1 − β₂)) it
    loses digits or underflows, which matters only when ε is too small to hide it (ε = 0: the
    step would be wrong, inf or NaN)."""
    adam, grad = arguments["self"], np.asarray(getval(value))
    info = np.finfo(grad.dtype)
    largest = math.sqrt(float(info.max)) / 2
    smallest = math.sqrt(float(info.tiny) / (1 - adam.beta2))
    tiny_matters = adam.eps < smallest / float(info.eps)
    # the usual case in two passes that allocate nothing: no entry beyond ±largest
    if grad.size == 0 or (not tiny_matters and -largest <= grad.min() and grad.max() <= largest):
        return value
    size = np.abs(grad)
    bad = (size > largest) | ((size > 0) & (size < smallest) if tiny_matters else False)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        got = grad[index]
        raise ValueError(
            f"{name}: expected |g| <= {largest:.3g} (and 0 or >= {smallest:.3g} "
            f"when eps is below {smallest / float(info.eps):.3g}) in {grad.dtype}, "
            f"so that Adam's g² is a float, got {got} at index {index}"
        )
    return value


PARAMS = all_of(real(), _like_the_state)
GRAD = all_of(real(), same_shape_as("params"))


# θ + lr · (step direction) beyond the float range is an lr too large for these params.
STEP_FINITE = finite_result("lr", "the updated params overflowed; lower lr")


class Adam:
    """Adam (Kingma & Ba 2015), ascending:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        θ ← θ + lr · m̂ / (√v̂ + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

    Burda et al. use β₁ = 0.9, β₂ = 0.999, ε = 1e-4.
    """

    @checked()
    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-4):
        self.lr = check_positive("lr", lr)
        # β = 1 would divide by 1 − βᵗ = 0 in the bias correction
        self.beta1 = check_real("beta1", beta1, 0, 1, high_open=True)
        self.beta2 = check_real("beta2", beta2, 0, 1, high_open=True)
        self.eps = check_real("eps", eps, 0)
        self.state = None

    @checked(
        returns=STEP_FINITE,
        params=PARAMS,
        grad=all_of(GRAD, _squares_representable),
        lr=optional(positive()),
    )
    def step(self, params, grad, lr=None):
        """One ascent step; returns the new params (a new array). grad: params' shape."""
        if self.state is None:
            self.state = {"m": np.zeros_like(params), "v": np.zeros_like(params), "t": 0}
        s = self.state
        s["t"] += 1
        lr = self.lr if lr is None else lr
        c1, c2 = 1 - self.beta1 ** s["t"], 1 - self.beta2 ** s["t"]
        grad = np.asarray(grad)
        if not self._in_place(params, grad, lr):
            s["m"] = self.beta1 * s["m"] + (1 - self.beta1) * grad
            s["v"] = self.beta2 * s["v"] + (1 - self.beta2) * grad * grad
            m_hat = s["m"] / c1
            v_hat = s["v"] / c2
            # a coordinate whose gradient has always been 0 has m̂ = v̂ = 0 and does not move
            # (with ε = 0 the ratio would be 0/0 = NaN)
            denominator = np.sqrt(v_hat) + self.eps
            ratio = np.divide(m_hat, denominator, out=np.zeros_like(m_hat), where=denominator > 0)
            return params + lr * ratio
        # The kernels tier: the same operations in the same order, block by block in cache,
        # into the moments in place, so the same bits without θ-sized temporaries. Their page
        # faults made the form above take 19 of a 25 ms training step (425k float64 entries,
        # batch 20, k = 1); in place it took 4 ms on the same loaded machine (docs/design.md §19).
        return kernels.adam_update(
            params, grad, s["m"], s["v"], self.beta1, self.beta2, self.eps, lr, s["t"]
        )

    def _in_place(self, params, grad, lr):
        """Can this step update the moments in place? Only when the moments, the gradient and
        θ share one dtype and shape (else NumPy's promotion decides the result, as in the
        allocating form), the moments are writable arrays this optimizer may change, and lr is
        one number (classic VI passes one per point, which broadcasts)."""
        if np.ndim(lr) != 0:
            return False
        s = self.state
        arrays = (s["m"], s["v"])
        if not all(
            isinstance(a, np.ndarray) and a.flags.writeable and a.flags.c_contiguous for a in arrays
        ):
            return False
        params = np.asarray(params)
        dtype, shape = params.dtype, params.shape
        if any(a.dtype != dtype or a.shape != shape for a in (*arrays, grad)):
            return False
        contiguous = params.flags.c_contiguous and grad.flags.c_contiguous
        return contiguous and dtype in (np.float32, np.float64) and self.eps > 0


class SGD:
    """Plain gradient ascent: θ ← θ + lr · g."""

    @checked()
    def __init__(self, lr=1e-2):
        self.lr = check_positive("lr", lr)
        self.state = None

    @checked(returns=STEP_FINITE, params=real(), grad=GRAD, lr=optional(positive()))
    def step(self, params, grad, lr=None):
        """θ + lr · g, a new array."""
        return params + (self.lr if lr is None else lr) * grad


def clip_by_norm(grad, max_norm):
    """Rescale grad to norm ``max_norm`` if it is longer (global-norm clipping):
    g ← g · min(1, max_norm / ‖g‖). grad: any shape, finite; max_norm > 0."""
    grad = check_array("grad", grad)
    max_norm = check_positive("max_norm", max_norm)
    if np.size(grad) == 0:
        return grad
    scale = np.max(np.abs(grad))  # s, in grad's dtype (a long double may exceed float64)
    if scale == 0:
        return grad
    unit = grad / scale  # u = g / s, entries in [−1, 1]
    ratio = np.sqrt(np.sum(unit * unit))  # ‖u‖ ∈ [1, √size]: no overflow, ‖g‖ = s ‖u‖
    with np.errstate(over="ignore"):  # s ‖u‖ may be inf; it is only compared
        if scale * ratio <= max_norm:
            return grad
    # g · max_norm / ‖g‖ = u · (max_norm / ‖u‖): no factor overflows or underflows on the way
    return unit * (max_norm / ratio)
