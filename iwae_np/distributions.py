"""Log-densities summed over the last axis, and reparameterized sampling.

Every density broadcasts like NumPy: observations x of shape (n, d) against parameters of shape
(k, n, d) give (k, n). The last axis is the event axis and is summed.

These are the reference forms, one line of math each. The model runs the Bernoulli likelihood
through a fused kernel by default (``kernels.bernoulli_logpmf``), tested equal to this one.
"""

import math

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import (
    all_of,
    binary,
    broadcasting,
    check_fits,
    checked,
    finite_result,
    generator,
    integer,
    real,
)
from .numerics import log_sigmoid, select

LOG_2PI = math.log(2 * math.pi)


@checked(x=real(), mean=real(), log_std=all_of(real(), broadcasting("x", "mean", "log_std")))
def normal_logpdf(x, mean, log_std):
    """log N(x; μ, diag σ²) = Σ_d [−½ log 2π − log σ_d − ½ ((x_d − μ_d) / σ_d)²], σ = exp(log_std).

    x, mean, log_std: broadcastable, e.g. (n, d), (k, n, d), (d,) -> (k, n).
    """
    # x − μ itself overflows when x and μ are near ±1.8e308 with opposite signs, though u may be
    # modest (σ large). Then it is formed halved, x/2 − μ/2 (halving such numbers is exact), and
    # u doubled below.
    with np.errstate(over="ignore"):
        residual = x - mean
    halve = not np.isfinite(getval(residual)).all()
    if halve:
        residual = x / 2 - mean / 2
    # u = (x − μ)/σ, standardized; exp(−log σ) avoids a division. Where x = μ exactly, u must be
    # 0 even when 1/σ overflows (log σ < −709 in float64): 0 · inf would be NaN. So 1/σ is taken
    # as 1 there (it multiplies 0 anyway), which also keeps the gradient finite. Elsewhere an
    # overflowing u gives −inf, the right floating-point answer for a density below 1e−308.
    # (a product with the 0/1 mask, not anp.where, which does not unbroadcast its gradient)
    # When 1/σ itself overflows (log σ < −709.78 in float64) but u does not (a residual of
    # 1e-320 with log σ = −710 has u ≈ 2e-12), 1/σ is applied as two halves exp(−log σ / 2).
    exponent = -log_std * (getval(residual) != 0)
    log_max = float(np.log(np.finfo(np.result_type(getval(exponent), np.float32)).max))
    split = np.max(getval(exponent), initial=-np.inf) > log_max
    inverse_std = anp.exp(exponent / 2 if split else exponent)
    with np.errstate(over="ignore", invalid="ignore"):
        u = residual * inverse_std
        if split:
            u = u * inverse_std
        if halve:
            u = u * 2
        terms = -0.5 * LOG_2PI - log_std - 0.5 * u * u
        total = anp.sum(terms, axis=-1)
    # Terms near +1.8e308 (log σ ≈ −1.8e308) can sum to +inf beside a −inf term: NaN. A density
    # with a −inf factor is 0 whatever the others are, so such a sum is −inf.
    undefined = np.isnan(getval(total))
    if undefined.any():
        zero_factor = undefined & np.any(np.isneginf(getval(terms)), axis=-1)
        total = select(zero_factor, -np.inf, total)
    return total


@checked(z=real())
def std_normal_logpdf(z):
    """log N(z; 0, I) = Σ_d [−½ log 2π − ½ z_d²]. z: (..., d) -> (...)."""
    return anp.sum(-0.5 * LOG_2PI - 0.5 * z * z, axis=-1)


@checked(x=binary(), logits=all_of(real(), broadcasting("x", "logits")))
def bernoulli_logpmf(x, logits):
    """log Bern(x; σ(ℓ)) = Σ_d [x_d ℓ_d − softplus(ℓ_d)], ℓ = logits.

    (x ℓ − log(1 + e^ℓ) is log σ(ℓ) when x = 1 and log(1 − σ(ℓ)) = log σ(−ℓ) when x = 0.)
    x: (..., d) binary data in {0, 1}; logits: broadcastable against x, e.g. x (n, d) and
    logits (k, n, d) -> (k, n).

    Computed as the same sum written with s = 2x − 1 ∈ {−1, +1}: Σ_d log σ(s_d ℓ_d). The
    difference x ℓ − softplus(ℓ) cancels for a confident, right logit (ℓ = 40, x = 1 gives 0,
    not −4.2e-18); log σ(sℓ) = −log1p(e^{−sℓ}) keeps every digit.
    """
    return anp.sum(log_sigmoid((2 * x - 1) * logits), axis=-1)


def _finite_scale(name, value, arguments):
    """Rule for a log σ: σ = exp(log σ) must be a finite number in log σ's dtype (below
    exp(709.78) in float64, exp(88.72) in float32). An infinite σ is no normal distribution,
    and σ · ε would be inf, or NaN where ε = 0."""
    array = np.asarray(getval(value))
    limit = float(np.log(np.finfo(array.dtype).max))  # np.log: a long double's max is no float
    too_large = array > limit
    if too_large.any():
        index = tuple(int(i) for i in np.argwhere(too_large)[0])
        raise ValueError(
            f"{name}: expected values <= {limit:.2f}, so that exp({name}) is finite "
            f"in {array.dtype}, got {array[index]} at index {index}"
        )
    return value


# log σ for sampling: real, no NaN or inf, σ finite
SCALE = all_of(real(), _finite_scale)


# z = μ + σ·ε beyond the float range: no sample of N(μ, σ²) is that large (finite inputs).
Z_FINITE = finite_result("mean, log_std, eps", "z = μ + σ·ε overflowed the dtype")


@checked(
    returns=Z_FINITE,
    mean=real(),
    log_std=all_of(SCALE, broadcasting("mean", "log_std")),
    eps=all_of(real(), broadcasting("mean", "log_std", "eps")),
)
def reparameterize(mean, log_std, eps):
    """z = μ + σ ⊙ ε with ε ~ N(0, I): a sample of N(μ, diag σ²) that is differentiable in μ, σ.

    mean, log_std: (n, d); eps: (k, n, d) -> z: (k, n, d)."""
    return mean + anp.exp(log_std) * eps


@checked(
    returns=finite_result("mean, log_std", "z = μ + σ·ε overflowed the dtype"),
    rng=generator(),
    mean=real(),
    log_std=all_of(SCALE, broadcasting("mean", "log_std")),
    k=integer(minimum=1),
)
def sample_normal(rng, mean, log_std, k=1):
    """Draw k reparameterized samples z = mean + exp(log_std) * eps, eps ~ N(0, I).

    rng: numpy.random.Generator; mean, log_std: (n, d) -> (z, eps), each (k, n, d), in the dtype
    of ``mean``. Return eps too, so the same draw can be reused (e.g. to recompute log q).
    """
    shape = (k,) + np.broadcast_shapes(np.shape(getval(mean)), np.shape(getval(log_std)))
    dtype = np.result_type(getval(mean), np.float32)
    # the generator draws float32 or float64; a long double's ε is drawn in float64, widened
    drawn = dtype if dtype in (np.float32, np.float64) else np.float64
    check_fits("k", k, shape, dtype, copies=3)  # ε, z and a temporary
    eps = rng.standard_normal(shape, dtype=drawn).astype(dtype, copy=False)
    return reparameterize(mean, log_std, eps), eps
