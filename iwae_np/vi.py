"""Classic (per-sample) variational inference.

Classic VI gives every data point its own variational parameters λ_i = (μ_i, log σ_i) and
maximizes that point's bound with the generative model fixed:

    λ_i* = argmax_λ  L(x_i; λ),   L = ELBO or L_k,  q(z|x_i) = N(μ_i, diag σ_i²)

Amortized inference instead learns one map x → λ (the encoder) and pays a single forward pass
for a new point. The price is the amortization gap L[q*] − L[q_encoder] (Cremer et al. 2018).

The λ_i of all n points are optimized at once as one (n, 2·z_dim) array: the objective is the sum
of per-point bounds, so each λ_i's gradient involves only its own point, and Adam (per-coordinate)
keeps the n problems independent. No Python loop over points.
"""

import time
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from . import threads
from .bounds import BOUNDS
from .checks import checked, integer, number, one_of, positive
from .evaluate import expected_bound
from .models import THETA, X, one_layer
from .optim import Adam


@dataclass
class LocalFit:
    """The result of ``fit_local``.

    mean, log_std: (n, z_dim), each point's λ_i; bound: (n,), E[objective] at λ_i (averaged over
    fresh draws); history: the mean bound over points at each step; seconds: optimization time.
    """

    mean: np.ndarray
    log_std: np.ndarray
    bound: np.ndarray
    objective: str
    k: int
    history: list = field(repr=False)
    seconds: float = 0.0

    @property
    def seconds_per_point(self):
        return self.seconds / len(self.mean)


@checked(
    model=one_layer("classic VI (a q given per point)"),
    theta=THETA,
    x=X,
    objective=one_of(*BOUNDS),
    k=integer(minimum=1),
    steps=integer(minimum=0),
    lr=positive(),
    seed=integer(minimum=0),
    final_lr_fraction=number(0, 1, low_open=True),
    eval_replicates=integer(minimum=1),
)
def fit_local(
    model,
    theta,
    x,
    *,
    objective="elbo",
    k=1,
    steps=500,
    lr=0.05,
    seed=0,
    init=None,
    final_lr_fraction=0.01,
    eval_replicates=200,
):
    """Classic VI: optimize λ_i = (mean_i, log_std_i) for every row x_i, the model fixed.

    model, theta: the generative model (its decoder is used; the encoder is not); one
      stochastic layer only (a TwoLayerVAE is refused with a ValueError).
    x: (n, x_dim). objective: "elbo" or "iwae" (then k samples per step for L_k).
    steps, lr: Adam steps and initial step size; the step size decays geometrically to
      lr·final_lr_fraction so the noisy iterates settle. init: (mean, log_std), each (n, z_dim),
      e.g. the encoder's output; default the prior N(0, I). seed: for ε.
    Returns a LocalFit.
    """
    n, d = len(x), model.z_dim
    if init is None:
        lam = np.zeros((n, 2 * d), dtype=model.dtype)  # every q_i starts at the prior N(0, I)
    else:
        lam = np.concatenate(model.check_lambda(init, n, name="init"), axis=1)
    bound = BOUNDS[objective]

    def total_bound(lam, eps):  # Σ_i L(x_i; λ_i): the gradient for λ_i is that of point i alone
        return anp.sum(bound(model.log_weights_given(theta, x, lam[:, :d], lam[:, d:], eps)))

    step_fn = value_and_grad(total_bound)
    rng = np.random.default_rng(seed)
    adam = Adam(lr)
    decay = final_lr_fraction ** (1.0 / max(1, steps))
    history = []
    start = time.perf_counter()
    with threads.adaptive() as blas:  # BLAS gets the cores other processes leave free
        for step in range(steps):
            blas.update()
            value, grad = step_fn(lam, rng.standard_normal((k, n, d), dtype=model.dtype))
            if not np.isfinite(value) or not np.all(np.isfinite(grad)):
                raise FloatingPointError(
                    f"fit_local: step {step}: the bound or its gradient is not finite; "
                    f"try a lower lr (now {lr * decay**step:.3g})"
                )
            lam = adam.step(lam, grad, lr=lr * decay**step)
            history.append(float(value) / n)
    seconds = time.perf_counter() - start
    mean, log_std = lam[:, :d].copy(), lam[:, d:].copy()
    final = expected_bound(
        model,
        theta,
        x,
        objective,
        k,
        replicates=max(1, eval_replicates // k) if objective == "iwae" else eval_replicates,
        seed=seed + 1,
        lam=(mean, log_std),
    )
    return LocalFit(mean, log_std, final, objective, k, history, seconds)
