"""The VAE's log-weights and the ELBO / IWAE bounds, against definitions and exact answers."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import iwae_np as iw


def _binary_setup(k=4, n=3, seed=0, dtype="float64"):
    model = iw.VAE(x_dim=6, z_dim=2, hidden=(5, 4), dtype=dtype)
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 6)) < 0.5).astype(dtype)
    theta = model.init(seed=seed, x=x)
    return model, theta, x, model.draw_eps(rng, k, n)


def test_log_weights_equal_their_definition_recomputed_with_scipy():
    model, theta, x, eps = _binary_setup()
    mean, log_std = model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    logits = model.decode(theta, z)
    log_lik = st.bernoulli.logpmf(x, sp.expit(logits)).sum(-1)
    log_prior = st.norm.logpdf(z).sum(-1)
    log_q = st.norm.logpdf(z, loc=mean, scale=np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(
        model.log_weights(theta, x, eps), log_lik + log_prior - log_q, rtol=1e-12
    )


class _CountingNet:
    """Wraps an MLP and records the shape of every input it is called on."""

    def __init__(self, net):
        self.net, self.input_shapes = net, []

    def __call__(self, theta, layout, x):
        self.input_shapes.append(np.shape(x))
        return self.net(theta, layout, x)

    def __getattr__(self, name):
        return getattr(self.net, name)


def test_encoder_runs_once_and_broadcasts_over_k(monkeypatch):
    model, theta, x, eps = _binary_setup(k=5, n=3)
    encoder = _CountingNet(model.encoder)
    monkeypatch.setattr(model, "encoder", encoder)
    log_w = model.log_weights(theta, x, eps)
    # one encoder pass over the n points, not k passes and not one pass over k tiled copies
    assert encoder.input_shapes == [x.shape], encoder.input_shapes
    for i in range(5):  # sample i alone gives the same row: no dependence on the other draws
        row = model.log_weights(theta, x, eps[i : i + 1])[0]
        np.testing.assert_allclose(row, log_w[i], rtol=1e-14)


def test_gaussian_likelihood_log_weights(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample_x(4)
    theta = lg.theta(log_std=np.array([-0.3, 0.2]))
    eps = lg.model.draw_eps(np.random.default_rng(2), 3, 4)
    mean, log_std = lg.model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    expected = (
        st.norm.logpdf(x, loc=z @ lg.W + lg.b, scale=lg.noise_std).sum(-1)
        + st.norm.logpdf(z).sum(-1)
        - st.norm.logpdf(z, loc=mean, scale=np.exp(log_std)).sum(-1)
    )
    np.testing.assert_allclose(lg.model.log_weights(theta, x, eps), expected, rtol=1e-12)


def test_L1_equals_elbo_and_bounds_shapes():
    log_w = np.random.default_rng(0).normal(size=(1, 7))
    np.testing.assert_allclose(iw.iwae_bound(log_w), iw.elbo(log_w), rtol=1e-15)
    log_w = np.random.default_rng(1).normal(scale=5, size=(9, 4, 3))
    np.testing.assert_allclose(
        iw.iwae_bound(log_w), sp.logsumexp(log_w, axis=0) - np.log(9), rtol=1e-14
    )
    # the same mean, summed in another order: equal to a few ulps of the summands (scale 5)
    np.testing.assert_allclose(iw.elbo(log_w), log_w.mean(axis=0), rtol=1e-14, atol=1e-14)


def test_exact_posterior_makes_every_log_weight_equal_log_px(make_linear_gaussian):
    # z_dim = 1: the exact posterior is a (diagonal) Gaussian, so q = p(z|x) and w = p(x) exactly
    lg = make_linear_gaussian(x_dim=4, z_dim=1, noise_std=0.7, seed=3)
    x = lg.sample_x(5)
    theta = lg.theta(log_std=0.5 * np.log(np.diag(lg.cov)))
    log_w = lg.model.log_weights(theta, x, lg.model.draw_eps(np.random.default_rng(0), 50, 5))
    np.testing.assert_allclose(log_w, np.broadcast_to(lg.log_marginal(x), (50, 5)), rtol=1e-12)


def test_monte_carlo_elbo_matches_the_closed_form(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample_x(3)
    log_std = np.array([-0.8, -0.2])
    theta = lg.theta(log_std, mean_shift=0.3)
    log_w = lg.model.log_weights(theta, x, lg.model.draw_eps(np.random.default_rng(1), 200000, 3))
    se = log_w.std(axis=0) / np.sqrt(log_w.shape[0])
    exact = lg.exact_elbo(x, log_std, mean_shift=0.3)
    assert np.all(np.abs(iw.elbo(log_w) - exact) < 5 * se)


def test_iwae_bound_approaches_log_px_on_the_linear_gaussian(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample_x(4)
    log_std = 0.5 * np.log(np.diag(lg.cov)) - 0.4  # too narrow: a clear gap at k = 1
    theta = lg.theta(log_std, mean_shift=0.5)
    log_px = lg.log_marginal(x)
    rng = np.random.default_rng(0)
    gaps = []
    for k in (1, 10, 100, 1000, 10000):
        estimates = np.stack(
            [
                iw.iwae_bound(lg.model.log_weights(theta, x, lg.model.draw_eps(rng, k, 4)))
                for _ in range(20)
            ]
        )
        gaps.append(np.mean(log_px - estimates))
    assert all(g > 0 for g in gaps[:3])  # a bound: below log p(x) by clearly more than noise
    assert all(
        a > b for a, b in zip(gaps[:-1], gaps[1:], strict=True)
    )  # the gap shrinks as k grows
    assert gaps[0] > 1.0 and abs(gaps[-1]) < 0.02


@pytest.mark.slow
def test_expected_iwae_bound_increases_with_k(make_linear_gaussian):
    """E[L_k] ≤ E[L_{2k}] (Burda et al. Thm 1); checked with paired standard errors."""
    lg = make_linear_gaussian(x_dim=3, z_dim=2, noise_std=0.5, seed=4)
    x = lg.sample_x(2)
    theta = lg.theta(log_std=np.array([-1.5, -1.5]), mean_shift=0.4)
    rng = np.random.default_rng(7)
    replicates = 2000
    means, ses = [], []
    for k in (1, 2, 4, 8, 16):
        eps = lg.model.draw_eps(rng, k * replicates, 2).reshape(replicates, k, 2, 2)
        values = np.array([iw.iwae_bound(lg.model.log_weights(theta, x, e)).sum() for e in eps])
        means.append(values.mean())
        ses.append(values.std() / np.sqrt(replicates))
    pairs = list(zip(means, ses, strict=True))
    for (m1, s1), (m2, s2) in zip(pairs[:-1], pairs[1:], strict=True):
        assert m2 - m1 > 4 * np.hypot(s1, s2), (means, ses)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("bound", [iw.elbo, iw.iwae_bound], ids=["elbo", "iwae"])
def test_full_model_gradient_matches_finite_differences(likelihood, bound):
    model = iw.VAE(x_dim=5, z_dim=2, hidden=(4,), likelihood=likelihood)
    rng = np.random.default_rng(0)
    x = (rng.random((3, 5)) < 0.5).astype(float)
    theta = model.init(seed=1, x=x)
    eps = model.draw_eps(rng, 6, 3)
    report = iw.gradcheck(lambda t: anp.sum(bound(model.log_weights(t, x, eps))), theta)
    assert report.passed, report


def test_float32_end_to_end_without_upcast():
    model, theta, x, eps = _binary_setup(dtype="float32")
    assert theta.dtype == np.float32 and eps.dtype == np.float32
    log_w = model.log_weights(theta, x, eps)
    assert log_w.dtype == np.float32
    grad = autograd.grad(lambda t: anp.sum(iw.iwae_bound(model.log_weights(t, x, eps))))(theta)
    assert grad.dtype == np.float32
    model64 = iw.VAE(x_dim=6, z_dim=2, hidden=(5, 4))  # same numbers, computed in float64
    np.testing.assert_allclose(
        log_w, model64.log_weights(theta.astype(np.float64), x, eps), rtol=1e-4
    )


def test_same_seed_same_numbers():
    a = _binary_setup(seed=3)
    b = _binary_setup(seed=3)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0].log_weights(*a[1:]), b[0].log_weights(*b[1:]))


def test_init_sets_output_bias_to_logit_of_clipped_data_mean():
    model = iw.VAE(x_dim=3, z_dim=1, hidden=(2,))
    x = np.array([[1, 0, 0], [1, 0, 1], [1, 0, 1], [1, 0, 0]], dtype=float)
    theta = model.init(seed=0, x=x)
    bias = model.layout.get(theta, "decoder.1.b")
    np.testing.assert_allclose(sp.expit(bias), [1 - 1e-3, 1e-3, 0.5], rtol=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sampling_from_the_model(likelihood, assert_normal_sample):
    """z ~ N(0, I) and x | z ~ p(x|z): checked on the draws' mean and spread, within 5 standard
    errors, so constant (e.g. all-zero) samples fail."""
    n = 20000
    model = iw.VAE(x_dim=6, z_dim=2, hidden=(5,), likelihood=likelihood)
    theta = model.init(seed=0)
    theta += np.random.default_rng(1).normal(scale=0.5, size=theta.shape)  # a non-trivial decoder
    x, z = model.sample(theta, np.random.default_rng(0), n)
    assert x.shape == (n, 6) and z.shape == (n, 2)
    assert_normal_sample(z, mean=0.0, std=1.0)
    out = model.decode(theta, z)  # (n, 6): logits or means
    if likelihood == "bernoulli":
        assert set(np.unique(x)) == {0.0, 1.0}
        p = sp.expit(out)
        # given the z drawn, x − p(z) has mean 0 and variance p(1 − p)
        residual, variance = x - p, p * (1 - p)
        assert np.all(np.abs(residual.mean(0)) < 5 * np.sqrt(variance.mean(0) / n))
        excess = residual**2 - variance
        assert np.all(np.abs(excess.mean(0)) < 5 * excess.std(0) / np.sqrt(n))
    else:
        std = np.exp(model.layout.get(theta, "decoder.log_std"))
        assert_normal_sample(x - out, mean=0.0, std=std)


def test_log_weights_given_matches_the_encoder_path_and_checks_shapes():
    model, theta, x, eps = _binary_setup()
    mean, log_std = model.encode(theta, x)
    np.testing.assert_array_equal(
        model.log_weights_given(theta, x, mean, log_std, eps), model.log_weights(theta, x, eps)
    )
    with pytest.raises(ValueError, match="log_std: expected shape"):
        model.log_weights_given(theta, x, mean, log_std[:1], eps)


@pytest.mark.slow
def test_expected_bound_std_matches_replicates():
    from iwae_np import evaluate

    model, theta, x, _ = _binary_setup()
    mean, std = evaluate.expected_bound(
        model, theta, x, "iwae", 4, replicates=3000, return_std=True
    )
    direct = np.stack(
        [
            iw.iwae_bound(
                model.log_weights(theta, x, model.draw_eps(np.random.default_rng(s), 4, 3))
            )
            for s in range(3000)
        ]
    )
    np.testing.assert_allclose(
        mean, direct.mean(0), atol=4 * direct.std(0).max() / np.sqrt(3000) * 1.5
    )
    np.testing.assert_allclose(std, direct.std(0), rtol=0.08)
