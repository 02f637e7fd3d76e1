"""Families of q beyond the diagonal Gaussian (iwae_np/families.py), against independent answers:
scipy's multivariate normal, the linear-Gaussian model's exact posterior, densities integrated on
a grid, and autograd applied to the plain formulas."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.stats as st

import iwae_np as iw
from iwae_np import data as datasets
from iwae_np import families
from iwae_np.train import TrainingDiverged

FAMILIES = [
    families.DiagonalGaussian(2),
    families.FullCovarianceGaussian(2),
    families.CouplingFlow(2, layers=3, hidden=5),
]
IDS = ["diagonal", "full", "flow"]


def well_conditioned_cholesky(rng, shape, d):
    """Lower-triangular factors with diagonals in [0.5, 1.5] (some negative) and modest entries
    below it, so that Σ = L Lᵀ is well conditioned and scipy's answer is accurate."""
    L = np.tril(rng.uniform(-0.6, 0.6, size=shape + (d, d)), -1)
    diagonal = rng.uniform(0.5, 1.5, size=shape + (d,)) * rng.choice([-1, 1], size=shape + (d,))
    return L + diagonal[..., None] * np.eye(d)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_full_covariance_logpdf_is_scipys_multivariate_normal(d):
    rng = np.random.default_rng(d)
    n, k = 4, 6
    L = well_conditioned_cholesky(rng, (n,), d)
    mean = rng.normal(size=(n, d))
    z = mean + 2 * rng.normal(size=(k, n, d))
    got = families.full_covariance_logpdf(z, mean, L)
    assert got.shape == (k, n)
    for i in range(n):
        expected = st.multivariate_normal(mean[i], L[i] @ L[i].T).logpdf(z[:, i])
        np.testing.assert_allclose(got[:, i], np.atleast_1d(expected), rtol=1e-12, atol=1e-12)


def test_full_covariance_logpdf_broadcasts_one_factor_over_points():
    rng = np.random.default_rng(0)
    L = well_conditioned_cholesky(rng, (), 3)
    z = rng.normal(size=(7, 3))
    expected = st.multivariate_normal(np.zeros(3), L @ L.T).logpdf(z)
    np.testing.assert_allclose(families.full_covariance_logpdf(z, 0.0, L), expected, rtol=1e-12)


def test_full_covariance_logpdf_gradients_match_the_closed_form():
    """∇_z log N(z; μ, Σ) = −Σ⁻¹ (z − μ): autograd through the forward substitution."""
    rng = np.random.default_rng(1)
    L = well_conditioned_cholesky(rng, (), 3)
    mean, z = rng.normal(size=3), rng.normal(size=3)
    grad = autograd.grad(lambda z: families.full_covariance_logpdf(z, mean, L))(z)
    np.testing.assert_allclose(grad, -np.linalg.solve(L @ L.T, z - mean), rtol=1e-10)
    report = iw.gradcheck(
        lambda m, c: families.full_covariance_logpdf(z, m, anp.tril(c)), (mean, L)
    )
    assert report.passed, report


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_the_inverse_gives_the_same_log_density_as_the_forward_map(family):
    rng = np.random.default_rng(2)
    lam = family.init(5, seed=3) + 0.4 * rng.normal(size=(5, family.size))
    eps = rng.normal(size=(9, 5, 2))
    z, log_q = family.sample(lam, eps)
    assert z.shape == (9, 5, 2) and log_q.shape == (9, 5)
    np.testing.assert_allclose(family.log_density(lam, z), log_q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_every_density_integrates_to_one_and_its_samples_have_its_mean(family):
    """On a grid, ∫ q is the fraction of samples that land on it (1 where q is well inside), and
    ∫ z q dz over the grid is the mean of those samples: an independent check of the forward map,
    the inverse and the log-determinant together."""
    rng = np.random.default_rng(4)
    lam = family.init(2, seed=5) + 0.2 * rng.normal(size=(2, family.size))
    axis = np.linspace(-8, 8, 601)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2)
    cell = (axis[1] - axis[0]) ** 2
    draws, _ = family.sample(lam, rng.normal(size=(200000, 2, 2)))
    for i in range(2):
        q = np.exp(family.log_density(lam[i : i + 1], grid)[:, 0]) * cell
        inside = np.all(np.abs(draws[:, i]) < 8, axis=1)
        fraction = inside.mean()
        assert fraction > 0.99
        assert abs(q.sum() - fraction) < 5 * np.sqrt(fraction * (1 - fraction) / len(draws)) + 1e-4
        grid_mean = q @ grid[:, 0] / q.sum()
        on_grid = draws[inside, i]
        spread = on_grid.std(axis=0) / np.sqrt(len(on_grid))
        assert np.all(np.abs(on_grid.mean(axis=0) - grid_mean) < 5 * spread)


def test_the_diagonal_family_is_the_packages_q():
    toy = datasets.banana(n=6, seed=0)
    family = families.DiagonalGaussian(2)
    rng = np.random.default_rng(6)
    mean, log_std = rng.normal(size=(6, 2)), rng.normal(scale=0.3, size=(6, 2))
    eps = rng.normal(size=(8, 6, 2))
    lam = np.concatenate([mean, log_std], axis=1)
    np.testing.assert_allclose(
        families.log_weights(toy.model, toy.theta, toy.x, family, lam, eps),
        toy.model.log_weights_given(toy.theta, toy.x, mean, log_std, eps),
        rtol=1e-12,
    )


@pytest.mark.parametrize("family", FAMILIES[1:], ids=IDS[1:])
def test_every_family_starts_at_the_diagonal_gaussian_it_contains(family):
    rng = np.random.default_rng(7)
    diagonal = rng.normal(size=(3, 4))
    eps = rng.normal(size=(5, 3, 2))
    z, log_q = family.sample(family.init(3, diagonal=diagonal), eps)
    z_diag, log_q_diag = families.DiagonalGaussian(2).sample(diagonal, eps)
    np.testing.assert_allclose(z, z_diag, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_q, log_q_diag, rtol=1e-12, atol=1e-12)


