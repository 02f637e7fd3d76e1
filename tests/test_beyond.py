"""Beyond the paper: gradient estimators (STL, DReG, PIWAE), gradient SNR, the bound family."""

import numpy as np
import pytest
import scipy.special

import iwae_np as iw
from iwae_np import estimators


@pytest.fixture(scope="module")
def small():
    model = iw.VAE(6, 2, hidden=(8,))
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6)) < 0.5) * 1.0
    theta = model.init(1, x=x)
    theta[model.layout.slice("encoder.1.b")] += 0.3  # σ ≠ 1, so q's score term matters
    return model, theta, x


def test_iwae_estimator_is_the_gradient_of_the_bound(small):
    model, theta, x = small
    eps = model.draw_eps(np.random.default_rng(1), 5, 4)
    f = lambda t: np.mean(iw.iwae_bound(model.log_weights(t, x, eps)))
    report = iw.gradcheck(f, theta, grad=lambda t: estimators.gradient(model, t, x, eps, "iwae"))
    assert report.passed, report


def test_decoder_gradients_are_identical_across_estimators(small):
    model, theta, x = small
    eps = model.draw_eps(np.random.default_rng(2), 6, 4)
    decoder = ~model.layout.mask("encoder.")
    reference = estimators.gradient(model, theta, x, eps, "iwae")[decoder]
    for estimator in ("stl", "dreg", "piwae"):
        np.testing.assert_array_equal(
            estimators.gradient(model, theta, x, eps, estimator, m=2)[decoder], reference
        )


def _paired_encoder_differences(small, estimator, k=5, draws=1000):
    model, theta, x = small
    rng = np.random.default_rng(3)
    encoder = model.layout.mask("encoder.")
    diffs = []
    for _ in range(draws):
        eps = model.draw_eps(rng, k, 4)
        diffs.append(
            (
                estimators.gradient(model, theta, x, eps, estimator)
                - estimators.gradient(model, theta, x, eps, "iwae")
            )[encoder]
        )
    diffs = np.array(diffs)
    std = diffs.std(0, ddof=1)
    varies = std > 0  # coordinates where the two estimators ever differ
    assert varies.sum() > 20
    return diffs.mean(0)[varies] / (std[varies] / np.sqrt(draws))  # z-scores of the mean difference


@pytest.mark.slow
def test_dreg_encoder_gradient_is_unbiased(small):
    z = _paired_encoder_differences(small, "dreg")
    # ~60 encoder parameters: under "no bias", |z| > 4.5 anywhere has probability < 1e-3
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))


@pytest.mark.slow
def test_stl_is_biased_for_k_above_one(small):
    z = _paired_encoder_differences(small, "stl")
    assert np.max(np.abs(z)) > 10


@pytest.mark.slow
def test_stl_equals_iwae_in_expectation_at_k_1(small):
    z = _paired_encoder_differences(small, "stl", k=1)
    assert np.max(np.abs(z)) < 4.5


@pytest.mark.slow
def test_snr_trends():
    """Rainforth et al.: IWAE's encoder SNR falls with k, DReG's does not, the decoder's rises."""
    data = iw.data.bars(n=300, size=4, seed=0)
    model = iw.VAE(data.x_dim, 2, hidden=(10,))
    theta = iw.train.train(
        model, model.init(0, x=data.x_train), data, k=5, epochs=20, lr=3e-3, progress=False
    ).theta
    x = data.x_test[:8]
    snrs = {
        (e, k): estimators.snr(model, theta, x, e, k, draws=300, seed=1)
        for e in ("iwae", "dreg")
        for k in (1, 64)
    }
    median = {
        (e, k, part): np.median(snrs[e, k][part])
        for (e, k) in snrs
        for part in ("encoder", "decoder")
    }
    iwae_slope = np.log(median["iwae", 64, "encoder"] / median["iwae", 1, "encoder"]) / np.log(64)
    decoder_slope = np.log(median["iwae", 64, "decoder"] / median["iwae", 1, "decoder"]) / np.log(
        64
    )
    assert -0.8 < iwae_slope < -0.2  # about −1/2
    assert 0.3 < decoder_slope < 0.8  # about +1/2
    assert median["dreg", 64, "encoder"] > median["dreg", 1, "encoder"]  # does not fall


@pytest.fixture
def log_w():
    return np.random.default_rng(4).normal(scale=3, size=(12, 5))


