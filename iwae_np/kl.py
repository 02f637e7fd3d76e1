"""The ELBO as reconstruction minus KL, with the KL to the prior in closed form.

Since log w = log p(x|z) + log p(z) − log q(z|x), taking E_q of each side gives

    ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))        reconstruction − KL

and for q = N(μ, diag σ²) against the prior p(z) = N(0, I) the KL has a closed form, one term per
latent unit j (so it also says which units carry information about x):

    KL = Σ_j KL_j,   KL_j = ½ (σ_j² + μ_j² − 1 − log σ_j²)

Only the reconstruction term then needs sampling. Whether that lowers the variance of the ELBO's
estimate depends on q: the Monte Carlo terms of log w cancel where q is close to the posterior
(lesson 11 measures both cases).
"""

import math

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import all_of, broadcasting, checked, real
from .distributions import reparameterize
from .models import EPS, THETA, X, one_layer
from .numerics import select

# 1/n! for n = 2 … 20: e^t − 1 − t = Σ_{n≥2} tⁿ/n!, and for |t| < 1 the terms after n = 20 are
# below 1e-19 of the sum
INVERSE_FACTORIALS = [1 / math.factorial(n) for n in range(2, 21)]
SERIES_BELOW = 1.0


@checked(t=real())
def expm1_minus_linear(t):
    """e^t − 1 − t, accurate to a few units in the last place for every t. t: any shape -> the
    same shape.

    For |t| < 1 it is the Taylor series Σ_{n=2}^{20} tⁿ/n! (Horner's rule): there expm1(t) − t
    cancels, losing a fraction of about 2ε/|t| of its value (half of it at |t| = 1e-8, with ε the
    float's resolution). For |t| >= 1 the cancellation costs at most a few ε, so it is
    expm1(t) − t.
    """
    small = np.abs(getval(t)) < SERIES_BELOW
    t_small = select(small, t, 0.0)  # the series sees only small t
    series = INVERSE_FACTORIALS[-1]
    for coefficient in reversed(INVERSE_FACTORIALS[:-1]):
        series = coefficient + t_small * series
    with np.errstate(over="ignore"):  # e^t beyond the float range: +inf, the rounded answer
        return select(small, t_small * t_small * series, anp.expm1(t) - t)


@checked(mean=real(), log_std=all_of(real(), broadcasting("mean", "log_std")))
def gaussian_kl_per_unit(mean, log_std):
    """KL(N(μ, σ²) ‖ N(0, 1)) for each unit: ½ (σ² + μ² − 1 − log σ²), σ = exp(log_std).

    mean, log_std: broadcastable, e.g. (n, d) -> (n, d), one KL per latent unit, each >= 0.
    σ² − 1 − log σ² = e^t − 1 − t with t = 2 log σ is formed by ``expm1_minus_linear``, accurate
    to rounding also for a unit near the prior (σ ≈ 1), where its terms nearly cancel. A σ² or μ²
    beyond the float range gives +inf, the correctly rounded KL.
    """
    with np.errstate(over="ignore"):  # beyond the float range the KL is +inf, correctly rounded
        return 0.5 * (mean * mean + expm1_minus_linear(2 * log_std))


@checked(mean=real(), log_std=all_of(real(), broadcasting("mean", "log_std")))
def gaussian_kl(mean, log_std):
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²), summed over the last axis.

    mean, log_std: broadcastable, e.g. (n, d) -> (n,)."""
    return anp.sum(gaussian_kl_per_unit(mean, log_std), axis=-1)


@checked(model=one_layer("the closed-form KL to the prior N(0, I)"), theta=THETA, x=X, eps=EPS)
def elbo_terms(model, theta, x, eps):
    """The ELBO's two terms for the encoder's q(z|x) = N(μ, diag σ²):

        reconstruction_s = log p(x | z_s),  z_s = μ + σ ⊙ ε_s     (sampled)
        kl = KL(q(z|x) ‖ N(0, I))                                  (closed form)

    so that mean_s(reconstruction_s) − kl estimates the ELBO, and log p(x|z_s) + log p(z_s) −
    log q(z_s|x) = ``model.log_weights`` is the other estimate from the same draws.
    model: a one-layer VAE; theta: (P,); x: (n, x_dim); eps: (k, n, z_dim)
    -> (reconstruction (k, n), kl (n,)).
    """
    mean, log_std = model.encode(theta, x)
    z = reparameterize(mean, log_std, eps)  # (k, n, z_dim)
    return model.log_likelihood(theta, x, z), gaussian_kl(mean, log_std)
