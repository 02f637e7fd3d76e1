"""Families of q richer than the diagonal Gaussian, for a q given per point (classic VI).

Each family draws z through an invertible map of standard normal noise, z = T_λ(ε), with one row
of parameters λ per point, and gets log q from the change of variables:

    log q(z) = log N(ε; 0, I) − log |det ∂T_λ/∂ε|,   ε = T_λ⁻¹(z)

- ``DiagonalGaussian``: z = μ + σ ⊙ ε, and log|det| = Σ_d log σ_d.
- ``FullCovarianceGaussian``: z = μ + L ε with L lower-triangular, L_dd = exp(ℓ_d) > 0, so
  q = N(μ, L Lᵀ), and log|det| = Σ_d log L_dd.
- ``CouplingFlow``: u = μ + σ ⊙ ε, then affine coupling layers (Dinh et al. 2017),
  z_b ← z_b ⊙ exp(s(z_a)) + t(z_a), with (s, t) a small tanh MLP of the other half z_a and the
  halves swapping roles from layer to layer; log|det| = Σ_d log σ_d + Σ_layers Σ s.

λ for n points is an array (n, family.size). ``family.sample(lam, eps)`` runs the map forward and
returns z and log q(z) together (no inverse needed); ``family.log_density(lam, z)`` inverts it,
for the path-derivative (STL) gradient, which needs log q with λ held constant, and for densities
on a grid. Every family contains the diagonal Gaussian: ``family.init(n, diagonal=...)`` starts it
there (zero off-diagonal entries, identity coupling layers).

``log_weights`` gives log w = log p(x, z) − log q(z) (k, n), the interface every bound takes
(docs/design.md §15), and ``fit`` maximizes each point's ELBO with Adam.
"""

import math
import time
from dataclasses import dataclass, field

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .checks import (
    check_array,
    check_fits,
    checked,
    integer,
    no_nan,
    one_of,
    optional,
    positive,
)
from .distributions import std_normal_logpdf
from .models import THETA, X, one_layer
from .numerics import stop_gradient
from .optim import Adam
from .train import TrainingDiverged

# ---------------------------------------------------------------- the full-covariance density

LOG_DENSITY_DEFINED = no_nan("z, mean, cholesky", "a residual or a solve overflowed")


def _points(name, value, arguments):
    """Rule for z: points (..., d) with d >= 1."""
    value = check_array(name, value, nonempty=True)
    if np.ndim(getval(value)) < 1:
        raise ValueError(f"{name}: expected points of shape (..., d), got a scalar")
    return value


def _broadcast_mean(name, value, arguments):
    """Rule for the mean of a density on z: broadcastable against z."""
    value = check_array(name, value)
    z_shape, mean_shape = np.shape(getval(arguments["z"])), np.shape(getval(value))
    try:
        np.broadcast_shapes(z_shape, mean_shape)
    except ValueError:
        raise ValueError(
            f"z, mean: expected shapes that broadcast together, got z {z_shape}, mean {mean_shape}"
        ) from None
    return value


def _cholesky_factor(name, value, arguments):
    """Rule for a Cholesky factor L: (..., d, d), lower-triangular, no zero on the diagonal (L
    must be invertible), where d is z's last dimension, and its leading axes broadcast against
    those of z − mean."""
    value = check_array(name, value)
    L = np.asarray(getval(value))
    z_shape, mean_shape = np.shape(getval(arguments["z"])), np.shape(getval(arguments["mean"]))
    d = z_shape[-1]
    if L.ndim < 2 or L.shape[-2:] != (d, d):
        raise ValueError(
            f"{name}: expected shape (..., {d}, {d}), square in z's last dimension, got {L.shape}"
        )
    try:
        np.broadcast_shapes(np.broadcast_shapes(z_shape, mean_shape)[:-1], L.shape[:-2])
    except ValueError:
        raise ValueError(
            f"z, mean, {name}: expected leading axes that broadcast together (a factor per "
            f"point), got z {z_shape}, mean {mean_shape}, {name} {L.shape}"
        ) from None
    upper = np.triu(np.ones(L.shape[-2:], dtype=bool), 1)
    if np.any(L[..., upper] != 0):
        raise ValueError(f"{name}: expected a lower-triangular matrix, got nonzero entries above")
    if np.any(np.diagonal(L, axis1=-2, axis2=-1) == 0):
        raise ValueError(
            f"{name}: expected a nonzero diagonal (an invertible factor), got a 0 on it"
        )
    return value


