"""Classic VI that converges, and says so (``vi.fit_local``): its defaults reach the best diagonal
Gaussian of a correlated posterior, found here independently by optimizing the closed-form ELBO
with scipy; its gradients are autograd's; convergence and divergence are reported."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.optimize

import iwae_np as iw
from iwae_np import data as datasets
from iwae_np import gaps, vi
from iwae_np.train import TrainingDiverged


@pytest.fixture(scope="module")
def lg():
    # the model: 40 points, x_dim 5, z_dim 2, noise 0.6; its posterior is correlated
    return datasets.linear_gaussian(n=40, x_dim=5, z_dim=2, noise_std=0.6, seed=0)


def closed_form_elbo(lam, x, W, b, noise_std):
    """ELBO of q = N(μ, diag σ²) for z ~ N(0, I), x = zW + b + noise_std·e, in closed form:
    E_q[log N(z; 0, I)] + E_q[log N(x; zW + b, noise_std² I)] + H[q]."""
    d = W.shape[0]
    mean, var = lam[:d], np.exp(2 * lam[d:])
    prior = -0.5 * (mean @ mean + var.sum()) - 0.5 * d * np.log(2 * np.pi)
    residual = x - mean @ W - b
    likelihood = -0.5 * (residual @ residual + var @ np.sum(W**2, axis=1)) / noise_std**2
    likelihood -= 0.5 * len(x) * np.log(2 * np.pi * noise_std**2)
    entropy = np.sum(lam[d:]) + 0.5 * d * np.log(2 * np.pi * np.e)
    return prior + likelihood + entropy


def best_diagonal_by_optimization(lg):
    """argmax of the closed-form ELBO for every point, by BFGS: (mean (n, d), std (n, d), ELBO)."""
    d = lg.W.shape[0]
    means, stds, values = [], [], []
    for x in lg.x:
        result = scipy.optimize.minimize(
            lambda lam, x=x: -closed_form_elbo(lam, x, lg.W, lg.b, lg.noise_std),
            np.zeros(2 * d),
            method="BFGS",
            options={"gtol": 1e-10},
        )
        means.append(result.x[:d])
        stds.append(np.exp(result.x[d:]))
        values.append(-result.fun)
    return np.array(means), np.array(stds), np.array(values)


def test_defaults_reach_the_best_diagonal_gaussian_of_a_correlated_posterior(lg):
    best_mean, best_std, best_elbo = best_diagonal_by_optimization(lg)
    # the posterior is correlated, so the best diagonal q is not its marginals
    _, cov = lg.posterior(lg.x[:1])
    assert abs(cov[0, 1]) / np.sqrt(cov[0, 0] * cov[1, 1]) > 0.3
    assert np.all(np.abs(best_std[0] / np.sqrt(np.diag(cov)) - 1) > 0.1)
    fit = vi.fit_local(lg.model, lg.theta, lg.x)  # the defaults
    assert fit.n_converged == len(lg.x), fit.summary()
    assert np.abs(fit.mean - best_mean).max() < 0.03
    assert np.abs(np.exp(fit.log_std) / best_std - 1).max() < 0.03
    # and its bound is the best diagonal ELBO, up to the noise of 200 draws per point
    np.testing.assert_allclose(fit.bound, best_elbo, atol=0.05)
    assert np.all(2 * fit.std_error <= 0.01) and np.all(fit.steps <= 2000)


def test_local_gradient_is_autograds_gradient_of_its_surrogate(lg):
    model, theta, x = lg.model, lg.theta, lg.x[:5]
    rng = np.random.default_rng(1)
    lam = np.concatenate([rng.normal(size=(5, 2)), 0.3 * rng.normal(size=(5, 2))], axis=1)
    eps = rng.standard_normal((7, 5, 2))

    def surrogate(lam, objective, estimator):
        log_w = model.log_weights_given(
            theta, x, lam[:, :2], lam[:, 2:], eps, stop_q=estimator != "reparam"
        )
        if objective == "elbo":
            return anp.sum(iw.elbo(log_w))
        if estimator == "dreg":  # Σ_s stop(w̃_s²) log w_s
            return anp.sum(iw.estimators.normalized_weights(log_w) ** 2 * log_w)
        return anp.sum(iw.iwae_bound(log_w))

    for objective, estimator in [
        ("elbo", "stl"),
        ("elbo", "reparam"),
        ("iwae", "stl"),
        ("iwae", "dreg"),
        ("iwae", "reparam"),
    ]:
        bound, grad, _ = vi.local_gradient(
            model, theta, x, lam[:, :2], lam[:, 2:], eps, objective, estimator
        )
        expected = autograd.grad(surrogate)(lam, objective, estimator)
        np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-10)
        log_w = model.log_weights_given(theta, x, lam[:, :2], lam[:, 2:], eps)
        value = iw.elbo(log_w) if objective == "elbo" else iw.iwae_bound(log_w)
        np.testing.assert_allclose(bound, value, rtol=1e-12)
    with pytest.raises(ValueError, match="^eps: expected shape"):
        vi.local_gradient(model, theta, x, lam[:, :2], lam[:, 2:], eps[:, :4])


def test_curvature_is_the_expected_hessian_of_log_p(lg):
    """Stein's lemma: (1/k) Σ g_s ε_sᵀ / σ estimates E_q[∇²_z log p(x, z)] = −Λ here."""
    model, theta, x = lg.model, lg.theta, lg.x[:3]
    eps = np.random.default_rng(0).standard_normal((20000, 3, 2))
    _, _, curvature = vi.local_gradient(model, theta, x, np.zeros((3, 2)), np.zeros((3, 2)), eps)
    _, cov = lg.posterior(x)
    np.testing.assert_allclose(curvature, np.broadcast_to(-np.linalg.inv(cov), (3, 2, 2)), atol=0.3)