def test_at_the_exact_posterior_every_weight_is_p_x_and_the_stl_gradient_is_zero():
    """On a linear-Gaussian model p(z|x) = N(m, Σ) is in the full-covariance family. There
    log w = log p(x) for every ε, so the path-derivative gradient is exactly 0."""
    lg = datasets.linear_gaussian(n=4, x_dim=5, z_dim=2, noise_std=0.5, seed=0)
    family = families.FullCovarianceGaussian(2)
    mean, cov = lg.posterior(lg.x)
    L = np.linalg.cholesky(cov)
    lam = np.tile(np.r_[0, 0, np.log(np.diag(L)), L[1, 0]], (4, 1))
    lam[:, :2] = mean
    eps = np.random.default_rng(8).normal(size=(50, 4, 2))
    log_w = families.log_weights(lg.model, lg.theta, lg.x, family, lam, eps)
    np.testing.assert_allclose(log_w, np.broadcast_to(lg.log_marginal(lg.x), (50, 4)), atol=1e-10)

    def surrogate(lam):
        return anp.sum(families.log_weights(lg.model, lg.theta, lg.x, family, lam, eps, True))

    assert np.abs(autograd.grad(surrogate)(lam)).max() < 1e-10


@pytest.mark.slow
def test_fit_reaches_the_exact_posterior_and_the_best_diagonal():
    """A full-covariance q fitted on a linear-Gaussian model is the posterior, and its ELBO is
    log p(x); a diagonal q is the best diagonal Gaussian (mean m, variances 1 / diag Σ⁻¹)."""
    lg = datasets.linear_gaussian(n=6, x_dim=5, z_dim=2, noise_std=0.5, seed=0)
    mean, cov = lg.posterior(lg.x)
    full = families.fit(lg.model, lg.theta, lg.x, families.FullCovarianceGaussian(2), steps=800)
    L = full.family.cholesky(full.lam)
    assert np.abs(full.lam[:, :2] - mean).max() < 0.02
    assert np.abs(L @ np.transpose(L, (0, 2, 1)) - cov).max() < 0.02 * np.abs(cov).max()
    diagonal = families.fit(lg.model, lg.theta, lg.x, families.DiagonalGaussian(2), steps=800)
    best_mean, best_log_std = lg.best_diagonal(lg.x)
    assert np.abs(diagonal.lam[:, :2] - best_mean).max() < 0.02
    assert np.abs(diagonal.lam[:, 2:] - best_log_std).max() < 0.02
    eps = np.random.default_rng(9).normal(size=(2000, 6, 2))
    log_w = families.log_weights(lg.model, lg.theta, lg.x, full.family, full.lam, eps)
    np.testing.assert_allclose(log_w.mean(axis=0), lg.log_marginal(lg.x), atol=0.005)
    assert full.history.shape == (8, 6) and full.steps == 800 and full.seconds > 0


def test_fit_keeps_the_last_good_lambda_when_it_diverges():
    toy = datasets.banana(n=3, seed=0)
    family = families.DiagonalGaussian(2)
    with pytest.raises(TrainingDiverged, match="not finite") as error:
        families.fit(toy.model, toy.theta, toy.x, family, steps=50, lr=500.0, final_lr=500.0)
    assert np.all(np.isfinite(error.value.theta))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: families.full_covariance_logpdf(np.zeros(2), 0.0, np.ones((2, 2))), "cholesky"),
        (lambda: families.full_covariance_logpdf(np.zeros(2), 0.0, np.zeros((2, 2))), "cholesky"),
        (lambda: families.full_covariance_logpdf(np.zeros(2), 0.0, np.eye(3)), "cholesky"),
        (lambda: families.full_covariance_logpdf(np.zeros(2), np.zeros(3), np.eye(2)), "z, mean"),
        (lambda: families.full_covariance_logpdf([np.nan, 0], 0.0, np.eye(2)), "z"),
        (lambda: families.full_covariance_logpdf(1.0, 0.0, np.eye(1)), "z"),
        (
            lambda: families.full_covariance_logpdf(
                np.zeros((5, 3, 2)), 0.0, np.tile(np.eye(2), (4, 1, 1))
            ),
            "z, mean, cholesky",
        ),
        (lambda: families.DiagonalGaussian(2).sample(np.zeros((3, 5)), np.zeros((1, 3, 2))), "lam"),
        (lambda: families.DiagonalGaussian(2).sample(np.zeros((3, 4)), np.zeros((1, 2, 2))), "eps"),
        (lambda: families.CouplingFlow(1), "z_dim"),
        (lambda: families.FullCovarianceGaussian(2).cholesky(np.zeros((3, 4))), "lam"),
        (lambda: families.DiagonalGaussian(2).init(3, diagonal=np.zeros((3, 3))), "diagonal"),
    ],
)
def test_bad_input_is_refused_by_name(call, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        call()


def test_a_family_that_does_not_fit_the_model_is_refused_by_name():
    toy = datasets.banana(n=3, seed=0)
    eps = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match="^family: "):
        families.log_weights(
            toy.model, toy.theta, toy.x, families.DiagonalGaussian(3), np.zeros((3, 6)), eps
        )
    with pytest.raises(ValueError, match="^family: "):
        families.fit(toy.model, toy.theta, toy.x, "full", steps=1)
    with pytest.raises(ValueError, match="^lam: "):
        families.log_weights(
            toy.model, toy.theta, toy.x, families.DiagonalGaussian(2), np.zeros((2, 4)), eps
        )