@checked(
    returns=LOG_DENSITY_DEFINED,
    z=_points,
    mean=_broadcast_mean,
    cholesky=_cholesky_factor,
)
def full_covariance_logpdf(z, mean, cholesky):
    """log N(z; μ, Σ) with Σ = L Lᵀ, from the Cholesky factor L (lower-triangular):

        ε = L⁻¹ (z − μ)   (forward substitution: ε_i = (r_i − Σ_{j<i} L_ij ε_j) / L_ii)
        log N(z; μ, L Lᵀ) = log N(ε; 0, I) − Σ_i log |L_ii|

    since (z − μ)ᵀ Σ⁻¹ (z − μ) = εᵀε and ½ log det Σ = log |det L| = Σ_i log |L_ii|.

    z: (..., d); mean: broadcastable against z, e.g. (n, d) for z (k, n, d); cholesky: (..., d, d),
    its leading axes those of mean, e.g. (n, d, d) -> (...), e.g. (k, n).
    """
    residual = z - mean
    d = residual.shape[-1]
    eps = []
    for i in range(d):  # forward substitution, one row of L at a time
        row = residual[..., i]
        if i:
            solved = anp.stack(eps, axis=-1)  # ε_0 … ε_{i−1}: (..., i)
            row = row - anp.sum(cholesky[..., i, :i] * solved, axis=-1)
        eps.append(row / cholesky[..., i, i])
    eps = anp.stack(eps, axis=-1)
    log_det = sum(anp.log(anp.abs(cholesky[..., i, i])) for i in range(d))  # log |det L|
    return std_normal_logpdf(eps) - log_det


# ---------------------------------------------------------------- the families


def _rows(family):
    """Rule for λ: (n, family.size)."""

    def rule(name, value, arguments):
        value = check_array(name, value, ndim=2)
        shape = np.shape(getval(value))
        if shape[1] != family(arguments).size:
            raise ValueError(
                f"{name}: expected shape (n, {family(arguments).size}), one row of "
                f"{type(family(arguments)).__name__}'s parameters per point, got {shape}"
            )
        return value

    return rule


def _draws(name, value, arguments):
    """Rule for ε or z: (k, n, z_dim), n the rows of λ."""
    value = check_array(name, value, ndim=3)
    family, n = arguments["self"], np.shape(getval(arguments["lam"]))[0]
    shape = np.shape(getval(value))
    if shape[1:] != (n, family.z_dim):
        raise ValueError(
            f"{name}: expected shape (k, {n}, {family.z_dim}), n the rows of lam and the "
            f"family's z_dim, got {shape}"
        )
    return value


LAM = _rows(lambda arguments: arguments["self"])
SAMPLE_DEFINED = no_nan("lam, eps", "exp(log σ), exp(s) or a sum in the map overflowed")
DENSITY_DEFINED = no_nan("lam, z", "exp(−log σ), exp(−s) or a sum in the inverse overflowed")


def _diagonal_start(family, n, diagonal):
    """The (μ, log σ) rows to start from: zeros (the prior N(0, I)), or ``diagonal``."""
    if diagonal is None:
        return np.zeros((n, 2 * family.z_dim))
    diagonal = check_array("diagonal", diagonal, ndim=2)
    if diagonal.shape != (n, 2 * family.z_dim):
        raise ValueError(
            f"diagonal: expected shape ({n}, {2 * family.z_dim}), a diagonal Gaussian's "
            f"(mean, log_std) per point, got {diagonal.shape}"
        )
    return diagonal


