"""Two unbiased estimators of ∇_λ E_q[f(z)], for q(z; λ) = N(μ, diag σ²) and λ = (μ, log σ):

    score function (REINFORCE, Williams 1992)   ∇_λ E_q[f(z)] = E_q[(f(z) − b) ∇_λ log q(z; λ)]
    reparameterized (pathwise)                  ∇_λ E_q[f(z)] = E_ε[∇_λ f(μ + σ ⊙ ε)],  ε ~ N(0, I)

The first follows from ∇_λ q = q ∇_λ log q, so it needs only the values f(z) and the score
∇_λ log q: it works for discrete z and for an f that has no derivative. Any baseline b that does
not depend on the draw z keeps it unbiased, since E_q[∇_λ log q] = ∇_λ ∫ q = 0. The second needs
∇_z f, and its variance is usually far lower. For the diagonal Gaussian, unit by unit,

    ∇_μ log q = (z − μ) / σ²,                 ∇_{log σ} log q = ((z − μ) / σ)² − 1
    ∇_μ f(μ + σ ε) = ∇_z f,                   ∇_{log σ} f(μ + σ ε) = ∇_z f ⊙ σ ⊙ ε

Every function here returns one estimate per draw, the k draws on axis 0: the k-sample estimate is
their mean over axis 0 (its variance their variance / k). Lesson 11 compares the two.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import all_of, broadcasting, checked, finite_result, real, same_shape_as


def _precision_finite(name, value, arguments):
    """Rule for a log σ: 1/σ² = exp(−2 log σ) must be a finite number in log σ's dtype."""
    array = np.asarray(getval(value))
    limit = -0.5 * float(np.log(np.finfo(np.result_type(array.dtype, np.float32)).max))
    too_small = array < limit
    if too_small.any():
        index = tuple(int(i) for i in np.argwhere(too_small)[0])
        raise ValueError(
            f"{name}: expected values >= {limit:.2f}, so that 1/σ² = exp(−2·{name}) is finite "
            f"in {array.dtype}, got {array[index]} at index {index}"
        )
    return value


def _draws_first(name, value, arguments):
    """Rule for per-draw values: an array (k, ...) with k >= 1 draws on axis 0."""
    shape = np.shape(getval(value))
    if len(shape) == 0 or shape[0] < 1:
        raise ValueError(f"{name}: expected shape (k, ...) with k >= 1 draws first, got {shape}")
    return value


def _has_last_axis(name, value, arguments):
    """Rule for z or ∇_z f: an array (..., d) whose last axis holds the latent units."""
    if np.ndim(getval(value)) < 1:
        raise ValueError(
            f"{name}: expected an array (..., d) with the units on its last axis, got a scalar"
        )
    return value


def _values_of_z(name, value, arguments):
    """Rule for f_values: one value per draw of z, the shape of z without its last axis."""
    want, got = np.shape(getval(arguments["z"]))[:-1], np.shape(getval(value))
    if got != want:
        raise ValueError(f"{name}: expected z's shape without its last axis, {want}, got {got}")
    return value


def _baseline_fits(name, value, arguments):
    """Rule for a baseline: it broadcasts to f_values' shape (one per draw, or fewer)."""
    shape, values = np.shape(getval(value)), np.shape(getval(arguments["f_values"]))
    try:
        fits = np.broadcast_shapes(shape, values) == values
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name}: expected a shape that broadcasts to f_values' {values}, got {shape}"
        )
    return value


LOG_STD = all_of(real(), _precision_finite, broadcasting("z", "mean", "log_std"))
OVERFLOW = "a square or a product overflowed the dtype"


@checked(
    z=all_of(real(), _has_last_axis),
    mean=real(),
    log_std=LOG_STD,
    returns=finite_result("z, mean, log_std", OVERFLOW),
)
def gaussian_score(z, mean, log_std):
    """The score ∇_λ log N(z; μ, diag σ²) with respect to λ = (μ, log σ), unit by unit:

        ∇_μ log q = (z − μ) / σ²,   ∇_{log σ} log q = u² − 1,   u = (z − μ) / σ

    z: (..., d); mean, log_std: broadcastable against z, e.g. z (k, n, d) and (n, d)
    -> (d_mean, d_log_std), each of the broadcast shape (k, n, d). Both have mean 0 under q.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused at the door
        inverse_std = anp.exp(-log_std)
        u = (z - mean) * inverse_std
        return u * inverse_std, u * u - 1.0


@checked(
    f_values=all_of(real(), _draws_first, _values_of_z),
    z=all_of(real(), _has_last_axis),
    mean=real(),
    log_std=LOG_STD,
    baseline=all_of(real(), _baseline_fits),
    returns=finite_result("f_values, z, mean, log_std, baseline", OVERFLOW),
)
def score_function_gradient(f_values, z, mean, log_std, baseline=0.0):
    """Per-draw score-function (REINFORCE) estimates of ∇_λ E_q[f(z)], λ = (μ, log σ):

        ĝ_s = (f(z_s) − b_s) ∇_λ log q(z_s; λ),   z_s ~ q

    f_values: (k, ...) the values f(z_s), one per draw; z: (k, ..., d) the draws, e.g. (k, n, d);
    mean, log_std: q's parameters, broadcastable against z, e.g. (n, d); baseline: b, a number or
    an array broadcastable to f_values that must not depend on z_s (e.g. ``running_mean_baseline``)
    -> (g_mean, g_log_std), each (k, ..., d); the k-draw estimate is their mean over axis 0.
    """
    d_mean, d_log_std = gaussian_score(z, mean, log_std)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused at the door
        centred = (f_values - baseline)[..., None]
        return centred * d_mean, centred * d_log_std


@checked(
    grad_f=all_of(real(), _has_last_axis),
    eps=all_of(real(), same_shape_as("grad_f")),
    log_std=all_of(real(), broadcasting("grad_f", "eps", "log_std")),
    returns=finite_result("grad_f, eps, log_std", OVERFLOW),
)
def reparameterized_gradient(grad_f, eps, log_std):
    """Per-draw reparameterized (pathwise) estimates of ∇_λ E_q[f(z)], λ = (μ, log σ):

        z_s = μ + σ ⊙ ε_s:   ∇_μ f(z_s) = ∇_z f(z_s),   ∇_{log σ} f(z_s) = ∇_z f(z_s) ⊙ σ ⊙ ε_s

    grad_f: (k, ..., d) the gradients ∇_z f at the draws z_s; eps: their ε_s, the same shape;
    log_std: broadcastable against them, e.g. (n, d) -> (g_mean, g_log_std), each (k, ..., d).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused at the door
        return grad_f, grad_f * anp.exp(log_std) * eps


@checked(f_values=all_of(real(), _draws_first))
def running_mean_baseline(f_values):
    """b_s = (1/(s−1)) Σ_{t<s} f_t, the mean of the earlier draws' values (b_1 = 0): a baseline
    that does not depend on draw s, so the score-function estimate stays unbiased.

    f_values: (k, ...) -> (k, ...)."""
    values = np.asarray(getval(f_values))
    k = values.shape[0]
    counts = np.arange(1, k, dtype=values.dtype).reshape((k - 1,) + (1,) * (values.ndim - 1))
    with np.errstate(over="ignore", invalid="ignore"):
        means = np.cumsum(values, axis=0)[:-1] / counts  # Σ_{t ≤ s} f_t / s for s = 1 … k − 1
    if not np.isfinite(means).all():  # a sum beyond the float range: sum the values / k instead
        means = np.cumsum(values / k, axis=0)[:-1] * (k / counts)
    return np.concatenate([np.zeros_like(values[:1]), means], axis=0)