def test_a_fixed_budget_and_the_convergence_report(lg):
    x = lg.x[:10]
    fixed = vi.fit_local(lg.model, lg.theta, x, steps=150, tol=None, eval_replicates=10)
    assert np.all(fixed.steps == 150) and not fixed.converged.any()
    assert len(fixed.history) == len(fixed.elapsed) == 150
    assert "fixed budget" in fixed.criterion and "fixed budget" in fixed.summary()
    assert np.all(np.isfinite(fixed.std_error))
    # with a tolerance a point stops once it has converged, and says so
    fit = vi.fit_local(lg.model, lg.theta, x[:5], steps=3000, tol=0.02, eval_replicates=10)
    assert fit.n_converged == 5 and np.all(2 * fit.std_error <= 0.02)
    assert np.all(fit.steps % 10 == 0) and fit.total_steps < 3000
    assert "5 of 5 points converged" in fit.summary()
    # too few steps to test convergence: nothing converges, every point takes them all
    short = vi.fit_local(lg.model, lg.theta, x, steps=5, eval_replicates=10)
    assert not short.converged.any() and np.all(short.steps == 5)
    assert np.all(np.isnan(short.std_error))


def test_adam_and_the_iwae_objective(lg):
    x = lg.x[:5]
    best_mean, _ = lg.best_diagonal(x)
    adam = vi.fit_local(lg.model, lg.theta, x, method="adam", tol=0.02, eval_replicates=10)
    assert adam.n_converged == 5 and np.abs(adam.mean - best_mean).max() < 0.05
    elbo = vi.fit_local(lg.model, lg.theta, x, k=5, tol=0.05, eval_replicates=50)
    iwae = vi.fit_local(lg.model, lg.theta, x, objective="iwae", k=5, tol=0.05, eval_replicates=50)
    assert iwae.n_converged == 5  # DReG, the default gradient for L_k
    assert np.all(iwae.log_std.mean(axis=0) > elbo.log_std.mean(axis=0) + 0.05)  # a broader q
    with pytest.raises(ValueError, match="^estimator: expected 'stl' or 'reparam'"):
        vi.fit_local(lg.model, lg.theta, x, estimator="dreg")
    with pytest.raises(ValueError, match="^method: expected one of"):
        vi.fit_local(lg.model, lg.theta, x, method="lbfgs")
    with pytest.raises(ValueError, match="^tol: expected a finite positive number"):
        vi.fit_local(lg.model, lg.theta, x, tol=0.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the encoder's own ELBO overflows too
def test_a_bound_that_stops_being_finite_is_reported_by_name_keeping_lambda(lg):
    x = lg.x[:4]
    init = (np.zeros((4, 2)), np.full((4, 2), 800.0))  # σ = e^800 overflows
    with pytest.raises(vi.LocalFitDiverged) as error:
        vi.fit_local(lg.model, lg.theta, x, init=init)
    assert isinstance(error.value, TrainingDiverged)  # the command line's exit code 1
    message = str(error.value)
    assert "\n" not in message and "step 1" in message and "not finite" in message
    np.testing.assert_array_equal(error.value.mean, init[0])
    np.testing.assert_array_equal(error.value.log_std, init[1])
    assert error.value.theta.shape == (4, 4)
    # the gaps run classic VI from the encoder's λ: a diverging one raises the same error
    theta = lg.theta.copy()
    bias = lg.model.layout.unflatten(theta)["encoder.0.b"]
    bias[2:] = 800.0  # the encoder's log σ
    with pytest.raises(vi.LocalFitDiverged):
        gaps.amortization_gap(lg.model, theta, x, replicates=5)
