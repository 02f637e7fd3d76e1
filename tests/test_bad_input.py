"""Every public entry point rejects bad input with a ValueError naming the argument, what was
expected and what was given, instead of returning NaN."""

import numpy as np
import pytest

import iwae_np as iw

MODEL = iw.VAE(x_dim=4, z_dim=2, hidden=(3,))
THETA = MODEL.init(0)
X = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)
EPS = MODEL.draw_eps(np.random.default_rng(0), 3, 2)


def _raises(argument, call):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{argument}:"), message
    assert "expected" in message and "got" in message, message
    return message


def test_non_finite_values():
    _raises("a", lambda: iw.logsumexp(np.array([0.0, np.nan])))
    _raises("a", lambda: iw.logsumexp(np.array([0.0, np.inf])))
    _raises("a", lambda: iw.log_mean_exp(np.array([np.nan])))
    for f in (iw.softplus, iw.log_sigmoid, iw.sigmoid):
        _raises("x", lambda: f(np.array([np.nan])))
    _raises("x", lambda: iw.normal_logpdf(np.array([np.inf]), np.zeros(1), np.zeros(1)))
    _raises("log_std", lambda: iw.normal_logpdf(np.zeros(1), np.zeros(1), np.array([np.nan])))
    _raises("z", lambda: iw.std_normal_logpdf(np.array([np.nan])))
    _raises("logits", lambda: iw.bernoulli_logpmf(np.ones(2), np.array([0.0, np.inf])))
    _raises("log_w", lambda: iw.iwae_bound(np.array([[np.nan]])))
    _raises("log_w", lambda: iw.elbo(np.array([[np.inf]])))
    x_bad = X.copy(); x_bad[1, 2] = np.nan
    assert "index (1, 2)" in _raises("x", lambda: MODEL.log_weights(THETA, x_bad, EPS))
    theta_bad = THETA.copy(); theta_bad[0] = np.inf
    _raises("theta", lambda: MODEL.log_weights(theta_bad, X, EPS))
    eps_bad = EPS.copy(); eps_bad[0, 0, 0] = np.nan
    _raises("eps", lambda: MODEL.log_weights(THETA, X, eps_bad))


def test_neg_inf_log_weights_are_accepted():
    log_w = np.array([[-np.inf, 0.0], [-np.inf, -1.0]])
    assert iw.iwae_bound(log_w)[0] == -np.inf and np.isfinite(iw.iwae_bound(log_w)[1])


def test_bernoulli_data_outside_0_1():
    message = _raises("x", lambda: iw.bernoulli_logpmf(np.array([0.0, 0.5]), np.zeros(2)))
    assert "{0, 1}" in message and "0.5" in message
    _raises("x", lambda: MODEL.log_weights(THETA, X * 2, EPS))
    _raises("x", lambda: MODEL.init(0, x=X - 1))


def test_shape_mismatches():
    _raises("x", lambda: MODEL.log_weights(THETA, X[:, :3], EPS))  # wrong x_dim
    _raises("x", lambda: MODEL.log_weights(THETA, X[0], EPS))  # 1-D x
    _raises("eps", lambda: MODEL.log_weights(THETA, X, EPS[:, :1]))  # n mismatch
    _raises("eps", lambda: MODEL.log_weights(THETA, X, EPS[..., :1]))  # z_dim mismatch
    _raises("eps", lambda: MODEL.log_weights(THETA, X, EPS[0]))  # missing the k axis
    _raises("theta", lambda: MODEL.log_weights(THETA[:-1], X, EPS))
    _raises("theta", lambda: MODEL.log_weights(THETA.astype(np.float32), X, EPS))  # dtype
    _raises("x, mean, log_std", lambda: iw.normal_logpdf(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)))
    _raises("x, logits", lambda: iw.bernoulli_logpmf(np.zeros((2, 3)), np.zeros((2, 4))))
    _raises("log_w", lambda: iw.iwae_bound(np.float64(1.0)))


def test_k_below_one():
    _raises("eps", lambda: MODEL.log_weights(THETA, X, EPS[:0]))
    _raises("log_w", lambda: iw.iwae_bound(np.zeros((0, 3))))
    _raises("log_w", lambda: iw.elbo(np.zeros((0, 3))))
    _raises("k", lambda: MODEL.draw_eps(np.random.default_rng(0), 0, 2))
    _raises("k", lambda: iw.sample_normal(np.random.default_rng(0), np.zeros((1, 2)), np.zeros((1, 2)), k=0))
    _raises("a", lambda: iw.logsumexp(np.zeros(0)))


def test_bad_configuration_and_rng():
    _raises("x_dim", lambda: iw.VAE(0, 2))
    _raises("z_dim", lambda: iw.VAE(3, 2.5))
    _raises("hidden", lambda: iw.VAE(3, 2, hidden=(4, -1)))
    _raises("likelihood", lambda: iw.VAE(3, 2, likelihood="poisson"))
    _raises("activation", lambda: iw.VAE(3, 2, activation="sigmoid"))
    _raises("dtype", lambda: iw.VAE(3, 2, dtype="float16"))
    _raises("rng", lambda: MODEL.draw_eps(0, 1, 2))
    _raises("rng", lambda: MODEL.sample_prior(np.random.RandomState(0), 2))


def test_inference_and_evaluation_entry_points():
    from iwae_np import data as datasets
    from iwae_np import evaluate, vi

    _raises("objective", lambda: vi.fit_local(MODEL, THETA, X, objective="kl"))
    _raises("k", lambda: vi.fit_local(MODEL, THETA, X, k=0))
    _raises("steps", lambda: vi.fit_local(MODEL, THETA, X, steps=-1))
    _raises("lr", lambda: vi.fit_local(MODEL, THETA, X, lr=0.0))
    _raises("init", lambda: vi.fit_local(MODEL, THETA, X, init=(np.zeros((3, 2)), np.zeros((3, 2)))))
    _raises("init", lambda: vi.fit_local(MODEL, THETA, X, init=np.zeros((2, 4))))
    _raises("init mean", lambda: vi.fit_local(MODEL, THETA, X, init=(np.full((2, 2), np.nan), np.zeros((2, 2)))))
    _raises("x", lambda: vi.fit_local(MODEL, THETA, X[:, :2]))
    _raises("k", lambda: evaluate.log_marginal(MODEL, THETA, X, k=0))
    _raises("max_rows", lambda: evaluate.log_marginal(MODEL, THETA, X, max_rows=0))
    _raises("lam", lambda: evaluate.log_marginal(MODEL, THETA, X, k=3, lam=(np.zeros((2, 3)), np.zeros((2, 3)))))
    _raises("objective", lambda: evaluate.expected_bound(MODEL, THETA, X, objective="elbow"))
    _raises("replicates", lambda: evaluate.expected_bound(MODEL, THETA, X, replicates=0))
    _raises("model", lambda: evaluate.log_marginal_quadrature(iw.VAE(4, 3, hidden=()), np.zeros(iw.VAE(4, 3, hidden=()).layout.size), X))
    _raises("theta", lambda: evaluate.active_units(MODEL, THETA[:3], X))
    _raises("n", lambda: datasets.bars(n=1))
    _raises("p", lambda: datasets.bars(p=1.5))
    _raises("noise_std", lambda: datasets.linear_gaussian(noise_std=0.0))
    _raises("test_fraction", lambda: datasets.train_test_split(X, 1.0))
    _raises("dataset", lambda: datasets.load("cifar"))
    _raises("mnist_path", lambda: datasets.load("mnist"))
    _raises("binarize", lambda: datasets.digits(binarize="otsu"))
