"""Bounds on log p(x), each a function of the log-weights alone, k axis first.

    ELBO:  L   = (1/k) Σ_i log w_i                 (a Monte Carlo estimate of E_q[log w])
    IWAE:  L_k = log (1/k) Σ_i w_i                 (Burda, Grosse & Salakhutdinov 2016)

with w_i = p(x, z_i) / q(z_i|x). By Jensen, E[L_k] ≤ log p(x); E[L_k] grows with k and tends
to log p(x) as k → ∞, and L_1 is the ELBO. A bound knows nothing about networks.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import checked, generator, integer, number, real
from .numerics import log_mean_exp, select

# log_w: (k, ...) with k >= 1 samples first; −inf (a zero weight) is allowed, NaN and +inf not.
LOG_W = real(allow_neg_inf=True)


def _samples_first(name, value, arguments):
    value = LOG_W(name, value, arguments)
    shape = np.shape(getval(value))
    if len(shape) == 0 or shape[0] < 1:
        raise ValueError(f"log_w: expected shape (k, ...) with k >= 1 samples first, got {shape}")
    return value


def _mean_over_samples(a):
    """(1/k) Σ_i a_i over axis 0. Values near the largest float are averaged as Σ_i (a_i / k),
    so the sum cannot overflow on the way (two log-weights of 1.7e308 average to 1.7e308, not
    inf); everything else is Σ_i a_i / k, which rounds exactly as NumPy's mean. (Not anp.mean:
    its gradient divides by a NumPy integer, which turns a float32 gradient into float64.)"""
    value = getval(a)
    k = int(anp.shape(a)[0])  # a Python int keeps the dtype (NEP 50)
    finite = value[np.isfinite(value)]
    if finite.size and np.max(np.abs(finite)) > np.finfo(value.dtype).max / 4:
        return anp.sum(a / k, axis=0)
    return anp.sum(a, axis=0) / k


@checked(log_w=_samples_first)
def elbo(log_w):
    """(1/k) Σ_i log w_i. log_w: (k, ...) -> (...)."""
    return _mean_over_samples(log_w)


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

    α = 0 is the IWAE bound; α → 1 is the ELBO (L_1 is defined as the ELBO, its limit).
    log_w: (k, ...) -> (...).

    Computed without the 0/0 near α = 1. With t = 1 − α, c the mean of the finite log w_i and
    d_i = log w_i − c (so Σ d_i ≈ 0):

        L_α = c + log1p( (1/k) Σ_i expm1(t d_i) ) / t

    expm1 and log1p keep full relative precision as t → 0, where the direct form loses
    log k · ε / t to cancellation. When some t·d_i is large (> 1) the direct, max-shifted
    log-mean-exp is accurate, so that form is used there, shifted by the log w_i of the largest
    t·log w_i (m below) so that t·log w_i cannot overflow either: L_α = m + L_α(log w − m).
    """
    t = 1.0 - alpha
    if t == 0:
        return elbo(log_w)
    finite = np.isfinite(getval(log_w))
    dtype = getval(log_w).dtype  # every array below is made in it: float32 stays float32
    k_finite = np.maximum(np.sum(finite, axis=0), 1).astype(dtype)
    safe_log_w = select(finite, log_w, 0.0)  # −inf entries leave the centre alone
    # each term divided before the sum, so log-weights near ±1.8e308 cannot overflow it (any c
    # gives the same L_α; this one makes the d_i small)
    centre = anp.sum(safe_log_w / k_finite, axis=0)
    with np.errstate(over="ignore"):  # a d_i beyond the float range fails `small` below
        scaled = t * (log_w - centre)  # t d_i; −inf (w_i = 0) stays −inf for t > 0, +inf for t < 0
    if t < 0 and not np.all(finite):  # w_i = 0 with a negative power: w_i^t = inf, L_α = −inf
        with_inf = ~np.all(finite, axis=0)
    else:
        with_inf = np.zeros(np.shape(centre), dtype=bool)
    small = np.all(np.where(finite, getval(scaled), -np.inf) <= 1.0, axis=0) & ~with_inf
    # expm1 path, on inputs clamped to <= 1 so the unused side of the `where` stays finite
    clamped = select(finite & small, scaled, np.where(finite, 0.0, -np.inf).astype(dtype))
    with np.errstate(divide="ignore"):  # log1p(−1) = −inf where every w_i = 0
        near = centre + anp.log1p(_mean_over_samples(anp.expm1(clamped))) / t
    # m: the log w_i with the largest t·log w_i (max for t > 0, min for t < 0), a constant
    # (any m gives the same L_α); every t·(log w_i − m) <= 0, so nothing overflows
    m = np.where(finite, getval(log_w), -np.inf if t > 0 else np.inf)
    m = np.max(m, axis=0) if t > 0 else np.min(m, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)  # an all −inf column: any m, L_α = −inf
    with np.errstate(over="ignore"):  # log w_i − m beyond the float range: its weight is 0
        shifted = select(finite | ~with_inf, t * (log_w - m), 0.0)
    direct = m + log_mean_exp(shifted, axis=0) / t
    return select(with_inf, -np.inf, select(small, near, direct))


