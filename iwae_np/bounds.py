"""Bounds on log p(x), each a function of the log-weights alone, k axis first.

    ELBO:  L   = (1/k) Σ_i log w_i                 (a Monte Carlo estimate of E_q[log w])
    IWAE:  L_k = log (1/k) Σ_i w_i                 (Burda, Grosse & Salakhutdinov 2016)

with w_i = p(x, z_i) / q(z_i|x). By Jensen, E[L_k] ≤ log p(x); E[L_k] grows with k and tends
to log p(x) as k → ∞, and L_1 is the ELBO. A bound knows nothing about networks.
"""

import autograd.numpy as np

from .checks import check_array
from .numerics import _log_mean_exp


def _elbo(log_w):
    return np.mean(log_w, axis=0)


# The unchecked kernels by name, for training loops whose log-weights come from checked data.
BOUNDS = {"elbo": _elbo, "iwae": lambda log_w: _log_mean_exp(log_w, axis=0)}


def _check_log_w(log_w):
    check_array("log_w", log_w, allow_neg_inf=True)
    shape = np.shape(log_w)
    if len(shape) == 0 or shape[0] < 1:
        raise ValueError(f"log_w: expected shape (k, ...) with k >= 1 samples first, got {shape}")


def elbo(log_w):
    """(1/k) Σ_i log w_i. log_w: (k, ...) -> (...)."""
    _check_log_w(log_w)
    return _elbo(log_w)


def iwae_bound(log_w):
    """L_k = log (1/k) Σ_i exp(log w_i), computed stably. log_w: (k, ...) -> (...)."""
    _check_log_w(log_w)
    return _log_mean_exp(log_w, axis=0)
