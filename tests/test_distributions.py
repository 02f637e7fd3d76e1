"""Log-densities against scipy.stats, with NumPy broadcasting; the fused Bernoulli VJP against
finite differences and the naive formula; reparameterized sampling."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import iwae_np as iw


@pytest.fixture
def rng():
    """A fresh generator per test, so no test's draws depend on which tests ran before it."""
    return np.random.default_rng(0)


def test_normal_logpdf_matches_scipy_with_broadcasting(rng):
    x = rng.normal(size=(4, 3))  # (n, d)
    mean = rng.normal(size=(5, 4, 3))  # (k, n, d)
    log_std = rng.normal(size=(4, 3))
    out = iw.normal_logpdf(x, mean, log_std)
    assert out.shape == (5, 4)
    expected = st.norm.logpdf(x, loc=mean, scale=np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.parametrize("log_std", [-50.0, -5.0, 0.0, 5.0, 50.0])
def test_normal_logpdf_extreme_scales(log_std):
    x, mean = np.array([[0.3, -1.0]]), np.array([[0.3 + 1e-22, -1.0]])
    out = iw.normal_logpdf(x, mean, np.full((1, 2), log_std))
    expected = st.norm.logpdf(x, loc=mean, scale=np.exp(log_std)).sum(-1)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_std_normal_logpdf_matches_scipy(rng):
    z = rng.normal(size=(6, 5, 3))
    expected = st.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z.reshape(-1, 3)).reshape(6, 5)
    np.testing.assert_allclose(iw.std_normal_logpdf(z), expected, rtol=1e-13)


def test_bernoulli_logpmf_matches_scipy_with_broadcasting(rng):
    x = (rng.random((4, 6)) < 0.4).astype(float)
    logits = rng.normal(scale=3, size=(3, 4, 6))
    out = iw.bernoulli_logpmf(x, logits)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, st.bernoulli.logpmf(x, sp.expit(logits)).sum(-1), rtol=1e-12)


def test_bernoulli_logpmf_extreme_logits():
    logits = np.array([[-1e4, 1e4, -1e4, 1e4, -40.0, 40.0]])
    x = np.array([[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    # exact: log σ(±l) = -softplus(∓l), computed independently with numpy's logaddexp
    expected = np.sum(np.where(x == 1, -np.logaddexp(0, -logits), -np.logaddexp(0, logits)))
    out = iw.bernoulli_logpmf(x, logits)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [expected], rtol=1e-15)


def test_bernoulli_vjp_against_finite_differences_and_naive(rng):
    x = (rng.random((3, 5)) < 0.5).astype(float)
    logits = rng.normal(scale=4, size=(2, 3, 5))
    weights = rng.normal(size=(2, 3))
    f = lambda l: anp.sum(weights * iw.bernoulli_logpmf(x, l))
    naive = lambda l: anp.sum(weights * anp.sum(x * l - anp.log(1 + anp.exp(l)), axis=-1))
    assert iw.gradcheck(f, logits).passed
    np.testing.assert_allclose(autograd.grad(f)(logits), autograd.grad(naive)(logits), rtol=1e-10)


def test_bernoulli_vjp_unbroadcasts_to_the_logits_shape(rng):
    x = (rng.random((2, 3, 4)) < 0.5).astype(float)
    logits = rng.normal(size=(3, 4))  # broadcast against x's leading axis
    f = lambda l: anp.sum(iw.bernoulli_logpmf(x, l))
    g = autograd.grad(f)(logits)
    assert g.shape == logits.shape
    assert iw.gradcheck(f, logits).passed


def test_normal_logpdf_gradients(rng):
    x = rng.normal(size=(3, 2))
    params = rng.normal(size=(2, 3, 2))
    f = lambda p: anp.sum(iw.normal_logpdf(x, p[0], p[1]))
    assert iw.gradcheck(f, params).passed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_normal_is_reparameterized_and_reproducible(dtype, assert_normal_sample):
    k = 20000
    mean = np.array([[1.0, -2.0], [0.0, 0.5]], dtype=dtype)
    log_std = np.array([[0.0, np.log(3.0)], [np.log(0.1), 0.0]], dtype=dtype)
    z, eps = iw.sample_normal(np.random.default_rng(5), mean, log_std, k=k)
    assert z.shape == eps.shape == (k, 2, 2) and z.dtype == eps.dtype == dtype
    np.testing.assert_array_equal(z, mean + np.exp(log_std) * eps)
    # N(mean, exp(log_std)²): the draws' mean and spread within 5 standard errors
    assert_normal_sample(z, mean, np.exp(log_std.astype(np.float64)))
    z2, _ = iw.sample_normal(np.random.default_rng(5), mean, log_std, k=k)
    np.testing.assert_array_equal(z, z2)
    z1, _ = iw.sample_normal(np.random.default_rng(5), mean, log_std)  # k defaults to 1
    assert z1.shape == (1, 2, 2) and z1.dtype == dtype