def _groups(log_w, m):
    k = anp.shape(log_w)[0]
    if k % m:
        raise ValueError(f"m: expected a whole number of groups dividing k = {k}, got {m!r}")
    return anp.reshape(log_w, (m, k // m) + anp.shape(log_w)[1:])


@checked(log_w=_samples_first, m=integer(minimum=1))
def miwae_bound(log_w, m):
    """MIWAE(M, K) (Rainforth et al. 2018): the k = M·K samples in M groups of K, and the mean over
    groups of each group's IWAE bound L_K. M = 1 is IWAE_k, M = k is the ELBO. log_w: (M·K, ...)."""
    return _mean_over_samples(log_mean_exp(_groups(log_w, m), axis=1))


@checked(log_w=_samples_first, beta=number(0, 1))
def ciwae_bound(log_w, beta):
    """CIWAE(β) (Rainforth et al. 2018): β · ELBO + (1 − β) · IWAE on the same k samples.
    β = 0 and β = 1 are exactly the IWAE bound and the ELBO (0 · (−inf) is never formed)."""
    if beta == 0:
        return iwae_bound(log_w)
    if beta == 1:
        return elbo(log_w)
    lower = elbo(log_w)
    # A zero weight makes the ELBO −inf, and then CIWAE is −inf for every β > 0, even a β that
    # rounds to 0 in float32 (where β·(−inf) would be NaN).
    with np.errstate(invalid="ignore"):
        mixed = beta * lower + (1 - beta) * iwae_bound(log_w)
    return select(np.isneginf(getval(lower)), -np.inf, mixed)


# ---------------------------------------------------------------- the sampler behind L_k


def _proposals(name, value, arguments):
    """z: (k, M, d) proposals, finite, matching log_w's (k, M)."""
    value = real(ndim=3)(name, value, arguments)
    log_w = np.shape(getval(arguments["log_w"]))
    if np.shape(value)[:2] != log_w:
        raise ValueError(
            f"z: expected shape (k, M, d) with (k, M) = log_w's shape {log_w}, "
            f"got {np.shape(value)}"
        )
    return value


def _groups_of_weights(name, value, arguments):
    """log_w: (k, M), k >= 1, each group with at least one finite log-weight."""
    value = LOG_W(name, value, arguments)
    if np.ndim(value) != 2 or np.shape(value)[0] < 1:
        raise ValueError(f"log_w: expected shape (k, M) with k >= 1, got {np.shape(value)}")
    empty = ~np.any(np.isfinite(value), axis=0)
    if np.any(empty):
        raise ValueError(
            f"log_w: expected at least one finite log-weight in every group, got all −inf in "
            f"group {int(np.flatnonzero(empty)[0])}"
        )
    return value


@checked(log_w=_groups_of_weights, z=_proposals, rng=generator())
def sir_resample(z, log_w, rng):
    """Sampling–importance–resampling: from each of M groups of k proposals z_1..z_k ~ q, keep
    one, index i with probability w̃_i = w_i / Σ_j w_j = softmax(log w)_i. The kept z follows
    q̃_k, the distribution whose ELBO is at least L_k (Cremer, Morris & Duvenaud 2017); q̃_1 = q,
    and q̃_k → p(z|x) as k → ∞.

    z: (k, M, d), log_w: (k, M) -> (M, d). One uniform u_m ~ U(0, 1) per group (from ``rng``)
    picks the first i with Σ_{j<=i} w̃_j > u_m. Not differentiable (a sampler, not a bound).
    """
    log_w = np.asarray(getval(log_w))
    shifted = np.exp(log_w - np.max(log_w, axis=0))  # w_i / max_j w_j: the largest is 1
    cumulative = np.cumsum(shifted, axis=0)  # (k, M), last row Σ_j w_j / max_j w_j >= 1
    u = rng.random(log_w.shape[1]) * cumulative[-1]
    index = np.sum(cumulative <= u, axis=0)
    # u·Σ may round up to Σ itself: then the last proposal with a nonzero weight, never one
    # with w_i = 0
    last = log_w.shape[0] - 1 - np.argmax(shifted[::-1] > 0, axis=0)
    return np.asarray(getval(z))[np.minimum(index, last), np.arange(log_w.shape[1])]
