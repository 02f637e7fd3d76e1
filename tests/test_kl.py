"""iwae_np.kl: the closed-form KL(N(μ, diag σ²) ‖ N(0, I)) and the ELBO as reconstruction − KL,
each against an independent computation (numerical integration, mpmath, the linear-Gaussian
model's exact ELBO)."""

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import iwae_np as iw
from iwae_np import kl


def kl_by_quadrature(mu, sigma):
    def integrand(z):
        log_q = scipy.stats.norm.logpdf(z, mu, sigma)
        return np.exp(log_q) * (log_q - scipy.stats.norm.logpdf(z))

    return scipy.integrate.quad(integrand, mu - 12 * sigma, mu + 12 * sigma, epsabs=1e-13)[0]


@pytest.mark.parametrize(
    "mu, sigma", [(0.0, 1.0), (0.7, 0.3), (-2.0, 1.5), (3.0, 0.02), (0.1, 4.0), (-0.4, 0.9)]
)
def test_per_unit_kl_equals_numerical_integration(mu, sigma):
    value = kl.gaussian_kl_per_unit(np.array(mu), np.array(np.log(sigma)))
    np.testing.assert_allclose(value, kl_by_quadrature(mu, sigma), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "t", [1e-12, -1e-8, 3e-7, 1e-4, -0.1, 0.3, -0.999, 0.999, 1.0, -1.0, -2.0, 5.0, 700.0]
)
def test_expm1_minus_linear_is_accurate_to_a_few_ulps(t):
    """e^t − 1 − t cancels for small |t| when formed as expm1(t) − t; the series does not."""
    with mpmath.workdps(60):
        exact = float(mpmath.exp(t) - 1 - t)
    np.testing.assert_allclose(kl.expm1_minus_linear(np.array(t)), exact, rtol=1e-15)


@pytest.mark.parametrize("log_std", [1e-8, -3e-7, 1e-4, 0.03, 0.3, -2.0])
def test_per_unit_kl_keeps_its_digits_near_the_prior(log_std):
    """A unit at μ = 0 with σ near 1: ½(σ² − 1 − log σ²) nearly cancels, and is still exact."""
    with mpmath.workdps(60):
        t = 2 * mpmath.mpf(log_std)
        exact = (mpmath.exp(t) - 1 - t) / 2
    value = kl.gaussian_kl_per_unit(np.array(0.0), np.array(log_std))
    np.testing.assert_allclose(value, float(exact), rtol=1e-15)


def test_total_kl_is_the_sum_over_units_and_broadcasts():
    rng = np.random.default_rng(0)
    mean, log_std = rng.normal(size=(7, 4)), rng.normal(size=4)  # (7, 4) with (4,)
    per_unit = kl.gaussian_kl_per_unit(mean, log_std)
    assert per_unit.shape == (7, 4) and np.all(per_unit >= 0)
    np.testing.assert_allclose(kl.gaussian_kl(mean, log_std), per_unit.sum(axis=1), rtol=1e-14)
    assert kl.gaussian_kl(np.zeros(3), np.zeros(3)) == 0.0  # q = prior


def test_kl_equals_a_monte_carlo_average_of_log_q_minus_log_p():
    rng = np.random.default_rng(1)
    mean, log_std = np.array([0.5, -1.0, 0.0]), np.array([-0.5, 0.2, 0.0])
    z = mean + np.exp(log_std) * rng.standard_normal((200_000, 3))
    samples = iw.normal_logpdf(z, mean, log_std) - iw.std_normal_logpdf(z)
    se = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - kl.gaussian_kl(mean, log_std)) < 5 * se


def test_kl_gradient_is_mu_and_sigma_squared_minus_one():
    mean, log_std = np.array([0.3, -1.2, 0.0, 2.0]), np.array([0.4, -0.7, 1e-6, -0.03])
    d_mean = autograd.grad(lambda m: anp.sum(kl.gaussian_kl_per_unit(m, log_std)))(mean)
    d_log_std = autograd.grad(lambda s: anp.sum(kl.gaussian_kl_per_unit(mean, s)))(log_std)
    np.testing.assert_allclose(d_mean, mean, rtol=1e-14)
    np.testing.assert_allclose(d_log_std, np.expm1(2 * log_std), rtol=1e-14)


