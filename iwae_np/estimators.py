"""Gradient estimators for the IWAE bound, as surrogate objectives plus masks on the flat θ.

With z_i = μ_φ(x) + σ_φ(x) ε_i and w̃_i = w_i / Σ_j w_j, three estimators of ∇L_k:

    "iwae"  the reparameterized gradient of L_k itself:   Σ_i w̃_i ∇ log w_i
    "stl"   "sticking the landing" (Roeder et al. 2017): log q is evaluated with its parameters held
            constant, which drops the score term ∂ log q / ∂φ. Unbiased at k = 1; biased for k > 1
            (Tucker et al. 2018).
    "dreg"  doubly reparameterized (Tucker et al. 2018): the encoder gets
            Σ_i w̃_i² ∂ log w_i / ∂z_i · ∂z_i / ∂φ (unbiased, and its signal does not vanish as k
            grows), while the decoder keeps Σ_i w̃_i ∇_θ log w_i.
    "piwae" partially importance weighted (Rainforth et al. 2018): the decoder ascends IWAE-MK,
            the encoder ascends MIWAE(M, K) on the same M·K samples (set ``m``).

Every estimator gives the decoder the same gradient: log q does not depend on the decoder.
``gradient`` returns ∇ to *ascend* (the bound's gradient) as one vector the length of θ.
Any model of the protocol (models.py) works, the VAE and the TwoLayerVAE alike: the estimators
need only ``log_weights(θ, x, ε, stop_q)``, where stop_q holds q's parameters constant while the
samples stay live (for a TwoLayerVAE, q(h2|h1) still follows its sample h1), and the encoder's
blocks under "encoder." in the layout.
"""

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .bounds import iwae_bound, miwae_bound
from .checks import check_fits, checked, integer, one_of, real
from .models import EPS, THETA, X
from .numerics import select, stop_gradient

ESTIMATORS = ("iwae", "stl", "dreg", "piwae")


@checked(log_w=real(allow_neg_inf=True, nonempty=True))
def normalized_weights(log_w):
    """w̃_i = w_i / Σ_j w_j, the softmax of log w over the k axis, as a constant (no gradient
    flows through it). log_w: (k, ...) -> (k, ...). A column whose weights are all 0 (every
    log w = −inf) has no normalization; its w̃ are 0, as in the bounds' gradients (numerics)."""
    constant = stop_gradient(log_w)  # constant for the derivative being taken, not for outer ones
    shift = getval(log_w).max(axis=0, keepdims=True)
    w = anp.exp(constant - np.where(np.isfinite(shift), shift, 0.0))
    total = anp.sum(w, axis=0, keepdims=True)
    return w / select(getval(total) > 0, total, 1.0)


@checked(estimator=one_of(*ESTIMATORS), m=integer(minimum=1))
def surrogates(model, theta, x, eps, estimator="iwae", m=1):
    """(encoder surrogate, decoder surrogate): scalar functions of θ whose gradients, masked to the
    encoder and to the decoder blocks, make up the estimator. Each is a mean over the n points."""

    def iwae(t):
        return anp.mean(iwae_bound(model.log_weights(t, x, eps)))

    if estimator == "iwae":
        return iwae, iwae
    if estimator == "piwae":
        return (lambda t: anp.mean(miwae_bound(model.log_weights(t, x, eps), m))), iwae
    if estimator == "stl":
        return (lambda t: anp.mean(iwae_bound(model.log_weights(t, x, eps, stop_q=True)))), iwae

    def dreg_encoder(t):  # Σ_i stop(w̃_i²) log w_i with q's parameters stopped: the DReG term
        log_w = model.log_weights(t, x, eps, stop_q=True)
        return anp.mean(anp.sum(normalized_weights(log_w) ** 2 * log_w, axis=0))

    return dreg_encoder, iwae


@checked(theta=THETA, x=X, eps=EPS, estimator=one_of(*ESTIMATORS), m=integer(minimum=1))
def gradient(model, theta, x, eps, estimator="iwae", m=1):
    """An estimate of ∇_θ L_k (to ascend), from one draw eps (k, n, eps_dim), averaged over the
    n points. -> (P,). m: the number of groups M for "piwae" (k = M·K)."""
    encoder_objective, decoder_objective = surrogates(model, theta, x, eps, estimator, m)
    encoder = model.layout.mask("encoder.")
    grad = autograd.grad(decoder_objective)(theta)
    if encoder_objective is not decoder_objective:
        grad = np.where(encoder, autograd.grad(encoder_objective)(theta), grad)
    return grad


@checked(
    theta=THETA,
    x=X,
    estimator=one_of(*ESTIMATORS),
    k=integer(minimum=1),
    draws=integer(minimum=2),
    seed=integer(minimum=0),
    m=integer(minimum=1),
)
def snr(model, theta, x, estimator, k, draws=200, seed=0, m=1):
    """Gradient signal-to-noise ratio (Rainforth et al. 2018), per parameter:
    SNR_j = |E[Δ_j]| / std[Δ_j] over ``draws`` independent estimates Δ of the gradient.

    -> {"encoder": SNRs of the encoder's parameters, "decoder": the decoder's} (arrays)."""
    check_fits("k, draws", k, (max(k, draws), len(x), model.eps_dim + model.x_dim), model.dtype, 4)
    check_fits("draws", draws, (draws, model.layout.size), model.dtype)
    rng = np.random.default_rng(seed)
    samples = np.stack(
        [
            gradient(model, theta, x, model.draw_eps(rng, k, len(x)), estimator, m)
            for _ in range(draws)
        ]
    )
    mean, std = np.abs(samples.mean(axis=0)), samples.std(axis=0, ddof=1)
    encoder, varies = model.layout.mask("encoder."), std > 0
    return {
        "encoder": mean[encoder & varies] / std[encoder & varies],
        "decoder": mean[~encoder & varies] / std[~encoder & varies],
    }
