"""Optimizers on one flat array (θ, or the stacked per-point λ of classic VI).

Both *maximize*: they step along the gradient of the bound. Their state is a dict of arrays, so a
checkpoint can save it and a resumed run continues exactly.
"""

import numpy as np

from .checks import check_array, check_positive, check_real


class Adam:
    """Adam (Kingma & Ba 2015), ascending:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        θ ← θ + lr · m̂ / (√v̂ + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

    Burda et al. use β₁ = 0.9, β₂ = 0.999, ε = 1e-4.
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-4):
        self.lr = check_positive("lr", lr)
        # β = 1 would divide by 1 − βᵗ = 0 in the bias correction
        self.beta1 = check_real("beta1", beta1, 0, 1, high_open=True)
        self.beta2 = check_real("beta2", beta2, 0, 1, high_open=True)
        self.eps = check_real("eps", eps, 0)
        self.state = None

    def step(self, params, grad, lr=None):
        """One ascent step; returns the new params (a new array). grad: params' shape."""
        if self.state is None:
            self.state = {"m": np.zeros_like(params), "v": np.zeros_like(params), "t": 0}
        s = self.state
        s["t"] += 1
        s["m"] = self.beta1 * s["m"] + (1 - self.beta1) * grad
        s["v"] = self.beta2 * s["v"] + (1 - self.beta2) * grad * grad
        m_hat = s["m"] / (1 - self.beta1 ** s["t"])
        v_hat = s["v"] / (1 - self.beta2 ** s["t"])
        return params + (self.lr if lr is None else lr) * m_hat / (np.sqrt(v_hat) + self.eps)


class SGD:
    """Plain gradient ascent: θ ← θ + lr · g."""

    def __init__(self, lr=1e-2):
        self.lr = check_positive("lr", lr)
        self.state = None

    def step(self, params, grad, lr=None):
        return params + (self.lr if lr is None else lr) * grad


def clip_by_norm(grad, max_norm):
    """Rescale grad to norm ``max_norm`` if it is longer (global-norm clipping):
    g ← g · min(1, max_norm / ‖g‖). grad: any shape, finite; max_norm > 0."""
    grad = check_array("grad", grad)
    max_norm = check_positive("max_norm", max_norm)
    scale = float(np.max(np.abs(grad))) if np.size(grad) else 0.0
    if scale == 0.0:
        return grad
    norm = scale * float(np.linalg.norm(grad / scale))  # ‖g‖ = s ‖g / s‖: no overflow of g²
    return grad * (max_norm / norm) if norm > max_norm else grad
