"""Evaluation: log p(x) with many samples, averaged bounds, exact log p(x) by quadrature for
2-D latents, the ELBO of a Gaussian q by Gauss–Hermite quadrature, and active units.

Memory: the decoder's output for k samples of n points is (k, n, x_dim). At k = 5000 that does
not fit for many points at once, so work is cut into chunks of at most ``max_rows`` (sample,
point) pairs, and the pieces are combined exactly with a running logsumexp. Peak memory then
depends on ``max_rows``, not on k·n.
"""

import math

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval
from numpy.polynomial.hermite_e import hermegauss

from . import threads
from .checks import (
    check_fits,
    check_int,
    checked,
    finite_result,
    flag,
    integer,
    number,
    one_of,
    real,
)
from .distributions import normal_logpdf
from .models import THETA, X, one_layer
from .numerics import log_mean_exp, logsumexp


def _log_weights_for(model, theta, lam, n):
    """A function (x_batch, rows, eps) -> log_w using the encoder, or a given λ = (mean, log_std)
    (one-layer models only: any other is refused)."""
    if lam is None:
        return lambda xb, rows, eps: model.log_weights(theta, xb, eps)
    model.check_one_layer("lam (a q given per point)")
    mean, log_std = model.check_lambda(lam, n)
    return lambda xb, rows, eps: model.log_weights_given(theta, xb, mean[rows], log_std[rows], eps)


