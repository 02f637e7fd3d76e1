"""numerics: stable forms against scipy.special and mpmath; every VJP against finite differences
and against autograd applied to the naive formula."""

import warnings

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
import pytest
import scipy.special as sp

import iwae_np as iw

EXTREMES = np.array([-1e4, -1e3, -745.0, -40.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 40.0, 745.0, 1e3, 1e4])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_scipy(axis, keepdims):
    a = np.random.default_rng(0).normal(scale=30, size=(4, 5, 3))
    np.testing.assert_allclose(
        iw.logsumexp(a, axis=axis, keepdims=keepdims),
        sp.logsumexp(a, axis=axis, keepdims=keepdims),
        rtol=1e-13,
    )


def test_logsumexp_extremes():
    for a in ([1e300, 0.0], [1e4, -1e4], [-1e4, -1e4 + 1], [-np.inf, 0.0], [-np.inf, -1e300]):
        np.testing.assert_allclose(iw.logsumexp(np.array(a)), sp.logsumexp(a), rtol=1e-15)
    # mpmath in high precision as an independent reference for a wide spread
    a = np.array([-1e4, -9999.5, -10001.0])
    with mpmath.workdps(50):
        exact = float(mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in a)))
    assert iw.logsumexp(a) == pytest.approx(exact, rel=1e-15)


def test_logsumexp_all_neg_inf_slice_is_neg_inf_without_warning():
    a = np.array([[-np.inf, -np.inf], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = iw.logsumexp(a, axis=1)
        grad = autograd.grad(lambda a: anp.sum(iw.logsumexp(a, axis=1)))(a)
    assert out[0] == -np.inf and np.isfinite(out[1])
    np.testing.assert_array_equal(grad[0], [0.0, 0.0])  # all -inf slice: zero gradient, no NaN
    np.testing.assert_allclose(grad[1], sp.softmax([0.0, 1.0]), rtol=1e-14)


def test_logsumexp_gradient_is_softmax_and_neg_inf_gets_zero():
    a = np.array([[-np.inf, 1.0, 2.0], [3.0, -np.inf, -5.0]])
    g = np.array([0.7, -1.3])
    grad = autograd.grad(lambda a: anp.sum(g * iw.logsumexp(a, axis=1)))(a)
    expected = g[:, None] * sp.softmax(np.where(np.isinf(a), -np.inf, a), axis=1)
    np.testing.assert_allclose(grad, expected, rtol=1e-14)
    assert grad[0, 0] == 0.0 and grad[1, 1] == 0.0


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 1), False)])
def test_logsumexp_vjp_against_finite_differences_and_naive(axis, keepdims):
    a = np.random.default_rng(1).normal(size=(3, 4))
    weights = np.random.default_rng(2).normal(
        size=np.shape(sp.logsumexp(a, axis=axis, keepdims=keepdims))
    )
    f = lambda a: anp.sum(weights * iw.logsumexp(a, axis=axis, keepdims=keepdims))
    naive = lambda a: anp.sum(weights * anp.log(anp.sum(anp.exp(a), axis=axis, keepdims=keepdims)))
    assert iw.gradcheck(f, a).passed
    np.testing.assert_allclose(autograd.grad(f)(a), autograd.grad(naive)(a), rtol=1e-12)


def test_log_mean_exp():
    a = np.random.default_rng(3).normal(scale=10, size=(7, 3))
    np.testing.assert_allclose(iw.log_mean_exp(a), sp.logsumexp(a, axis=0) - np.log(7), rtol=1e-14)
    np.testing.assert_allclose(
        iw.log_mean_exp(a, axis=1), sp.logsumexp(a, axis=1) - np.log(3), rtol=1e-14
    )


def _mp(f, x):
    """f(x) in mpmath at 50 digits (the global precision is left as it was)."""
    with mpmath.workdps(50):
        return float(f(mpmath.mpf(float(x))))


def test_softplus_log_sigmoid_sigmoid_match_references_at_extremes():
    np.testing.assert_allclose(iw.softplus(EXTREMES), np.logaddexp(0, EXTREMES), rtol=1e-15)
    np.testing.assert_allclose(iw.log_sigmoid(EXTREMES), sp.log_expit(EXTREMES), rtol=1e-15)
    # sigmoid(-745) = e^-745 ~ 4.9e-324 is a subnormal: ours returns it, scipy rounds to 0
    np.testing.assert_allclose(iw.sigmoid(EXTREMES), sp.expit(EXTREMES), rtol=1e-15, atol=1e-323)
    for x in (-40.0, -5.0, 0.5, 30.0):  # high-precision references where scipy could also err
        assert iw.softplus(np.array(x)) == pytest.approx(
            _mp(lambda t: mpmath.log1p(mpmath.exp(t)), x), rel=1e-15
        )
        assert iw.log_sigmoid(np.array(x)) == pytest.approx(
            _mp(lambda t: -mpmath.log1p(mpmath.exp(-t)), x), rel=1e-15
        )
    assert np.all(np.isfinite(iw.softplus(EXTREMES))) and np.all(
        np.isfinite(iw.log_sigmoid(EXTREMES))
    )


@pytest.mark.parametrize(
    "name,naive",
    [
        ("softplus", lambda x: anp.log(1 + anp.exp(x))),
        ("log_sigmoid", lambda x: -anp.log(1 + anp.exp(-x))),
        ("sigmoid", lambda x: 1 / (1 + anp.exp(-x))),
    ],
)
def test_elementwise_vjps(name, naive):
    f = getattr(iw, name)
    x = np.linspace(-20, 20, 41)
    w = np.random.default_rng(4).normal(size=x.shape)
    assert iw.gradcheck(lambda x: anp.sum(w * f(x)), x).passed
    np.testing.assert_allclose(
        autograd.grad(lambda x: anp.sum(w * f(x)))(x),
        autograd.grad(lambda x: anp.sum(w * naive(x)))(x),
        rtol=1e-12,
        atol=1e-300,
    )
    # at the extremes the gradient stays finite (the naive one would overflow to NaN)
    assert np.all(np.isfinite(autograd.grad(lambda x: anp.sum(f(x)))(EXTREMES)))


def test_float32_is_preserved():
    x = np.linspace(-5, 5, 11, dtype=np.float32)
    for f in (iw.softplus, iw.log_sigmoid, iw.sigmoid):
        assert f(x).dtype == np.float32
        assert autograd.grad(lambda x, f=f: anp.sum(f(x)))(x).dtype == np.float32
    a = np.ones((3, 4), dtype=np.float32)
    assert iw.logsumexp(a, axis=0).dtype == np.float32
    assert iw.log_mean_exp(a).dtype == np.float32