def test_vr_bound_limits_and_ordering(log_w):
    np.testing.assert_allclose(iw.vr_bound(log_w, 0.0), iw.iwae_bound(log_w), rtol=1e-14)
    np.testing.assert_allclose(iw.vr_bound(log_w, 1.0), iw.elbo(log_w), rtol=1e-14)
    # continuous through the switch to the expansion, and close to the ELBO near α = 1
    for a in (1 - 1e-3, 1 - 1e-6, 1 + 1e-6):
        np.testing.assert_allclose(
            iw.vr_bound(log_w, a - 1e-9), iw.vr_bound(log_w, a + 1e-9), atol=1e-7
        )
    np.testing.assert_allclose(iw.vr_bound(log_w, 1 - 1e-8), iw.elbo(log_w), atol=1e-6)
    # exact at α = 0.5 against a direct high-precision formula
    exact = 2 * (scipy.special.logsumexp(0.5 * log_w, axis=0) - np.log(12))
    np.testing.assert_allclose(iw.vr_bound(log_w, 0.5), exact, rtol=1e-12)
    # L_α decreases with α for the same samples: IWAE ≥ VR_α ≥ ELBO for α in [0, 1]
    values = [iw.vr_bound(log_w, a) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(np.all(a >= b - 1e-12) for a, b in zip(values[:-1], values[1:], strict=True))


def test_miwae_and_ciwae_limits_and_orderings(log_w):
    np.testing.assert_allclose(iw.miwae_bound(log_w, 1), iw.iwae_bound(log_w), rtol=1e-14)
    np.testing.assert_allclose(iw.miwae_bound(log_w, 12), iw.elbo(log_w), rtol=1e-14)
    for m in (2, 3, 4, 6):  # for every sample: ELBO ≤ MIWAE(M, K) ≤ IWAE_MK (Jensen)
        assert np.all(iw.elbo(log_w) <= iw.miwae_bound(log_w, m) + 1e-12)
        assert np.all(iw.miwae_bound(log_w, m) <= iw.iwae_bound(log_w) + 1e-12)
    # fewer, larger groups are tighter: each L_6 ≥ the mean of its two nested L_3 (Jensen)
    assert np.all(iw.miwae_bound(log_w, 2) >= iw.miwae_bound(log_w, 4) - 1e-12)
    assert np.any(iw.miwae_bound(log_w, 2) > iw.miwae_bound(log_w, 4) + 1e-3)
    np.testing.assert_allclose(iw.ciwae_bound(log_w, 1.0), iw.elbo(log_w), rtol=1e-14)
    np.testing.assert_allclose(iw.ciwae_bound(log_w, 0.0), iw.iwae_bound(log_w), rtol=1e-14)
    np.testing.assert_allclose(
        iw.ciwae_bound(log_w, 0.3), 0.3 * iw.elbo(log_w) + 0.7 * iw.iwae_bound(log_w), rtol=1e-14
    )
    with pytest.raises(ValueError, match="^m: expected"):
        iw.miwae_bound(log_w, 5)
    with pytest.raises(ValueError, match="^beta: expected"):
        iw.ciwae_bound(log_w, 1.5)


def test_bound_family_gradients(log_w):
    f_vr = lambda lw: np.sum(iw.vr_bound(lw, 0.4))
    assert iw.gradcheck(f_vr, log_w[:, :2]).passed
    assert iw.gradcheck(lambda lw: np.sum(iw.miwae_bound(lw, 3)), log_w[:, :2]).passed


# ------------------------------------------------------------------ two stochastic layers


def test_two_layer_log_weights_equal_their_definition():
    import scipy.stats as st

    model = iw.TwoLayerVAE(6, 3, 2, hidden1=(5,), hidden2=(4,))
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6)) < 0.5) * 1.0
    theta = model.init(0, x=x)
    theta += rng.normal(scale=0.1, size=theta.shape)
    eps = model.draw_eps(rng, 5, 4)
    assert eps.shape == (5, 4, 5)
    # recompute every term from the networks, with scipy's densities
    p = model.layout
    m1, s1 = model.encode(theta, x)
    h1 = m1 + np.exp(s1) * eps[..., :3]
    q2 = model.encoder_h2(theta, p, h1)
    h2 = q2[..., :2] + np.exp(q2[..., 2:]) * eps[..., 3:]
    p1 = model.decoder_h1(theta, p, h2)
    logits = model.decode(theta, h1)
    expected = (
        st.bernoulli.logpmf(x, scipy.special.expit(logits)).sum(-1)
        + st.norm.logpdf(h1, p1[..., :3], np.exp(p1[..., 3:])).sum(-1)
        + st.norm.logpdf(h2).sum(-1)
        - st.norm.logpdf(h1, m1, np.exp(s1)).sum(-1)
        - st.norm.logpdf(h2, q2[..., :2], np.exp(q2[..., 2:])).sum(-1)
    )
    np.testing.assert_allclose(model.log_weights(theta, x, eps), expected, rtol=1e-12)
    f = lambda t: np.mean(iw.iwae_bound(model.log_weights(t, x, eps)))
    assert iw.gradcheck(f, theta).passed