class DiagonalGaussian:
    """q(z) = N(μ, diag σ²), the package's own q: λ = (μ (z_dim), log σ (z_dim)) per point.

    z = μ + σ ⊙ ε,  log q(z) = log N(ε; 0, I) − Σ_d log σ_d.
    """

    @checked(z_dim=integer(minimum=1))
    def __init__(self, z_dim):
        self.z_dim = z_dim
        self.size = 2 * z_dim

    def __repr__(self):
        return f"DiagonalGaussian(z_dim={self.z_dim})"

    @checked(n=integer(minimum=1), seed=integer(minimum=0))
    def init(self, n, seed=0, diagonal=None):
        """λ (n, size) at N(0, I), or at ``diagonal`` (n, 2·z_dim) = (mean, log σ)."""
        return np.array(_diagonal_start(self, n, diagonal), dtype=np.float64)

    @checked(lam=LAM)
    def parts(self, lam):
        """λ (n, size) -> (mean, log_std), each (n, z_dim)."""
        return lam[:, : self.z_dim], lam[:, self.z_dim :]

    @checked(returns=SAMPLE_DEFINED, lam=LAM, eps=_draws)
    def sample(self, lam, eps):
        """eps: (k, n, z_dim) -> (z (k, n, z_dim), log q(z) (k, n))."""
        mean, log_std = self.parts(lam)
        return mean + anp.exp(log_std) * eps, std_normal_logpdf(eps) - anp.sum(log_std, axis=-1)

    @checked(returns=DENSITY_DEFINED, lam=LAM, z=_draws)
    def log_density(self, lam, z):
        """log q(z) for z: (k, n, z_dim) -> (k, n)."""
        mean, log_std = self.parts(lam)
        eps = (z - mean) * anp.exp(-log_std)
        return std_normal_logpdf(eps) - anp.sum(log_std, axis=-1)


