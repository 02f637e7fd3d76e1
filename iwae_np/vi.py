"""Classic (per-sample) variational inference, and the gaps it measures.

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

import autograd
import autograd.numpy as np
from autograd import value_and_grad
from autograd.tracer import getval

from .bounds import BOUNDS
from .checks import check_choice, check_int, check_positive
from .evaluate import expected_bound
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


def fit_local(model, theta, x, *, objective="elbo", k=1, steps=500, lr=0.05, seed=0, init=None,
              final_lr_fraction=0.01, eval_replicates=200):
    """Classic VI: optimize λ_i = (mean_i, log_std_i) for every row x_i, the model fixed.

    model, theta: the generative model (its decoder is used; the encoder is not).
    x: (n, x_dim). objective: "elbo" or "iwae" (then k samples per step for L_k).
    steps, lr: Adam steps and initial step size; the step size decays geometrically to
      lr·final_lr_fraction so the noisy iterates settle. init: (mean, log_std), each (n, z_dim),
      e.g. the encoder's output; default the prior N(0, I). seed: for ε.
    Returns a LocalFit.
    """
    theta = model._check_theta(theta)
    x = model._check_x(x)
    check_choice("objective", objective, tuple(BOUNDS))
    check_int("k", k, minimum=1)
    check_int("steps", steps, minimum=0)
    check_positive("lr", lr)
    n, d = len(x), model.z_dim
    if init is None:
        lam = np.zeros((n, 2 * d), dtype=model.dtype)  # every q_i starts at the prior N(0, I)
    else:
        lam = np.concatenate(model._check_lambda(init, n, name="init"), axis=1)
    bound = BOUNDS[objective]

    def total_bound(lam, eps):  # Σ_i L(x_i; λ_i): the gradient for λ_i is that of point i alone
        return np.sum(bound(model._log_weights_given(theta, x, lam[:, :d], lam[:, d:], eps)))

    step_fn = value_and_grad(total_bound)
    rng = np.random.default_rng(seed)
    adam = Adam(lr)
    decay = final_lr_fraction ** (1.0 / max(1, steps))
    history = []
    start = time.perf_counter()
    for step in range(steps):
        value, grad = step_fn(lam, rng.standard_normal((k, n, d), dtype=model.dtype))
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            raise FloatingPointError(
                f"fit_local: step {step}: the bound or its gradient is not finite; "
                f"try a lower lr (now {lr * decay ** step:.3g})")
        lam = adam.step(lam, grad, lr=lr * decay ** step)
        history.append(float(value) / n)
    seconds = time.perf_counter() - start
    mean, log_std = lam[:, :d].copy(), lam[:, d:].copy()
    final = expected_bound(model, theta, x, objective, k, replicates=max(1, eval_replicates // k)
                           if objective == "iwae" else eval_replicates, seed=seed + 1,
                           lam=(mean, log_std))
    return LocalFit(mean, log_std, final, objective, k, history, seconds)


def amortization_gap(model, theta, x, *, steps=500, lr=0.05, seed=0, replicates=200):
    """Cremer et al.'s amortization gap, ELBO[q*] − ELBO[q_encoder], per point.

    q* comes from classic VI started at the encoder's λ (so it can only improve on it).
    Returns {"encoder_elbo", "local_elbo", "gap"}, each (n,), and the LocalFit.
    """
    theta = model._check_theta(theta)
    x = model._check_x(x)
    encoder_elbo = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed)
    fit = fit_local(model, theta, x, steps=steps, lr=lr, seed=seed, init=model.encode(theta, x),
                    eval_replicates=replicates)
    return {"encoder_elbo": encoder_elbo, "local_elbo": fit.bound,
            "gap": fit.bound - encoder_elbo}, fit


def inference_gaps(model, theta, x, log_px, *, steps=1000, lr=0.05, seed=0, replicates=200):
    """Split the encoder's shortfall log p(x) − ELBO[q_encoder] into Cremer et al.'s two gaps:

        approximation gap  = log p(x) − ELBO[q*]          (the family of q is too poor)
        amortization gap   = ELBO[q*] − ELBO[q_encoder]   (one shared x → λ is too poor)

    q* is classic VI's best diagonal Gaussian, started at the encoder's λ. log_px: (n,) exact
    log p(x) (closed form or quadrature). Returns a dict of per-point arrays.
    """
    gaps, _ = amortization_gap(model, theta, x, steps=steps, lr=lr, seed=seed, replicates=replicates)
    log_px = np.asarray(log_px, dtype=float)
    if log_px.shape != (len(gaps["gap"]),):
        raise ValueError(f"log_px: expected shape ({len(gaps['gap'])},), got {log_px.shape}")
    return {"log_px": log_px, "local_elbo": gaps["local_elbo"], "encoder_elbo": gaps["encoder_elbo"],
            "approximation_gap": log_px - gaps["local_elbo"], "amortization_gap": gaps["gap"]}


def refine(model, theta, x, eps, lr=0.1, from_encoder=True):
    """K gradient-ascent steps on each point's ELBO from λ₀ (the encoder's, or the prior's):

        λ_{t+1} = λ_t + lr · ∇_λ ELBO(x; λ_t, ε_t),   t = 0 … K−1

    eps: (K, k, n, z_dim). Differentiable in θ through every step. -> λ_K (n, 2·z_dim)."""
    d = model.z_dim
    if from_encoder:
        mean, log_std = model.encode(theta, x)
        lam = np.concatenate([mean, log_std], axis=1)
    else:
        lam = np.zeros((len(x), 2 * d), dtype=model.dtype)
    step = autograd.grad(lambda lam, e: np.sum(_point_elbos(model, theta, x, lam, e)))
    for e in eps:
        lam = lam + lr * step(lam, e)
    return lam


def _point_elbos(model, theta, x, lam, eps):
    d = model.z_dim
    return BOUNDS["elbo"](model._log_weights_given(theta, x, lam[:, :d], lam[:, d:], eps))


def semi_amortized_elbo(model, theta, x, eps, lr=0.1, from_encoder=True, through_steps=True):
    """Semi-amortized VI (Kim et al. 2018): the ELBO at λ_K, K = len(eps) − 1 refinement steps
    (``refine``) from the encoder's λ₀. eps: (K+1, k, n, z_dim); the last draw estimates the
    final ELBO. -> (n,).

    With through_steps=True autograd differentiates through all K steps, so the encoder learns a
    starting point that refines well. from_encoder=False, through_steps=False is plain SVI: λ
    starts at the prior and the model sees λ_K as a constant.
    """
    lam = refine(model, theta, x, eps[:-1], lr, from_encoder)
    if not through_steps:
        lam = getval(lam)
    return _point_elbos(model, theta, x, lam, eps[-1])
