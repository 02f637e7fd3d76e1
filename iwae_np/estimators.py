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
"""

import autograd
import autograd.numpy as np
import numpy as onp
from autograd.tracer import getval

from .checks import check_choice
from .distributions import _normal_logpdf, _reparameterize
from .bounds import miwae_bound
from .numerics import _log_mean_exp

ESTIMATORS = ("iwae", "stl", "dreg", "piwae")


def _log_weights_stopped_q(model, theta, x, eps):
    """log w_i with log q(z_i | x) evaluated at *constant* (μ, log σ): the only way φ enters is
    through z_i = μ + σ ε_i, the path derivative."""
    mean, log_std = model.encode(theta, x)
    z = _reparameterize(mean, log_std, eps)
    return model.log_joint(theta, x, z) - _normal_logpdf(z, getval(mean), getval(log_std))


def _softmax_over_k(log_w):
    """w̃ = softmax of log w over the k axis, as a constant (no gradient flows through it)."""
    value = getval(log_w)
    w = onp.exp(value - value.max(axis=0, keepdims=True))
    return w / w.sum(axis=0, keepdims=True)


def surrogates(model, theta, x, eps, estimator="iwae", m=1):
    """(encoder surrogate, decoder surrogate): scalar functions of θ whose gradients, masked to the
    encoder and to the decoder blocks, make up the estimator. Each is a mean over the n points."""
    check_choice("estimator", estimator, ESTIMATORS)

    def iwae(t):
        return np.mean(_log_mean_exp(model._log_weights(t, x, eps), axis=0))

    if estimator == "iwae":
        return iwae, iwae
    if estimator == "piwae":
        return (lambda t: np.mean(miwae_bound(model._log_weights(t, x, eps), m))), iwae
    if estimator == "stl":
        return (lambda t: np.mean(_log_mean_exp(_log_weights_stopped_q(model, t, x, eps), axis=0))), iwae

    def dreg_encoder(t):  # Σ_i stop(w̃_i²) log w_i with q's parameters stopped: the DReG encoder term
        log_w = _log_weights_stopped_q(model, t, x, eps)
        return np.mean(np.sum(_softmax_over_k(log_w) ** 2 * log_w, axis=0))

    return dreg_encoder, iwae


def gradient(model, theta, x, eps, estimator="iwae", m=1):
    """An estimate of ∇_θ L_k (to ascend), from one draw eps (k, n, z_dim). -> (P,).
    m: the number of groups M for "piwae" (k = M·K)."""
    theta = model._check_theta(theta)
    x = model._check_x(x)
    eps = model._check_eps(eps, n=x.shape[0])
    encoder_objective, decoder_objective = surrogates(model, theta, x, eps, estimator, m)
    encoder = model.layout.mask("encoder.")
    grad = autograd.grad(decoder_objective)(theta)
    if encoder_objective is not decoder_objective:
        grad = onp.where(encoder, autograd.grad(encoder_objective)(theta), grad)
    return grad


def snr(model, theta, x, estimator, k, draws=200, seed=0, m=1):
    """Gradient signal-to-noise ratio (Rainforth et al. 2018), per parameter:
    SNR_j = |E[Δ_j]| / std[Δ_j] over ``draws`` independent estimates Δ of the gradient.

    -> {"encoder": SNRs of the encoder's parameters, "decoder": the decoder's} (arrays)."""
    rng = onp.random.default_rng(seed)
    samples = onp.stack([gradient(model, theta, x, model.draw_eps(rng, k, len(x)), estimator, m)
                         for _ in range(draws)])
    mean, std = onp.abs(samples.mean(axis=0)), samples.std(axis=0, ddof=1)
    encoder, varies = model.layout.mask("encoder."), std > 0
    return {"encoder": mean[encoder & varies] / std[encoder & varies],
            "decoder": mean[~encoder & varies] / std[~encoder & varies]}
