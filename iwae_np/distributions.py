"""Log-densities summed over the last axis, and reparameterized sampling.

Every density broadcasts like NumPy: observations x of shape (n, d) against parameters of shape
(k, n, d) give (k, n). The last axis is the event axis and is summed.
"""

import math

import autograd.numpy as np
import numpy as onp
from autograd.extend import Box, defvjp, primitive

from .checks import check_array, check_binary, check_int

LOG_2PI = math.log(2 * math.pi)


def _normal_logpdf(x, mean, log_std):
    """log N(x; μ, diag σ²) = Σ_d [−½ log 2π − log σ_d − ½ ((x_d − μ_d) / σ_d)²]."""
    u = (x - mean) * np.exp(-log_std)  # standardized residual; exp(-log σ) avoids a division
    return np.sum(-0.5 * LOG_2PI - log_std - 0.5 * u * u, axis=-1)


def _std_normal_logpdf(z):
    """log N(z; 0, I) = Σ_d [−½ log 2π − ½ z_d²]."""
    return np.sum(-0.5 * LOG_2PI - 0.5 * z * z, axis=-1)


def _unbroadcast(g, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to ``shape``."""
    while np.ndim(g) > len(shape):
        g = np.sum(g, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and np.shape(g)[axis] != 1:
            g = np.sum(g, axis=axis, keepdims=True)
    return g


@primitive
def _bernoulli_log_terms(x, logits):
    """Elementwise log Bern(x_d; σ(ℓ_d)) = x_d ℓ_d − softplus(ℓ_d) = log σ(s_d ℓ_d), s = 2x − 1.

    For x ∈ {0, 1} the sign s ∈ {−1, +1} folds both cases into one log-sigmoid: log σ(ℓ) when
    x = 1 and log σ(−ℓ) = log(1 − σ(ℓ)) when x = 0. With t = s ℓ,

        log σ(t) = min(t, 0) − log1p(e^{−|t|})          (no exp of a positive number)

    This runs on the largest array of an IWAE step, (k, n, x_dim), so every pass counts: two
    buffers, each pass written in place (DESIGN.md: count the passes over the decoder output).
    """
    t = (2 * x - 1) * logits
    softplus_part = onp.abs(t)
    onp.negative(softplus_part, out=softplus_part)
    onp.exp(softplus_part, out=softplus_part)
    onp.log1p(softplus_part, out=softplus_part)  # log1p(e^{−|t|})
    onp.minimum(t, 0, out=t)
    t -= softplus_part
    return t


def _bernoulli_log_terms_vjp(ans, x, logits):
    """∂/∂ℓ log σ(s ℓ) = s σ(−s ℓ), and σ(−t) = 1 − σ(t) = −expm1(log σ(t)) = −expm1(ans):
    the gradient comes from the saved output in three passes, without recomputing a sigmoid.
    (expm1 keeps full precision where σ(−t) is tiny.)"""
    def vjp(g):
        if isinstance(g, Box) or isinstance(ans, Box):  # differentiated again: traceable ops
            return _unbroadcast(np.expm1(ans) * (1 - 2 * x) * g, onp.shape(logits))
        grad = onp.expm1(ans)  # the usual case: in place, one temporary
        grad *= 1 - 2 * x  # −s
        grad *= g
        return _unbroadcast(grad, onp.shape(logits))

    return vjp


# x is discrete data, so only the logits get a gradient.
defvjp(_bernoulli_log_terms, None, _bernoulli_log_terms_vjp)


@primitive
def _sum_last(a):
    """Σ over the last axis. a: (..., d) -> (...)."""
    return onp.sum(a, axis=-1)


# The gradient of a sum copies g to every summed entry. A broadcast view does that without
# allocating; autograd's own np.sum VJP materializes it as g + zeros(shape), two full passes.
defvjp(_sum_last, lambda ans, a: lambda g: np.broadcast_to(np.expand_dims(g, -1), np.shape(a)))


def _bernoulli_logpmf(x, logits):
    """log Bern(x; σ(ℓ)) summed over the last axis. x: (n, d), logits: (k, n, d) -> (k, n)."""
    return _sum_last(_bernoulli_log_terms(x, logits))


def _reparameterize(mean, log_std, eps):
    """z = μ + σ ⊙ ε with ε ~ N(0, I): a sample of N(μ, diag σ²) that is differentiable in μ, σ."""
    return mean + np.exp(log_std) * eps


# ---------------------------------------------------------------- public, checked entry points


def _check_broadcast(**arrays):
    shapes = {name: onp.shape(value) for name, value in arrays.items()}
    try:
        return onp.broadcast_shapes(*shapes.values())
    except ValueError:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"{', '.join(shapes)}: expected shapes that broadcast together, got {described}"
        ) from None


def normal_logpdf(x, mean, log_std):
    """log N(x; mean, diag exp(log_std)²), summed over the last axis.

    x, mean, log_std: broadcastable, e.g. (n, d), (k, n, d), (d,) -> (k, n).
    """
    for name, value in (("x", x), ("mean", mean), ("log_std", log_std)):
        check_array(name, value)
    _check_broadcast(x=x, mean=mean, log_std=log_std)
    return _normal_logpdf(x, mean, log_std)


def std_normal_logpdf(z):
    """log N(z; 0, I), summed over the last axis. z: (..., d) -> (...)."""
    check_array("z", z)
    return _std_normal_logpdf(z)


def bernoulli_logpmf(x, logits):
    """log Bern(x; sigmoid(logits)), summed over the last axis.

    x: (..., d) binary data in {0, 1}; logits: broadcastable against x, e.g. x (n, d) and
    logits (k, n, d) -> (k, n).
    """
    check_array("x", x)
    check_binary("x", x)
    check_array("logits", logits, allow_inf=False)
    _check_broadcast(x=x, logits=logits)
    return _bernoulli_logpmf(x, logits)


def check_rng(rng):
    """Randomness is explicit: a numpy.random.Generator, never the global state."""
    if not isinstance(rng, onp.random.Generator):
        raise ValueError(
            f"rng: expected a numpy.random.Generator (numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def sample_normal(rng, mean, log_std, k=1):
    """Draw k reparameterized samples z = mean + exp(log_std) * eps, eps ~ N(0, I).

    rng: numpy.random.Generator; mean, log_std: (n, d) -> (z, eps), each (k, n, d), in the dtype
    of ``mean``. Return eps too, so the same draw can be reused (e.g. to recompute log q).
    """
    check_rng(rng)
    check_int("k", k, minimum=1)
    check_array("mean", mean)
    check_array("log_std", log_std)
    shape = _check_broadcast(mean=mean, log_std=log_std)
    dtype = onp.result_type(onp.asarray(mean).dtype, onp.float32)
    eps = rng.standard_normal((k,) + tuple(shape), dtype=dtype)
    return _reparameterize(mean, log_std, eps), eps