class FullCovarianceGaussian:
    """q(z) = N(μ, L Lᵀ) with L lower-triangular and a positive diagonal:
    λ = (μ (z_dim), ℓ (z_dim), the entries below L's diagonal (z_dim (z_dim − 1) / 2, row by
    row)) per point, with L_dd = exp(ℓ_d).

    z = μ + L ε,  log q(z) = log N(ε; 0, I) − Σ_d ℓ_d  (``full_covariance_logpdf``).
    With the entries below the diagonal at 0 it is the diagonal Gaussian with σ = exp(ℓ).
    """

    @checked(z_dim=integer(minimum=1))
    def __init__(self, z_dim):
        self.z_dim = d = z_dim
        self.size = 2 * d + d * (d - 1) // 2
        check_fits("z_dim", z_dim, (d * (d - 1) // 2 + d, d * d), np.float64)
        # L's entries (n, d·d) = exp(ℓ) @ onto_diagonal + below @ onto_lower: a linear map
        # that autograd differentiates (no in-place writes into L)
        rows, cols = np.tril_indices(d, -1)
        self.onto_lower = np.zeros((len(rows), d * d))
        self.onto_lower[np.arange(len(rows)), rows * d + cols] = 1.0
        self.onto_diagonal = np.zeros((d, d * d))
        self.onto_diagonal[np.arange(d), np.arange(d) * (d + 1)] = 1.0

    def __repr__(self):
        return f"FullCovarianceGaussian(z_dim={self.z_dim})"

    @checked(n=integer(minimum=1), seed=integer(minimum=0))
    def init(self, n, seed=0, diagonal=None):
        """λ (n, size) at N(0, I), or at the diagonal Gaussian ``diagonal`` (n, 2·z_dim) =
        (mean, log σ), with nothing below L's diagonal."""
        lam = np.zeros((n, self.size))
        lam[:, : 2 * self.z_dim] = _diagonal_start(self, n, diagonal)
        return lam

    @checked(lam=LAM)
    def cholesky(self, lam):
        """λ (n, size) -> L (n, z_dim, z_dim), lower-triangular with diagonal exp(ℓ)."""
        d = self.z_dim
        flat = anp.dot(anp.exp(lam[:, d : 2 * d]), self.onto_diagonal)
        if d > 1:
            flat = flat + anp.dot(lam[:, 2 * d :], self.onto_lower)
        return anp.reshape(flat, (-1, d, d))

    @checked(returns=SAMPLE_DEFINED, lam=LAM, eps=_draws)
    def sample(self, lam, eps):
        """z = μ + L ε. eps: (k, n, z_dim) -> (z (k, n, z_dim), log q(z) (k, n))."""
        d = self.z_dim
        z = lam[:, :d] + anp.einsum("nij,knj->kni", self.cholesky(lam), eps)
        return z, std_normal_logpdf(eps) - anp.sum(lam[:, d : 2 * d], axis=-1)

    @checked(returns=DENSITY_DEFINED, lam=LAM, z=_draws)
    def log_density(self, lam, z):
        """log q(z) = log N(z; μ, L Lᵀ) for z: (k, n, z_dim) -> (k, n)."""
        return full_covariance_logpdf(z, lam[:, : self.z_dim], self.cholesky(lam))


class CouplingFlow:
    """A diagonal Gaussian pushed through ``layers`` affine coupling layers (RealNVP, Dinh et
    al. 2017):

        u = μ + σ ⊙ ε
        layer j: split z into (z_a, z_b), the first ⌈d/2⌉ units and the rest (swapped for odd j);
                 (s, t) = W₂ᵀ tanh(W₁ᵀ z_a + b₁) + b₂;   z_b ← z_b ⊙ exp(s) + t
        log q(z) = log N(ε; 0, I) − Σ_d log σ_d − Σ_layers Σ s

    Each layer is invertible whatever its MLP (z_a passes unchanged, so z_b = (z_b' − t) ⊙
    exp(−s)), and its Jacobian is triangular with diagonal exp(s). λ per point: μ (z_dim),
    log σ (z_dim), then for each layer W₁ (a, hidden), b₁ (hidden), W₂ (hidden, 2b), b₂ (2b)
    (s: the first b outputs, t: the last b), flattened row by row. z_dim >= 2.
    """

    @checked(z_dim=integer(minimum=2), layers=integer(minimum=1), hidden=integer(minimum=1))
    def __init__(self, z_dim, layers=2, hidden=8):
        self.z_dim, self.layers, self.hidden = z_dim, layers, hidden
        first = (z_dim + 1) // 2
        self.blocks = []  # per layer: name -> (start, stop, shape) in a row of λ
        offset = 2 * z_dim
        for j in range(layers):
            a, b = (first, z_dim - first) if j % 2 == 0 else (z_dim - first, first)
            block = {}
            for name, shape in (("W1", (a, hidden)), ("b1", (1, hidden))):
                block[name] = (offset, offset + math.prod(shape), shape)
                offset += math.prod(shape)
            for name, shape in (("W2", (hidden, 2 * b)), ("b2", (1, 2 * b))):
                block[name] = (offset, offset + math.prod(shape), shape)
                offset += math.prod(shape)
            self.blocks.append(block)
        self.size = offset
        self.first = first

    def __repr__(self):
        return f"CouplingFlow(z_dim={self.z_dim}, layers={self.layers}, hidden={self.hidden})"

    @checked(n=integer(minimum=1), seed=integer(minimum=0))
    def init(self, n, seed=0, diagonal=None):
        """λ (n, size): the base at N(0, I) or at ``diagonal`` (n, 2·z_dim) = (mean, log σ);
        W₁ ~ N(0, 1/a) and b₁ ~ N(0, 1) drawn from ``seed`` (the hidden units differ); W₂ = b₂ =
        0, so every layer starts as the identity and q as the diagonal Gaussian."""
        rng = np.random.default_rng(seed)
        lam = np.zeros((n, self.size))
        lam[:, : 2 * self.z_dim] = _diagonal_start(self, n, diagonal)
        for block in self.blocks:
            start, stop, shape = block["W1"]
            lam[:, start:stop] = rng.standard_normal((n, stop - start)) / math.sqrt(shape[0])
            start, stop, _ = block["b1"]
            lam[:, start:stop] = rng.standard_normal((n, stop - start))
        return lam

    def _unpack(self, lam):
        """λ (n, size) -> (μ, log σ), each (n, 1, d), and each layer's (W₁, b₁, W₂, b₂), each
        (n, ...) with one matrix per point."""
        d = self.z_dim
        layers = [
            [
                anp.reshape(lam[:, start:stop], (-1,) + shape)
                for start, stop, shape in block.values()
            ]
            for block in self.blocks
        ]
        return lam[:, None, :d], lam[:, None, d : 2 * d], layers

    def _shift_and_log_scale(self, weights, z_a):
        """(s, t), each (n, k, b), from z_a (n, k, a): points lead, so each point's MLP is one
        batched matrix product."""
        W1, b1, W2, b2 = weights
        out = anp.matmul(anp.tanh(anp.matmul(z_a, W1) + b1), W2) + b2
        b = out.shape[-1] // 2
        return out[..., :b], out[..., b:]

    def _split(self, j, z):
        z_first, z_rest = z[..., : self.first], z[..., self.first :]
        return (z_first, z_rest) if j % 2 == 0 else (z_rest, z_first)

    def _join(self, j, z_a, z_b):
        return anp.concatenate([z_a, z_b] if j % 2 == 0 else [z_b, z_a], axis=-1)

    @checked(returns=SAMPLE_DEFINED, lam=LAM, eps=_draws)
    def sample(self, lam, eps):
        """eps: (k, n, z_dim) -> (z (k, n, z_dim), log q(z) (k, n)), the map run forward."""
        mean, log_std, layers = self._unpack(lam)
        eps = anp.transpose(eps, (1, 0, 2))  # (n, k, d)
        z = mean + anp.exp(log_std) * eps
        log_q = std_normal_logpdf(eps) - anp.sum(log_std, axis=-1)
        for j, weights in enumerate(layers):
            z_a, z_b = self._split(j, z)
            s, t = self._shift_and_log_scale(weights, z_a)
            z = self._join(j, z_a, z_b * anp.exp(s) + t)
            log_q = log_q - anp.sum(s, axis=-1)
        return anp.transpose(z, (1, 0, 2)), anp.transpose(log_q)

    @checked(returns=DENSITY_DEFINED, lam=LAM, z=_draws)
    def log_density(self, lam, z):
        """log q(z) for z: (k, n, z_dim) -> (k, n), the map inverted layer by layer."""
        mean, log_std, layers = self._unpack(lam)
        z = anp.transpose(z, (1, 0, 2))
        log_det = 0.0
        for j in reversed(range(self.layers)):
            z_a, z_b = self._split(j, z)
            s, t = self._shift_and_log_scale(layers[j], z_a)
            z = self._join(j, z_a, (z_b - t) * anp.exp(-s))
            log_det = log_det + anp.sum(s, axis=-1)
        eps = (z - mean) * anp.exp(-log_std)
        return anp.transpose(std_normal_logpdf(eps) - anp.sum(log_std, axis=-1) - log_det)


FAMILIES = (DiagonalGaussian, FullCovarianceGaussian, CouplingFlow)


# ---------------------------------------------------------------- log-weights and the fit


def _family(name, value, arguments):
    """Rule for a family: one of FAMILIES, with the model's z_dim."""
    if not isinstance(value, FAMILIES):
        raise ValueError(
            f"{name}: expected one of {', '.join(f.__name__ for f in FAMILIES)}, got "
            f"{type(value).__name__}"
        )
    z_dim = arguments["model"].z_dim
    if value.z_dim != z_dim:
        raise ValueError(
            f"{name}: expected a family with z_dim {z_dim}, the model's, got {value!r}"
        )
    return value


def _model_eps(name, value, arguments):
    """Rule for ε: (k, n, z_dim), n the rows of x."""
    value = check_array(name, value, ndim=3)
    n, z_dim = np.shape(getval(arguments["x"]))[0], arguments["model"].z_dim
    if np.shape(getval(value))[1:] != (n, z_dim):
        raise ValueError(
            f"{name}: expected shape (k, {n}, {z_dim}), n the rows of x and the model's z_dim, "
            f"got {np.shape(getval(value))}"
        )
    return value


def _lam_for_x(name, value, arguments):
    """Rule for λ: (n, family.size), n the rows of x."""
    value = _rows(lambda arguments: arguments["family"])(name, value, arguments)
    n = np.shape(getval(arguments["x"]))[0]
    if np.shape(getval(value))[0] != n:
        raise ValueError(
            f"{name}: expected {n} rows, one per row of x, got {np.shape(getval(value))[0]}"
        )
    return value


ONE_LAYER = one_layer("a family of q given per point")
LOG_W_DEFINED = no_nan("lam, eps", "the map, log q or the decoder overflowed")


@checked(
    returns=LOG_W_DEFINED,
    model=ONE_LAYER,
    theta=THETA,
    x=X,
    family=_family,
    lam=_lam_for_x,
    eps=_model_eps,
)
def log_weights(model, theta, x, family, lam, eps, stop_q=False):
    """log w_i = log p(x, z_i) − log q(z_i) with z_i = T_λ(ε_i), for a q of ``family`` given
    per point. x: (n, x_dim); lam: (n, family.size); eps: (k, n, z_dim) -> (k, n).

    stop_q: log q evaluated with λ held constant while z_i stays live (the path derivative of
    the STL estimator, Roeder et al. 2017); it inverts the map, ``family.log_density``.
    """
    z, log_q = family.sample(lam, eps)
    if stop_q:
        log_q = family.log_density(stop_gradient(lam), z)
    return model.log_joint(theta, x, z) - log_q


@dataclass
class FamilyFit:
    """The result of ``fit``. lam: (n, family.size), the last iterate; history: (windows, n),
    each point's ELBO estimate averaged over each window of ``window`` steps (whether the fit is
    still improving shows here); step_seconds: (steps,), the time each step took."""

    family: object
    lam: np.ndarray
    history: np.ndarray = field(repr=False)
    step_seconds: np.ndarray = field(repr=False)

    @property
    def steps(self):
        return len(self.step_seconds)

    @property
    def seconds(self):
        """The optimization's time, all steps."""
        return float(np.sum(self.step_seconds))


@checked(
    model=ONE_LAYER,
    theta=THETA,
    x=X,
    family=_family,
    lam=optional(_lam_for_x),
    steps=integer(minimum=1),
    k=integer(minimum=1),
    lr=positive(),
    final_lr=positive(),
    seed=integer(minimum=0),
    estimator=one_of("stl", "reparam"),
    window=integer(minimum=1),
)
def fit(
    model,
    theta,
    x,
    family,
    lam=None,
    *,
    steps=1000,
    k=16,
    lr=0.1,
    final_lr=0.001,
    seed=0,
    estimator="stl",
    window=100,
):
    """Maximize every point's ELBO over a q of ``family``, all points at once (their objectives
    are independent): Adam ascends Σ_i (1/k) Σ_s log w_is on fresh ε each step, with the step
    size decayed geometrically from ``lr`` to ``final_lr``:

        lr_t = lr · (final_lr / lr)^(t / steps)

    estimator: "stl" (the path derivative, whose noise vanishes as q reaches the posterior) or
    "reparam" (the plain reparameterization gradient). x: (n, x_dim); lam: the start (n,
    family.size), default ``family.init(n)``. A bound or gradient that stops being finite raises
    ``train.TrainingDiverged`` with the last good λ. Returns a ``FamilyFit``.
    """
    n = len(x)
    lam = family.init(n, seed=seed) if lam is None else np.array(lam, dtype=np.float64)
    rng = np.random.default_rng(seed)
    optimizer = Adam(lr=lr)
    stop_q = estimator == "stl"

    def objective(lam, eps):
        log_w = log_weights(model, theta, x, family, lam, eps, stop_q=stop_q)
        return anp.sum(anp.mean(log_w, axis=0)), anp.mean(getval(log_w), axis=0)

    gradient = autograd.grad_and_aux(objective)
    history, running, step_seconds = [], np.zeros(n), np.zeros(steps)
    for t in range(steps):
        started = time.perf_counter()
        eps = rng.standard_normal((k, n, family.z_dim))
        with np.errstate(over="ignore", invalid="ignore"):  # judged just below, by name
            grad, bound = gradient(lam, eps)
        if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(bound))):
            raise TrainingDiverged(
                f"fit stopped at step {t + 1}: the ELBO or its gradient is not finite; the last "
                f"good λ is kept. Try a lower lr (now {lr:g}) or a start nearer the posterior",
                lam,
                np.array(history),
            )
        running += bound
        if (t + 1) % window == 0:
            history.append(running / window)
            running = np.zeros(n)
        lam = optimizer.step(lam, grad, lr=lr * (final_lr / lr) ** (t / steps))
        step_seconds[t] = time.perf_counter() - started
    return FamilyFit(family, lam, np.array(history).reshape(-1, n), step_seconds)
