"""Property-based tests (hypothesis) at the extremes: logits ±1e4, log_std ±50, log-weights
spread over 1e4, k up to 5000. Outputs are finite, match mpmath at 50 digits, and invariances
hold."""

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import iwae_np as iw

# Fixed examples (derandomize) so every run checks the same cases; applied to each test below
# rather than loaded as a global profile.
EXAMPLES = settings(derandomize=True, deadline=None, max_examples=60, print_blob=True)
finite = dict(allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module", autouse=True)
def mp_50_digits():
    """mpmath references at 50 significant digits, restored afterwards for other modules."""
    with mpmath.workdps(50):
        yield


def mp_logsumexp(values):
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in values))


def mp_log_sigmoid(t):
    return -mpmath.log1p(mpmath.exp(-mpmath.mpf(float(t))))


@EXAMPLES
@given(arrays(np.float64, st.integers(1, 60), elements=st.floats(-1e4, 1e4, **finite)))
def test_logsumexp_is_finite_and_exact(a):
    out = iw.logsumexp(a)
    assert np.isfinite(out)
    assert abs(out - float(mp_logsumexp(a))) <= 1e-13 * max(1.0, abs(out))


@EXAMPLES
@given(
    arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e4, 1e4, **finite)),
    st.floats(-1e4, 1e4, **finite),
)
def test_logsumexp_shift_invariance(a, c):
    assert np.isclose(iw.logsumexp(a + c), iw.logsumexp(a) + c, rtol=1e-12, atol=1e-9)


@EXAMPLES
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e4, 1e4, **finite)))
def test_logsumexp_gradient_is_a_probability_vector(a):
    g = autograd.grad(iw.logsumexp)(a)
    assert np.all(np.isfinite(g)) and np.all(g >= 0) and abs(g.sum() - 1) < 1e-12


@EXAMPLES
@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e4, 1e4, **finite)))
def test_softplus_and_log_sigmoid_finite_and_exact(x):
    sp, ls = iw.softplus(x), iw.log_sigmoid(x)
    assert np.all(np.isfinite(sp)) and np.all(np.isfinite(ls))
    for xi, si, li in zip(x[:10], sp[:10], ls[:10], strict=True):
        exact = mp_log_sigmoid(xi)
        assert abs(li - float(exact)) <= 1e-15 * max(abs(li), 1e-300) + 1e-300
        assert abs(si - float(-mp_log_sigmoid(-xi))) <= 1e-15 * max(abs(si), 1e-300) + 1e-300
    grad = autograd.grad(lambda v: anp.sum(iw.softplus(v)))(x)
    assert np.all(np.isfinite(grad)) and np.all((grad >= 0) & (grad <= 1))


@EXAMPLES
@given(
    st.integers(1, 8).flatmap(
        lambda d: st.tuples(
            arrays(np.float64, (3, d), elements=st.floats(-1e4, 1e4, **finite)),
            arrays(np.float64, (3, d), elements=st.sampled_from([0.0, 1.0])),
        )
    )
)
def test_bernoulli_logpmf_at_extreme_logits(case):
    logits, x = case
    out = iw.bernoulli_logpmf(x, logits)
    assert np.all(np.isfinite(out)) and np.all(out <= 0)
    for i in range(3):
        exact = mpmath.fsum(
            mp_log_sigmoid((2 * xi - 1) * li) for xi, li in zip(x[i], logits[i], strict=True)
        )
        assert abs(out[i] - float(exact)) <= 1e-13 * max(1.0, abs(out[i]))
    grad = autograd.grad(lambda l: anp.sum(iw.bernoulli_logpmf(x, l)))(logits)
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) <= 1)


@EXAMPLES
@given(
    st.integers(1, 5).flatmap(
        lambda d: st.tuples(
            arrays(np.float64, (d,), elements=st.floats(-1e3, 1e3, **finite)),
            arrays(np.float64, (d,), elements=st.floats(-1e3, 1e3, **finite)),
            arrays(np.float64, (d,), elements=st.floats(-50, 50, **finite)),
        )
    )
)
def test_normal_logpdf_at_extreme_scales(case):
    x, mean, log_std = case
    out = iw.normal_logpdf(x, mean, log_std)
    exact = mpmath.fsum(
        -0.5 * mpmath.log(2 * mpmath.pi)
        - mpmath.mpf(float(s))
        - 0.5
        * ((mpmath.mpf(float(a)) - mpmath.mpf(float(m))) / mpmath.exp(mpmath.mpf(float(s)))) ** 2
        for a, m, s in zip(x, mean, log_std, strict=True)
    )
    if abs(exact) < 1e300:  # beyond that the true value itself is not a float
        assert np.isfinite(out)
        assert abs(out - float(exact)) <= 1e-12 * max(1.0, abs(float(exact)))


@settings(EXAMPLES, max_examples=25)
@given(st.integers(1, 5000), st.floats(1.0, 1e4), st.integers(0, 2**32 - 1))
def test_bounds_with_widely_spread_log_weights(k, spread, seed):
    log_w = np.random.default_rng(seed).uniform(-spread, 0, size=(k, 2)) - 1e3
    iwae, elbo = iw.iwae_bound(log_w), iw.elbo(log_w)
    assert np.all(np.isfinite(iwae)) and np.all(np.isfinite(elbo))
    assert np.all(iwae >= elbo - 1e-9)  # Jensen for every sample: L_k(log_w) >= mean(log_w)
    assert np.all(iwae <= log_w.max(axis=0) + 1e-9)  # a mean of weights is at most the largest
    exact = float(mp_logsumexp(log_w[:, 0]) - mpmath.log(k))
    assert abs(iwae[0] - exact) <= 1e-12 * abs(exact)


@settings(EXAMPLES, max_examples=15)
@given(st.integers(2, 200), st.integers(0, 1000))
def test_L1_below_expected_Lk_below_log_px_on_an_exact_model(k, seed):
    lg = iw.data.linear_gaussian(n=2, x_dim=3, z_dim=2, noise_std=0.5, seed=seed)
    mean, log_std = lg.best_diagonal(lg.x)
    eps = np.random.default_rng(seed).standard_normal((200, k, 2, 2))
    log_std = np.broadcast_to(log_std, mean.shape)
    flat_eps = eps.reshape(200 * k, 2, 2)  # all replicates in one call
    log_w = lg.model.log_weights_given(lg.theta, lg.x, mean, log_std, flat_eps)
    log_w = log_w.reshape(200, k, 2)  # (replicates, k, n)
    L1 = log_w.mean(axis=(0, 1))  # E[L_1], from the same draws
    Lk = iw.iwae_bound(np.moveaxis(log_w, 1, 0)).mean(axis=0)
    assert np.all(L1 <= Lk)  # holds for every replicate, hence for the means
    se = iw.iwae_bound(np.moveaxis(log_w, 1, 0)).std(axis=0) / np.sqrt(200)
    assert np.all(Lk <= lg.log_marginal(lg.x) + 4 * se + 1e-9)
