"""Bounds on log p(x), each a function of the log-weights alone, k axis first.

    ELBO:  L   = (1/k) Σ_i log w_i                 (a Monte Carlo estimate of E_q[log w])
    IWAE:  L_k = log (1/k) Σ_i w_i                 (Burda, Grosse & Salakhutdinov 2016)

with w_i = p(x, z_i) / q(z_i|x). By Jensen, E[L_k] ≤ log p(x); E[L_k] grows with k and tends
to log p(x) as k → ∞, and L_1 is the ELBO. A bound knows nothing about networks.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import checked, integer, number, real
from .numerics import log_mean_exp

# log_w: (k, ...) with k >= 1 samples first; −inf (a zero weight) is allowed, NaN and +inf not.
LOG_W = real(allow_neg_inf=True)


def _samples_first(name, value, arguments):
    value = LOG_W(name, value, arguments)
    shape = np.shape(getval(value))
    if len(shape) == 0 or shape[0] < 1:
        raise ValueError(f"log_w: expected shape (k, ...) with k >= 1 samples first, got {shape}")
    return value


@checked(log_w=_samples_first)
def elbo(log_w):
    """(1/k) Σ_i log w_i. log_w: (k, ...) -> (...)."""
    return anp.mean(log_w, axis=0)


@checked(log_w=_samples_first)
def iwae_bound(log_w):
    """L_k = log (1/k) Σ_i exp(log w_i), computed stably. log_w: (k, ...) -> (...)."""
    return log_mean_exp(log_w, axis=0)


# The bounds a training loop can take by name.
BOUNDS = {"elbo": elbo, "iwae": iwae_bound}


# ---------------------------------------------------------------- the bound family


@checked(log_w=_samples_first, alpha=number())
def vr_bound(log_w, alpha):
    """The variational Rényi bound (Li & Turner 2016), estimated from k samples:

        L_α = 1/(1−α) · log (1/k) Σ_i w_i^(1−α)

    α = 0 is the IWAE bound; α → 1 is the ELBO. Near α = 1 the ratio is 0/0, so there it uses the
    cumulant expansion L_α = κ₁ + κ₂ t/2 + κ₃ t²/6 + O(t³), t = 1 − α, with κ the sample cumulants
    of log w (mean, variance, third central moment). log_w: (k, ...) -> (...)."""
    t = 1.0 - alpha
    if abs(t) < 1e-3:
        mean = anp.mean(log_w, axis=0)
        centred = log_w - mean
        second, third = anp.mean(centred ** 2, axis=0), anp.mean(centred ** 3, axis=0)
        return mean + second * t / 2 + third * t * t / 6
    return log_mean_exp(t * log_w, axis=0) / t


def _groups(log_w, m):
    k = anp.shape(log_w)[0]
    if k % m:
        raise ValueError(f"m: expected a whole number of groups dividing k = {k}, got {m!r}")
    return anp.reshape(log_w, (m, k // m) + anp.shape(log_w)[1:])


@checked(log_w=_samples_first, m=integer(minimum=1))
def miwae_bound(log_w, m):
    """MIWAE(M, K) (Rainforth et al. 2018): the k = M·K samples in M groups of K, and the mean over
    groups of each group's IWAE bound L_K. M = 1 is IWAE_k, M = k is the ELBO. log_w: (M·K, ...)."""
    return anp.mean(log_mean_exp(_groups(log_w, m), axis=1), axis=0)


@checked(log_w=_samples_first, beta=number(0, 1))
def ciwae_bound(log_w, beta):
    """CIWAE(β) (Rainforth et al. 2018): β · ELBO + (1 − β) · IWAE on the same k samples."""
    return beta * elbo(log_w) + (1 - beta) * iwae_bound(log_w)