def test_two_layer_model_trains_evaluates_and_checkpoints(tmp_path):
    data = iw.data.bars(n=200, size=4, seed=0)
    model = iw.TwoLayerVAE(data.x_dim, 4, 2, hidden1=(16,), hidden2=(8,))
    result = iw.train.train(
        model,
        model.init(0, x=data.x_train),
        data,
        k=5,
        epochs=8,
        lr=3e-3,
        checkpoint=tmp_path / "two.npz",
        progress=False,
    )
    assert result.history[-1]["test_bound"] > result.history[0]["test_bound"]
    log_px = iw.evaluate.log_marginal(model, result.theta, data.x_test, k=500)
    elbo = iw.evaluate.expected_bound(model, result.theta, data.x_test, "elbo", 1, replicates=50)
    assert np.all(np.isfinite(log_px)) and log_px.mean() > elbo.mean()
    loaded, theta, _ = iw.checkpoint.load_model(tmp_path / "two.npz")
    assert isinstance(loaded, iw.TwoLayerVAE) and loaded.config() == model.config()
    np.testing.assert_array_equal(theta, result.theta)
    x, z = model.sample(result.theta, np.random.default_rng(0), 3)
    h1, h2 = model.split_layers(z)  # the full latent: h1 then h2
    assert x.shape == (3, 16) and h1.shape == (3, 4) and h2.shape == (3, 2)


def test_semi_amortized_gradient_flows_through_the_steps():
    import autograd.numpy as anp

    model = iw.VAE(6, 2, hidden=(5,))
    rng = np.random.default_rng(0)
    x = (rng.random((3, 6)) < 0.5) * 1.0
    theta = model.init(1, x=x)
    eps = rng.standard_normal((4, 2, 3, 2))
    f = lambda t: anp.mean(iw.semi_amortized.semi_amortized_elbo(model, t, x, eps, lr=0.1))
    assert iw.gradcheck(f, theta).passed  # second-order autograd through 3 refinement steps
    # without the steps it is the ordinary ELBO
    no_steps = iw.semi_amortized.semi_amortized_elbo(model, theta, x, eps[-1:], lr=0.1)
    np.testing.assert_allclose(no_steps, iw.elbo(model.log_weights(theta, x, eps[-1])), rtol=1e-12)
    # SVI: from the prior, and λ_K constant for the model, so the encoder gets no gradient
    import autograd

    svi = lambda t: anp.mean(
        iw.semi_amortized.semi_amortized_elbo(model, t, x, eps, 0.1, False, False)
    )
    g = autograd.grad(svi)(theta)
    assert np.all(g[model.layout.mask("encoder.")] == 0) and np.any(g != 0)


@pytest.mark.slow
def test_semi_amortized_comparison_ordering():
    """Kim et al.: with refinement, SA-VAE's log p(x) is at least the VAE's, and above SVI's."""
    data = iw.data.bars(n=500, seed=0)
    rows = {r["model"]: r for r in iw.app.experiments.semi_amortized_comparison(data, epochs=30)}
    assert rows["SA-VAE"]["refined_elbo"] > rows["SA-VAE"]["encoder_elbo"]  # refinement helps SA
    assert rows["SA-VAE"]["log_px"] > rows["SVI"]["log_px"]
    assert rows["VAE"]["log_px"] > rows["SVI"]["log_px"]


def test_piwae_encoder_gradient_is_the_miwae_gradient(small):
    import autograd
    import autograd.numpy as anp

    model, theta, x = small
    eps = model.draw_eps(np.random.default_rng(5), 6, 4)
    encoder = model.layout.mask("encoder.")
    miwae = autograd.grad(lambda t: anp.mean(iw.miwae_bound(model.log_weights(t, x, eps), 3)))(
        theta
    )
    np.testing.assert_allclose(
        estimators.gradient(model, theta, x, eps, "piwae", m=3)[encoder], miwae[encoder], rtol=1e-12
    )


@pytest.mark.slow
def test_gaps_of_a_trained_model_are_positive():
    row = iw.app.experiments.trained_model_gaps(iw.data.bars(n=400, seed=0), epochs=20, points=30)
    assert row["approximation_gap"] > 0 and row["amortization_gap"] > 0
    assert row["log_px"] > row["local_elbo"] > row["encoder_elbo"]
