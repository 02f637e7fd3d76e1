"""The inference gaps without Monte Carlo noise, and amortization's price in compute:
``evaluate.elbo_quadrature`` (the ELBO of a diagonal Gaussian q by Gauss–Hermite quadrature),
``gaps.best_diagonal_quadrature`` (q* by Newton's method on it) and ``gaps.break_even_n``.

Each is checked against something it does not use: the linear-Gaussian model's closed-form ELBO
and best diagonal Gaussian (conftest, computed with numpy and scipy directly), a Monte Carlo
estimate, finite differences, and the two cost lines whose crossing the break-even is.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import iwae_np as iw
from iwae_np import evaluate, gaps


@pytest.fixture(scope="module")
def banana():
    return iw.data.banana(n=40, seed=0)


def test_quadrature_elbo_is_exact_on_the_linear_gaussian_model(linear_gaussian):
    """log w is quadratic in the nodes there, so any order >= 2 is exact."""
    lg = linear_gaussian
    x = lg.sample_x(6)
    log_std, shift = np.array([-0.7, -0.2]), np.array([0.3, -0.5])
    theta = lg.theta(log_std, mean_shift=shift)
    exact = lg.exact_elbo(x, log_std, mean_shift=shift)
    for order in (2, 5, 12):
        np.testing.assert_allclose(
            evaluate.elbo_quadrature(lg.model, theta, x, order=order), exact, rtol=0, atol=1e-10
        )
    # a q given per point: the same numbers as the encoder's
    mean, log_std_given = lg.model.encode(theta, x)
    np.testing.assert_allclose(
        evaluate.elbo_quadrature(lg.model, theta, x, lam=(mean, log_std_given)), exact, atol=1e-10
    )


def test_quadrature_elbo_agrees_with_monte_carlo_on_the_banana(banana):
    x = banana.x[:8]
    rng = np.random.default_rng(0)
    lam = (rng.normal(size=(8, 2)), np.full((8, 2), -0.8))
    quadrature = evaluate.elbo_quadrature(banana.model, banana.theta, x, order=30, lam=lam)
    finer = evaluate.elbo_quadrature(banana.model, banana.theta, x, order=60, lam=lam)
    np.testing.assert_allclose(quadrature, finer, atol=1e-8)  # converged in the order
    replicates = 20000
    mc, std = evaluate.expected_bound(
        banana.model, banana.theta, x, "elbo", 1, replicates=replicates, lam=lam, return_std=True
    )
    assert np.all(np.abs(mc - quadrature) < 5 * std / np.sqrt(replicates))


def test_quadrature_elbo_gradient_matches_finite_differences(banana):
    x = banana.x[:3]
    mean0, log_std0 = np.array([[0.2, -0.1], [1.0, 0.5], [-0.8, 0.3]]), np.full((3, 2), -0.6)

    def total(flat):
        lam = flat.reshape(2, 3, 2)
        elbo = evaluate.elbo_quadrature(banana.model, banana.theta, x, 12, (lam[0], lam[1]))
        return anp.sum(elbo)

    report = iw.gradcheck(total, np.concatenate([mean0.ravel(), log_std0.ravel()]))
    assert report.passed, report


def test_newton_finds_the_best_diagonal_gaussian_of_the_linear_gaussian_model(linear_gaussian):
    """Closed form: the mean is the posterior mean, the variances 1/diag(Σ⁻¹); from a far start."""
    lg = linear_gaussian
    x = lg.sample_x(10)
    theta = lg.theta(np.zeros(2))
    far = (np.full((10, 2), 3.0), np.full((10, 2), -2.0))
    result = gaps.best_diagonal_quadrature(lg.model, theta, x, inits=[far], order=6, tol=1e-10)
    best_log_std = -0.5 * np.log(np.diag(lg.precision))
    np.testing.assert_allclose(result["mean"], lg.posterior_mean(x), atol=1e-9)
    np.testing.assert_allclose(result["log_std"], np.tile(best_log_std, (10, 1)), atol=1e-9)
    np.testing.assert_allclose(result["elbo"], lg.exact_elbo(x, best_log_std), atol=1e-9)
    assert result["quadrature_error"].max() < 1e-9
    # at the default tol (a gradient of 1e-6) every point is flagged converged
    default = gaps.best_diagonal_quadrature(lg.model, theta, x, inits=[far], order=6)
    assert default["converged"].all()
    np.testing.assert_allclose(default["mean"], lg.posterior_mean(x), atol=1e-6)


def test_newton_result_is_a_local_maximum_on_the_banana(banana):
    """Every coordinate moved either way lowers the ELBO (with more nodes than Newton used)."""
    x = banana.x[:10]
    result = gaps.best_diagonal_quadrature(banana.model, banana.theta, x, order=12)
    assert result["converged"].all()
    lam = np.concatenate([result["mean"], result["log_std"]], axis=1)
    at_best = evaluate.elbo_quadrature(banana.model, banana.theta, x, 40, (lam[:, :2], lam[:, 2:]))
    np.testing.assert_allclose(at_best, result["elbo"], atol=1e-4)
    for c in range(4):
        for h in (-1e-2, 1e-2):
            moved = lam.copy()
            moved[:, c] += h
            value = evaluate.elbo_quadrature(
                banana.model, banana.theta, x, 40, (moved[:, :2], moved[:, 2:])
            )
            assert np.all(value < at_best), (c, h)


@pytest.mark.slow
def test_classic_vi_does_not_beat_the_newton_optimum(banana):
    """fit_local (Monte Carlo, Newton on sampled curvature) gets no higher than q*."""
    x = banana.x[:2]
    fit = iw.vi.fit_local(banana.model, banana.theta, x, eval_replicates=1)
    result = gaps.best_diagonal_quadrature(banana.model, banana.theta, x, order=12)
    theirs = evaluate.elbo_quadrature(banana.model, banana.theta, x, 24, (fit.mean, fit.log_std))
    assert np.all(theirs <= result["elbo"] + 1e-6)
    assert np.all(result["elbo"] - theirs < 0.01)  # and it gets close


def test_several_starts_keep_the_best_and_a_coarse_quadrature_is_not_trusted(banana):
    x = banana.x[:12]
    n = len(x)
    prior = (np.zeros((n, 2)), np.zeros((n, 2)))
    elsewhere = (np.tile([1.5, -1.0], (n, 1)), np.full((n, 2), -1.0))
    model, theta = banana.model, banana.theta
    one = gaps.best_diagonal_quadrature(model, theta, x, inits=[prior], order=12)
    other = gaps.best_diagonal_quadrature(model, theta, x, inits=[elsewhere], order=12)
    both = gaps.best_diagonal_quadrature(model, theta, x, inits=[prior, elsewhere], order=12)
    np.testing.assert_array_equal(both["elbo"], np.maximum(one["elbo"], other["elbo"]))
    np.testing.assert_array_equal(both["start"], (other["elbo"] > one["elbo"]).astype(int))
    coarse = gaps.best_diagonal_quadrature(banana.model, banana.theta, x, order=2)
    assert not coarse["converged"].all()  # 2 nodes per unit: its error is far above tolerance
    assert np.all(coarse["converged"] <= (coarse["quadrature_error"] <= 1e-4))


def test_break_even_is_where_the_two_cost_lines_cross():
    rng = np.random.default_rng(0)
    train, encode = rng.uniform(0, 5, 20), rng.uniform(0, 0.01, 20)
    classic = encode + rng.uniform(0.001, 1, 20)
    n = gaps.break_even_n(train, encode, classic)
    np.testing.assert_allclose(train + n * encode, n * classic)
    assert gaps.break_even_n(3.0, 0.5, 0.5) == np.inf  # no saving per point: it never pays
    assert gaps.break_even_n(3.0, 1.0, 0.5) == np.inf
    assert gaps.break_even_n(0.0, 0.0, 0.5) == 0.0
    assert isinstance(gaps.break_even_n(1.0, 0.0, 0.5), float)
    np.testing.assert_allclose(gaps.break_even_n([2.0, 4.0], 0.0, 2.0), [1.0, 2.0])


@pytest.mark.parametrize(
    "args, name",
    [
        ((-1.0, 0.0, 1.0), "train_seconds"),
        ((1.0, np.nan, 1.0), "encode_seconds"),
        ((1.0, 0.0, [1.0, -2.0]), "classic_seconds"),
        (([1.0, 2.0], 0.0, [1.0, 2.0, 3.0]), "train_seconds, encode_seconds, classic_seconds"),
        (("a", 0.0, 1.0), "train_seconds"),
    ],
)
def test_break_even_refuses_bad_seconds(args, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        gaps.break_even_n(*args)


def test_quadrature_refuses_what_it_cannot_compute(banana, linear_gaussian):
    x = banana.x[:2]
    with pytest.raises(ValueError, match="^order: expected"):
        evaluate.elbo_quadrature(banana.model, banana.theta, x, order=1)
    big = iw.VAE(3, 4, hidden=())
    with pytest.raises(ValueError, match="^model: expected a latent of at most 3 units"):
        evaluate.elbo_quadrature(big, big.init(0), np.zeros((2, 3)))
    two = iw.TwoLayerVAE(2, 2, 1, hidden1=(4,), hidden2=(4,))
    with pytest.raises(ValueError, match="^model: expected a model with one stochastic layer"):
        evaluate.elbo_quadrature(two, two.init(0), x)
    with pytest.raises(ValueError, match="^lam: expected"):
        evaluate.elbo_quadrature(banana.model, banana.theta, x, lam=(np.zeros((3, 2)),) * 2)
    wrong = (np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^inits"):
        gaps.best_diagonal_quadrature(banana.model, banana.theta, x, inits=[wrong])
    with pytest.raises(ValueError, match="^inits: expected a non-empty list"):
        gaps.best_diagonal_quadrature(banana.model, banana.theta, x, inits=[])
    with pytest.raises(ValueError, match="^steps: expected"):
        gaps.best_diagonal_quadrature(banana.model, banana.theta, x, steps=-1)


def test_quadrature_elbo_is_differentiable_in_theta(banana):
    x = banana.x[:4]
    lam = (np.zeros((4, 2)), np.full((4, 2), -1.0))

    def total(theta):
        return anp.sum(evaluate.elbo_quadrature(banana.model, theta, x, 8, lam))

    g = autograd.grad(total)(banana.theta)
    assert g.shape == banana.theta.shape and np.all(np.isfinite(g)) and np.any(g != 0)