def _seed(name, value, arguments):
    """A seed: an integer >= 0, or a list of them (as ``numpy.random.default_rng`` takes)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name}: expected an integer >= 0 or a list of them, got {value!r}")
    for each in values:
        check_int(name, each, minimum=0)
    return value


# An estimate that is NaN or ±inf for a finite θ means the networks overflowed on the way (an
# extreme θ, e.g. a checkpoint from a diverged run): refused, never printed as a number.
ESTIMATE_FINITE = finite_result("theta", "the model's log-weights overflowed for this θ")


@checked(
    returns=ESTIMATE_FINITE,
    theta=THETA,
    x=X,
    k=integer(minimum=1),
    max_rows=integer(minimum=1),
    seed=_seed,
    progress=flag(),
)
def log_marginal(model, theta, x, k=5000, max_rows=5000, seed=0, lam=None, progress=False):
    """log p(x) ≈ L_k = log (1/k) Σ_i w_i with large k (Burda et al. use k = 5000).

    x: (n, x_dim) -> (n,). Each point draws its ε from its own stream ``default_rng([seed, i])``,
    so the estimate does not depend on how the work is chunked. lam: optional (mean, log_std),
    each (n, z_dim), to use a given q instead of the encoder (one-layer models only).
    """
    n = len(x)
    log_weights = _log_weights_for(model, theta, lam, n)
    points_per_chunk = max(1, max_rows // k)  # whole points when k is small enough
    samples_per_chunk = min(k, max_rows)  # else chunks of samples of a single point
    rows = min(max_rows, max(k, 1) * points_per_chunk)
    check_fits("k, max_rows", k, (rows, model.eps_dim + model.x_dim), model.dtype, copies=4)
    out = np.empty(n)
    from tqdm import tqdm  # here, not at import: it is slow to load and only shows progress

    with threads.adaptive() as blas:  # BLAS gets the cores others leave free
        for start in tqdm(
            range(0, n, points_per_chunk),
            desc=f"log p(x), k={k}",
            disable=not progress,
            leave=False,
        ):
            rows = np.arange(start, min(n, start + points_per_chunk))
            streams = [np.random.default_rng([seed, int(i)]) for i in rows]
            running = np.full(len(rows), -np.inf)
            for done in range(0, k, samples_per_chunk):
                blas.update()
                size = min(samples_per_chunk, k - done)
                eps = np.stack([s.standard_normal((size, model.eps_dim)) for s in streams], axis=1)
                log_w = log_weights(x[rows], rows, eps.astype(model.dtype, copy=False))
                running = logsumexp(np.stack([running, logsumexp(log_w, axis=0)]), axis=0)
            out[rows] = running - math.log(k)
    return out


@checked(
    returns=ESTIMATE_FINITE,
    theta=THETA,
    x=X,
    objective=one_of("elbo", "iwae"),
    k=integer(minimum=1),
    replicates=integer(minimum=1),
    max_rows=integer(minimum=1),
    seed=_seed,
    return_std=flag(),
)
def expected_bound(
    model,
    theta,
    x,
    objective="iwae",
    k=1,
    replicates=100,
    max_rows=20000,
    seed=0,
    lam=None,
    return_std=False,
):
    """E[L_k] per point (or E[ELBO] for objective="elbo"), the mean of ``replicates`` independent
    estimates of the bound with k samples each. x: (n, x_dim) -> (n,), or with
    ``return_std=True`` (mean (n,), std over replicates (n,)). lam: as for ``log_marginal``."""
    n = len(x)
    log_weights = _log_weights_for(model, theta, lam, n)
    rng = np.random.default_rng(seed)
    points_per_chunk = max(1, max_rows // k)
    replicates_per_chunk = max(1, max_rows // (k * min(n, points_per_chunk)))
    rows = replicates_per_chunk * k * min(n, points_per_chunk)
    check_fits("k, max_rows", k, (rows, model.eps_dim + model.x_dim), model.dtype, copies=4)
    total, total_squares = np.zeros(n), np.zeros(n)
    with threads.adaptive() as blas:  # BLAS gets the cores others leave free
        for start in range(0, n, points_per_chunk):
            rows = np.arange(start, min(n, start + points_per_chunk))
            for done in range(0, replicates, replicates_per_chunk):
                blas.update()
                r = min(replicates_per_chunk, replicates - done)
                eps = rng.standard_normal((r * k, len(rows), model.eps_dim), dtype=model.dtype)
                log_w = log_weights(x[rows], rows, eps).reshape(r, k, len(rows))
                per_replicate = (
                    log_w.mean(axis=1) if objective == "elbo" else log_mean_exp(log_w, axis=1)
                )
                total[rows] += per_replicate.sum(axis=0)
                total_squares[rows] += (per_replicate**2).sum(axis=0)
    mean = total / replicates
    if not return_std:
        return mean
    return mean, np.sqrt(np.maximum(total_squares / replicates - mean**2, 0.0))


def _grid(name, value, arguments):
    """A grid size: an integer >= 3 whose grid^d nodes (and a decoder output per node) fit."""
    value = check_int(name, value, minimum=3)
    model = arguments["model"]
    nodes = value ** min(model.eps_dim, 2)
    return check_fits(name, value, (nodes, model.eps_dim + model.x_dim), model.dtype, copies=3)


# Half-widths between 1e-100 and 1e100: a cell of (2·limit / (grid − 1))^d stays a normal float
# and the z on the grid stay where the networks do not overflow for a sensible θ.
LIMIT = number(1e-100, 1e100)


@checked(
    returns=finite_result("theta, limit", "p(x, z) on the grid overflowed or underflowed"),
    theta=THETA,
    x=X,
    limit=LIMIT,
    grid=_grid,
)
def log_marginal_quadrature(model, theta, x, limit=6.0, grid=401):
    """Exact-up-to-quadrature log p(x) = log ∫ p(x, z) dz on a grid over [−limit, limit]^d,
    where z is the full latent (every layer) and d = ``model.eps_dim`` ≤ 2 (the toy models; a
    TwoLayerVAE with h1_dim = h2_dim = 1). x: (n, x_dim) -> (n,).

        log p(x) ≈ log Σ_j p(x, z_j) Δ^d = logsumexp_j log p(x, z_j) + d log Δ,

    with Δ = 2·limit / (grid − 1) the grid step.

    The prior's mass outside ±6 is below 1e-8, and a 401-point grid resolves posteriors wider than
    about 0.1; use a larger grid for sharper ones.
    """
    d = model.eps_dim
    if d > 2:
        raise ValueError(
            f"model: expected a latent of at most 2 units for quadrature, got "
            f"{type(model).__name__} with {d} (layers of "
            f"{'+'.join(map(str, model.layer_dims))})"
        )
    axis = np.linspace(-limit, limit, grid)
    log_cell = d * math.log(2 * limit / (grid - 1))  # in logs: Δ^d may underflow or overflow
    z = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), axis=-1).reshape(-1, d)
    out = np.empty(len(x))
    for i in range(len(x)):  # one point at a time: the grid already has grid^d rows
        log_joint = model.log_joint(theta, x[i : i + 1], z[:, None, :].astype(model.dtype))
        out[i] = logsumexp(log_joint[:, 0]) + log_cell
    return out


def quadrature_order(name, value, arguments):
    """Rule for a Gauss–Hermite order (nodes per latent unit): an integer >= 2, for a one-layer
    model with at most 3 latent units, whose order^z_dim nodes for every row of x fit."""
    value = check_int(name, value, minimum=2)
    model, x = arguments["model"], arguments["x"]
    if model.z_dim > 3:
        raise ValueError(
            f"model: expected a latent of at most 3 units for Gauss–Hermite quadrature "
            f"(order^z_dim nodes per point), got z_dim = {model.z_dim}"
        )
    shape = (value**model.z_dim, len(x), model.eps_dim + model.x_dim)
    return check_fits(name, value, shape, model.dtype, copies=4)


@checked(
    returns=finite_result("theta, lam", "log p(x, z) at a quadrature node overflowed"),
    model=one_layer("the ELBO of a diagonal Gaussian q by quadrature"),
    theta=THETA,
    x=X,
    order=quadrature_order,
)
def elbo_quadrature(model, theta, x, order=20, lam=None):
    """ELBO(x; q) = E_q[log p(x, z) − log q(z|x)] by Gauss–Hermite quadrature: no Monte Carlo
    noise, for q(z|x) = N(μ, diag σ²) over a latent of at most 3 units,

        ELBO ≈ Σ_j W_j log w(x, z_j),   z_j = μ + σ ⊙ t_j,   W_j = Π_c w_{j_c}

    with t_j running over the grid T^z_dim of the ``order`` nodes T and weights w of
    probabilists' Gauss–Hermite quadrature, scaled so that Σ w = 1 (Σ_i w_i f(t_i) ≈ E f(t) for
    t ~ N(0, 1)). It is exact when log w is a polynomial of degree ≤ 2·order − 1 in each
    coordinate of t (the entropy term, quadratic, is exact for every order >= 2); for smooth
    decoders the error falls geometrically with the order once the nodes resolve log w, which
    for a wide q takes more of them (compare the value at twice the order).

    q: the encoder's, or lam = (mean, log_std), each (n, z_dim), a q given per point.
    x: (n, x_dim) -> (n,). Differentiable (autograd) in θ and in lam.
    """
    n, d = len(x), model.z_dim
    if lam is None:
        mean, log_std = model.encode(theta, x)
    else:
        mean, log_std = model.check_lambda(lam, n)
    nodes, weights = hermegauss(order)
    weights = weights / weights.sum()  # Σ w = 1: an expectation under N(0, 1)
    grid = np.meshgrid(*([np.arange(order)] * d), indexing="ij")
    index = np.stack([g.ravel() for g in grid], axis=-1)  # (order^d, d): a node per unit
    t = nodes[index].astype(model.dtype)  # (J, d)
    w = np.prod(weights[index], axis=1).astype(model.dtype)  # (J,)
    eps = np.broadcast_to(t[:, None, :], (len(t), n, d))  # the same nodes for every point
    log_w = model.log_weights_given(theta, x, mean, log_std, eps)  # (J, n)
    return anp.dot(w, log_w)


@checked(
    returns=finite_result("theta, limit", "p(x, z) on the grid overflowed"),
    theta=THETA,
    x_point=real(ndim=1),
    limit=LIMIT,
    grid=_grid,
)
def posterior_on_grid(model, theta, x_point, limit=4.0, grid=201):
    """The exact posterior density p(z|x) on a grid, for plots (a full latent of 2 units).

    x_point: (x_dim,) -> (z1 (grid,), z2 (grid,), density (grid, grid) indexed [z1, z2])."""
    if model.eps_dim != 2:
        raise ValueError(
            f"model: expected a latent of 2 units for a density grid, got "
            f"{type(model).__name__} with {model.eps_dim}"
        )
    x_point = model.check_x(np.asarray(x_point)[None, :], name="x_point")[0]
    axis = np.linspace(-limit, limit, grid)
    z = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    log_joint = model.log_joint(theta, np.asarray(x_point)[None, :], z[:, None, :])[:, 0]
    log_cell = 2 * math.log(2 * limit / (grid - 1))
    density = np.exp(log_joint - logsumexp(log_joint) - log_cell)
    return axis, axis, density.reshape(grid, grid)


def _pair(name, value, arguments):
    """A 2-unit vector (a mean or log σ on a 2-D grid)."""
    value = real()(name, value, arguments)
    if np.shape(getval(value)) != (2,):
        raise ValueError(f"{name}: expected shape (2,), got {np.shape(getval(value))}")
    return value


@checked(mean=_pair, log_std=_pair, z1=real(ndim=1, nonempty=True), z2=real(ndim=1, nonempty=True))
def gaussian_on_grid(mean, log_std, z1, z2):
    """A diagonal Gaussian q's density on the same grid as ``posterior_on_grid``.
    mean, log_std: (2,); z1, z2: (grid,) -> (grid, grid)."""
    check_fits("z1, z2", (len(z1), len(z2)), (len(z1), len(z2), 2), np.float64, copies=3)
    z = np.stack(np.meshgrid(z1, z2, indexing="ij"), axis=-1)
    return np.exp(normal_logpdf(z, mean, log_std))


@checked(theta=THETA, x=X, threshold=number(0), layer=integer(minimum=0))
def active_units(model, theta, x, threshold=0.01, layer=0):
    """Burda et al.'s activity: unit u is active when Cov_x(E_q[z_u|x]) > threshold.

    x: (n, x_dim) -> (count, variances (layer_dims[layer],)) for stochastic layer ``layer``
    (0: the one next to x; a TwoLayerVAE has layers 0 (h1) and 1 (h2)). Each layer's count is out
    of its own size, ``model.layer_dims[layer]``."""
    means = model.layer_means(theta, x)
    if layer >= len(means):
        raise ValueError(
            f"layer: expected a stochastic layer below {len(means)} of "
            f"{type(model).__name__}, got {layer}"
        )
    mean = means[layer]
    variances = np.var(mean, axis=0)
    return int(np.sum(variances > threshold)), variances
