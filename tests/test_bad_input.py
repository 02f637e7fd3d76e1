"""Every public entry point rejects bad input with a ValueError naming the argument, what was
expected and what was given, instead of returning NaN."""

import numpy as np
import pytest

import iwae_np as iw


@pytest.fixture
def setup():
    """(model, theta, x (2, 4), eps (3, 2, 2)): valid inputs, made afresh for each test."""
    model = iw.VAE(x_dim=4, z_dim=2, hidden=(3,))
    x = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)
    return model, model.init(0), x, model.draw_eps(np.random.default_rng(0), 3, 2)


def _raises(argument, call):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{argument}:"), message
    assert "expected" in message and "got" in message, message
    return message


def test_non_finite_values(setup):
    model, theta, x, eps = setup
    _raises("a", lambda: iw.logsumexp(np.array([0.0, np.nan])))
    _raises("a", lambda: iw.logsumexp(np.array([0.0, np.inf])))
    _raises("a", lambda: iw.log_mean_exp(np.array([np.nan])))
    for f in (iw.softplus, iw.log_sigmoid, iw.sigmoid):
        _raises("x", lambda f=f: f(np.array([np.nan])))
    _raises("x", lambda: iw.normal_logpdf(np.array([np.inf]), np.zeros(1), np.zeros(1)))
    _raises("log_std", lambda: iw.normal_logpdf(np.zeros(1), np.zeros(1), np.array([np.nan])))
    _raises("z", lambda: iw.std_normal_logpdf(np.array([np.nan])))
    _raises("logits", lambda: iw.bernoulli_logpmf(np.ones(2), np.array([0.0, np.inf])))
    _raises("log_w", lambda: iw.iwae_bound(np.array([[np.nan]])))
    _raises("log_w", lambda: iw.elbo(np.array([[np.inf]])))
    x_bad = x.copy()
    x_bad[1, 2] = np.nan
    assert "index (1, 2)" in _raises("x", lambda: model.log_weights(theta, x_bad, eps))
    theta_bad = theta.copy()
    theta_bad[0] = np.inf
    _raises("theta", lambda: model.log_weights(theta_bad, x, eps))
    eps_bad = eps.copy()
    eps_bad[0, 0, 0] = np.nan
    _raises("eps", lambda: model.log_weights(theta, x, eps_bad))


def test_neg_inf_log_weights_are_accepted():
    log_w = np.array([[-np.inf, 0.0], [-np.inf, -1.0]])
    assert iw.iwae_bound(log_w)[0] == -np.inf and np.isfinite(iw.iwae_bound(log_w)[1])


def test_bernoulli_data_outside_0_1(setup):
    model, theta, x, eps = setup
    message = _raises("x", lambda: iw.bernoulli_logpmf(np.array([0.0, 0.5]), np.zeros(2)))
    assert "{0, 1}" in message and "0.5" in message
    _raises("x", lambda: model.log_weights(theta, x * 2, eps))
    _raises("x", lambda: model.init(0, x=x - 1))


def test_shape_mismatches(setup):
    model, theta, x, eps = setup
    _raises("x", lambda: model.log_weights(theta, x[:, :3], eps))  # wrong x_dim
    _raises("x", lambda: model.log_weights(theta, x[0], eps))  # 1-D x
    _raises("eps", lambda: model.log_weights(theta, x, eps[:, :1]))  # n mismatch
    _raises("eps", lambda: model.log_weights(theta, x, eps[..., :1]))  # z_dim mismatch
    _raises("eps", lambda: model.log_weights(theta, x, eps[0]))  # missing the k axis
    _raises("theta", lambda: model.log_weights(theta[:-1], x, eps))
    _raises("theta", lambda: model.log_weights(theta.astype(np.float32), x, eps))  # dtype
    _raises(
        "x, mean, log_std",
        lambda: iw.normal_logpdf(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)),
    )
    _raises("x, logits", lambda: iw.bernoulli_logpmf(np.zeros((2, 3)), np.zeros((2, 4))))
    _raises("log_w", lambda: iw.iwae_bound(np.float64(1.0)))


