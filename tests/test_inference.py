"""Classic VI and amortized inference against the linear-Gaussian closed form; evaluation."""

import numpy as np
import pytest

from iwae_np import VAE, evaluate, gaps, train, vi
from iwae_np import data as datasets


@pytest.fixture(scope="module")
def lg():
    return datasets.linear_gaussian(n=200, x_dim=5, z_dim=2, noise_std=0.5, seed=0)


@pytest.mark.slow
def test_classic_vi_reaches_the_best_diagonal_gaussian(lg):
    fit = vi.fit_local(lg.model, lg.theta, lg.x, objective="elbo", eval_replicates=400)
    mean, log_std = lg.best_diagonal(lg.x)
    assert np.abs(fit.mean - mean).max() < 0.06 and np.abs(fit.mean - mean).mean() < 0.02
    assert (
        np.abs(fit.log_std - log_std).max() < 0.08 and np.abs(fit.log_std - log_std).mean() < 0.02
    )
    # its ELBO is log p(x) − KL(q* ‖ p(z|x)), with the KL of the best diagonal in closed form
    _, cov = lg.posterior(lg.x)
    precision = np.linalg.inv(cov)
    kl = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])  # ≥ 0
    # per point: 400 × 10 draws give a standard error ≈ 0.01; over 200 points ≈ 0.001
    np.testing.assert_allclose(fit.bound, lg.log_marginal(lg.x) - kl, atol=0.06)
    assert abs(np.mean(fit.bound - (lg.log_marginal(lg.x) - kl))) < 0.01
    assert fit.n_converged == len(lg.x), fit.summary()
    assert fit.seconds > 0 and len(fit.history) == fit.total_steps <= 2000


@pytest.mark.slow
def test_linear_encoder_reaches_the_classic_optimum(lg):
    """The exact posterior mean is linear in x and its variance constant, so a linear encoder
    trained with the true decoder fixed closes the amortization gap."""
    theta = lg.theta.copy()
    data = datasets.Dataset("lg", lg.x, lg.x[:0], "gaussian")
    result = train.train(
        lg.model,
        theta,
        data,
        objective="elbo",
        k=10,
        epochs=300,
        batch_size=50,
        lr=0.02,
        update="encoder",
        progress=False,
    )
    np.testing.assert_array_equal(lg.model.layout.unflatten(result.theta)["decoder.0.W"], lg.W)
    mean, log_std = lg.model.encode(result.theta, lg.x)
    best_mean, best_log_std = lg.best_diagonal(lg.x)
    # constant-step Adam leaves noise of ~lr in the weights, so judge typical points
    assert np.median(np.abs(mean - best_mean)) < 0.03
    assert np.median(np.abs(log_std - best_log_std)) < 0.05
    gap, _ = gaps.amortization_gap(lg.model, result.theta, lg.x[:50], steps=300, replicates=400)
    assert abs(gap["gap"].mean()) < 0.02


@pytest.mark.slow
def test_classic_vi_on_the_iwae_objective(lg):
    """Fitting λ to L_5 instead of the ELBO: a higher bound, still below log p(x), and a broader
    q (the IWAE pays less for a q wider than the posterior)."""
    x = lg.x[:20]
    elbo_fit = vi.fit_local(lg.model, lg.theta, x, objective="elbo", k=5, steps=1500)
    iwae_fit = vi.fit_local(lg.model, lg.theta, x, objective="iwae", k=5, steps=1500)
    exact = lg.log_marginal(x)
    assert iwae_fit.bound.mean() <= exact.mean() + 0.01  # averaged: each estimate is noisy
    assert iwae_fit.bound.mean() > elbo_fit.bound.mean() + 0.05
    assert np.all(iwae_fit.log_std.mean(axis=0) > elbo_fit.log_std.mean(axis=0) + 0.05)


def test_chunked_log_marginal_equals_unchunked():
    model = VAE(6, 2, hidden=(5,))
    x = (np.random.default_rng(0).random((7, 6)) < 0.5) * 1.0
    theta = model.init(1, x=x)
    whole = evaluate.log_marginal(model, theta, x, k=300, max_rows=10**6)
    for max_rows in (1, 50, 299, 301, 1000):
        np.testing.assert_allclose(
            evaluate.log_marginal(model, theta, x, k=300, max_rows=max_rows), whole, rtol=1e-13
        )


def test_log_marginal_and_quadrature_match_the_exact_answer(lg):
    exact = lg.log_marginal(lg.x[:5])
    np.testing.assert_allclose(
        evaluate.log_marginal_quadrature(lg.model, lg.theta, lg.x[:5]), exact, atol=1e-6
    )
    mean, cov = lg.posterior(lg.x[:5])  # a q close to the posterior: L_5000 ≈ log p(x)
    estimate = evaluate.log_marginal(
        lg.model,
        lg.theta,
        lg.x[:5],
        k=5000,
        lam=(mean, np.broadcast_to(0.5 * np.log(np.diag(cov)), mean.shape)),
    )
    # a diagonal q of a correlated posterior: L_5000 is still a little below log p(x)
    assert np.all(np.abs(estimate - exact) < 0.05) and estimate.mean() <= exact.mean() + 0.005


def test_banana_posterior_is_not_gaussian():
    toy = datasets.banana(n=5, seed=0)
    z1, z2, density = evaluate.posterior_on_grid(toy.model, toy.theta, np.array([0.0, 1.5]))
    p = density / density.sum()
    Z1, Z2 = np.meshgrid(z1, z2, indexing="ij")
    mean2 = np.sum(p * Z2)
    # bent: E[z2 | z1] differs between the centre and the sides by far more than grid error
    centre = np.sum(p[np.abs(z1) < 0.3] * Z2[np.abs(z1) < 0.3]) / p[np.abs(z1) < 0.3].sum()
    side = np.sum(p[np.abs(z1) > 1.5] * Z2[np.abs(z1) > 1.5]) / p[np.abs(z1) > 1.5].sum()
    assert abs(centre - side) > 0.5, (centre, side, mean2)


def test_active_units_counts_variance_of_encoder_means():
    model = VAE(4, 3, hidden=())
    theta = np.zeros(model.layout.size)
    W = np.zeros((4, 6))
    W[0, 0], W[1, 1] = 1.0, 0.05  # unit 0: var 1 ; unit 1: var 0.0025 ; unit 2: 0
    theta[model.layout.slice("encoder.0.W")] = W.ravel()
    x = np.random.default_rng(0).integers(0, 2, size=(4000, 4)) * 2.0 - 1.0
    x = (x + 1) / 2  # binary, variance 0.25 per column
    count, variances = evaluate.active_units(model, theta, x)
    np.testing.assert_allclose(variances, [0.25, 0.25 * 0.0025, 0.0], rtol=0.05)
    assert count == 1


@pytest.mark.slow
def test_inference_gaps_on_toys_with_exact_log_px():
    from iwae_np.app import experiments

    linear = experiments.toy_gaps("linear")  # the defaults behind the README table
    toy = datasets.linear_gaussian(n=300, seed=0)
    _, cov = toy.posterior(toy.x[:1])
    precision = np.linalg.inv(cov)
    kl_best_diagonal = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    # the approximation gap of the best diagonal q is exactly this KL, the same for every x
    assert abs(linear["approximation_gap"] - kl_best_diagonal) < 0.02
    assert -0.02 < linear["amortization_gap"] < 0.05
    banana = experiments.toy_gaps("banana")
    assert banana["approximation_gap"] > 0.3 and banana["amortization_gap"] > 0.1