def test_kl_keeps_float32():
    log_std = np.array([[0.0, 1e-3, 2.0], [-0.05, 0.2, -3.0]], np.float32)  # both branches
    value = kl.gaussian_kl(np.ones((2, 3), np.float32), log_std)
    assert value.dtype == np.float32
    gradient = autograd.grad(lambda s: anp.sum(kl.gaussian_kl(np.ones((2, 3), np.float32), s)))
    assert gradient(log_std).dtype == np.float32


def test_kl_beyond_the_float_range_is_inf():
    assert np.all(np.isposinf(kl.gaussian_kl_per_unit(0.0, np.array([400.0, -1e308]))))
    assert np.isposinf(kl.gaussian_kl_per_unit(np.array(1e200), 0.0))


def test_kl_refuses_bad_input():
    with pytest.raises(ValueError, match="^mean: "):
        kl.gaussian_kl(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="^log_std: "):
        kl.gaussian_kl_per_unit(np.zeros(2), np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="mean, log_std: expected shapes that broadcast"):
        kl.gaussian_kl(np.zeros((2, 3)), np.zeros(4))


def test_elbo_terms_give_the_exact_elbo_of_a_linear_gaussian_model(linear_gaussian):
    """mean(log p(x|z)) − KL against log p(x) − KL(q ‖ p(z|x)), computed with scipy."""
    log_std = np.array([-0.6, -0.9])
    theta = linear_gaussian.theta(log_std, mean_shift=0.2)
    x = linear_gaussian.sample_x(6)
    model = linear_gaussian.model
    eps = model.draw_eps(np.random.default_rng(2), 20_000, len(x))
    reconstruction, kl_value = kl.elbo_terms(model, theta, x, eps)
    assert reconstruction.shape == (20_000, 6) and kl_value.shape == (6,)
    estimate = reconstruction.mean(axis=0) - kl_value
    se = reconstruction.std(axis=0) / np.sqrt(len(eps))
    exact = linear_gaussian.exact_elbo(x, log_std, mean_shift=0.2)
    assert np.all(np.abs(estimate - exact) < 5 * se)


def test_elbo_terms_split_the_log_weights_on_the_same_draws():
    """log w = log p(x|z) + log p(z) − log q(z|x): the two forms differ by the Monte Carlo KL."""
    data = iw.data.bars(n=40, size=4, seed=0)
    model = iw.VAE(data.x_dim, 3, hidden=(8,))
    theta = model.init(1, x=data.x_train)
    x = data.x_test[:5]
    eps = model.draw_eps(np.random.default_rng(3), 7, len(x))
    reconstruction, kl_value = kl.elbo_terms(model, theta, x, eps)
    mean, log_std = model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    np.testing.assert_allclose(reconstruction, model.log_likelihood(theta, x, z), rtol=1e-12)
    monte_carlo_kl = iw.normal_logpdf(z, mean, log_std) - iw.std_normal_logpdf(z)
    np.testing.assert_allclose(
        model.log_weights(theta, x, eps), reconstruction - monte_carlo_kl, rtol=1e-10
    )
    np.testing.assert_allclose(kl_value, kl.gaussian_kl(mean, log_std), rtol=1e-14)


def test_elbo_terms_refuse_a_two_layer_model_and_bad_eps():
    model = iw.TwoLayerVAE(16, 3, 2)
    x = np.zeros((2, 16))
    with pytest.raises(ValueError, match="^model: expected a model with one stochastic layer"):
        kl.elbo_terms(model, model.init(0), x, np.zeros((1, 2, 5)))
    vae = iw.VAE(16, 3, hidden=(4,))
    with pytest.raises(ValueError, match="^eps: "):
        kl.elbo_terms(vae, vae.init(0), x, np.zeros((1, 3, 3)))