def test_k_below_one(setup):
    model, theta, x, eps = setup
    _raises("eps", lambda: model.log_weights(theta, x, eps[:0]))
    _raises("log_w", lambda: iw.iwae_bound(np.zeros((0, 3))))
    _raises("log_w", lambda: iw.elbo(np.zeros((0, 3))))
    _raises("k", lambda: model.draw_eps(np.random.default_rng(0), 0, 2))
    _raises(
        "k",
        lambda: iw.sample_normal(np.random.default_rng(0), np.zeros((1, 2)), np.zeros((1, 2)), k=0),
    )
    _raises("a", lambda: iw.logsumexp(np.zeros(0)))


def test_bad_configuration_and_rng(setup):
    model, theta, x, eps = setup
    _raises("x_dim", lambda: iw.VAE(0, 2))
    _raises("z_dim", lambda: iw.VAE(3, 2.5))
    _raises("hidden", lambda: iw.VAE(3, 2, hidden=(4, -1)))
    _raises("likelihood", lambda: iw.VAE(3, 2, likelihood="poisson"))
    _raises("activation", lambda: iw.VAE(3, 2, activation="sigmoid"))
    _raises("dtype", lambda: iw.VAE(3, 2, dtype="float16"))
    _raises("rng", lambda: model.draw_eps(0, 1, 2))
    _raises("rng", lambda: model.sample_prior(np.random.RandomState(0), 2))


def test_inference_and_evaluation_entry_points(setup):
    model, theta, x, eps = setup
    from iwae_np import data as datasets
    from iwae_np import evaluate, vi

    _raises("objective", lambda: vi.fit_local(model, theta, x, objective="kl"))
    _raises("k", lambda: vi.fit_local(model, theta, x, k=0))
    _raises("steps", lambda: vi.fit_local(model, theta, x, steps=-1))
    _raises("lr", lambda: vi.fit_local(model, theta, x, lr=0.0))
    _raises(
        "init", lambda: vi.fit_local(model, theta, x, init=(np.zeros((3, 2)), np.zeros((3, 2))))
    )
    _raises("init", lambda: vi.fit_local(model, theta, x, init=np.zeros((2, 4))))
    _raises(
        "init mean",
        lambda: vi.fit_local(model, theta, x, init=(np.full((2, 2), np.nan), np.zeros((2, 2)))),
    )
    _raises("x", lambda: vi.fit_local(model, theta, x[:, :2]))
    _raises("k", lambda: evaluate.log_marginal(model, theta, x, k=0))
    _raises("max_rows", lambda: evaluate.log_marginal(model, theta, x, max_rows=0))
    _raises(
        "lam",
        lambda: evaluate.log_marginal(
            model, theta, x, k=3, lam=(np.zeros((2, 3)), np.zeros((2, 3)))
        ),
    )
    _raises("objective", lambda: evaluate.expected_bound(model, theta, x, objective="elbow"))
    _raises("replicates", lambda: evaluate.expected_bound(model, theta, x, replicates=0))
    _raises(
        "model",
        lambda: evaluate.log_marginal_quadrature(
            iw.VAE(4, 3, hidden=()), np.zeros(iw.VAE(4, 3, hidden=()).layout.size), x
        ),
    )
    _raises("theta", lambda: evaluate.active_units(model, theta[:3], x))
    _raises("n", lambda: datasets.bars(n=1))
    _raises("p", lambda: datasets.bars(p=1.5))
    _raises("noise_std", lambda: datasets.linear_gaussian(noise_std=0.0))
    _raises("test_fraction", lambda: datasets.train_test_split(x, 1.0))
    _raises("dataset", lambda: datasets.load("cifar"))
    _raises("mnist_path", lambda: datasets.load("mnist"))
    _raises("binarize", lambda: datasets.digits(binarize="otsu"))
