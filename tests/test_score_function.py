"""iwae_np.score_function: the score-function (REINFORCE) and reparameterized estimators of
∇_λ E_q[f(z)], checked against autograd's derivatives of the density and of f, and for
unbiasedness against expectations known in closed form."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import iwae_np as iw
from iwae_np import score_function as sf

MEAN = np.array([[0.4, -1.0, 0.0], [1.5, 0.2, -0.3]])  # (n, d) = (2, 3)
LOG_STD = np.array([[-0.3, 0.5, 0.0], [0.1, -1.0, 0.2]])


def draws(k, seed=0):
    eps = np.random.default_rng(seed).standard_normal((k,) + MEAN.shape)
    return eps, MEAN + np.exp(LOG_STD) * eps


def test_gaussian_score_is_autograds_derivative_of_the_log_density():
    _, z = draws(4)
    d_mean, d_log_std = sf.gaussian_score(z, MEAN, LOG_STD)
    # autograd's gradient of log N(z; μ, σ²) in its mean and log σ arguments (argnums 1 and 2)
    by_autograd_mean = autograd.elementwise_grad(iw.normal_logpdf, 1)
    by_autograd_log_std = autograd.elementwise_grad(iw.normal_logpdf, 2)
    for s in range(4):
        for i in range(2):
            np.testing.assert_allclose(
                d_mean[s, i], by_autograd_mean(z[s, i], MEAN[i], LOG_STD[i]), rtol=1e-12
            )
            np.testing.assert_allclose(
                d_log_std[s, i],
                by_autograd_log_std(z[s, i], MEAN[i], LOG_STD[i]),
                rtol=1e-12,
                atol=1e-14,
            )


def test_gaussian_score_has_mean_zero():
    _, z = draws(200_000)
    for score in sf.gaussian_score(z, MEAN, LOG_STD):
        se = score.std(axis=0) / np.sqrt(len(z))
        assert np.all(np.abs(score.mean(axis=0)) < 5 * se)


def test_score_function_gradient_is_f_minus_baseline_times_the_score():
    _, z = draws(5)
    f = np.sum(np.sin(z), axis=-1)
    baseline = np.random.default_rng(1).normal(size=(5, 2))
    d_mean, d_log_std = sf.gaussian_score(z, MEAN, LOG_STD)
    g_mean, g_log_std = sf.score_function_gradient(f, z, MEAN, LOG_STD, baseline)
    np.testing.assert_allclose(g_mean, (f - baseline)[..., None] * d_mean, rtol=1e-14)
    np.testing.assert_allclose(g_log_std, (f - baseline)[..., None] * d_log_std, rtol=1e-14)


@pytest.mark.parametrize("baseline", [0.0, 3.0, "exact mean"])
def test_both_estimators_are_unbiased_for_a_sum_of_squares(baseline):
    """E_q[Σ z²] = Σ (μ² + σ²): its gradient is 2μ for μ and 2σ² for log σ."""
    eps, z = draws(200_000, seed=2)
    f = np.sum(z**2, axis=-1)
    if baseline == "exact mean":
        baseline = np.sum(MEAN**2 + np.exp(2 * LOG_STD), axis=-1)
    exact = (2 * MEAN, 2 * np.exp(2 * LOG_STD))
    estimators = {
        "score": sf.score_function_gradient(f, z, MEAN, LOG_STD, baseline),
        "reparam": sf.reparameterized_gradient(2 * z, eps, LOG_STD),
    }
    for name, estimate in estimators.items():
        for g, truth in zip(estimate, exact, strict=True):
            se = g.std(axis=0) / np.sqrt(len(g))
            assert np.all(np.abs(g.mean(axis=0) - truth) < 5 * se), name


def test_reparameterized_gradient_is_autograds_gradient_through_z():
    """Per draw, ∇_λ f(μ + σ ε) by autograd equals the estimator's (∇_z f, ∇_z f σ ε)."""
    eps, z = draws(3, seed=4)

    def f(z):
        return anp.sum(anp.sin(z) * z, axis=-1)

    grad_f = autograd.elementwise_grad(f)(z)
    g_mean, g_log_std = sf.reparameterized_gradient(grad_f, eps, LOG_STD)
    for s in range(3):

        def total(mean, log_std, s=s):
            return anp.sum(f(mean + anp.exp(log_std) * eps[s]))

        np.testing.assert_allclose(g_mean[s], autograd.grad(total, 0)(MEAN, LOG_STD), rtol=1e-12)
        np.testing.assert_allclose(
            g_log_std[s], autograd.grad(total, 1)(MEAN, LOG_STD), rtol=1e-12, atol=1e-15
        )


def test_running_mean_baseline_uses_only_earlier_draws():
    f = np.random.default_rng(5).normal(size=(6, 2))
    baseline = sf.running_mean_baseline(f)
    expected = np.array([np.zeros(2)] + [f[:s].mean(axis=0) for s in range(1, 6)])
    np.testing.assert_allclose(baseline, expected, rtol=1e-14)
    changed = f.copy()
    changed[3] += 100.0  # draw 3's value must not move its own baseline, only later ones
    moved = sf.running_mean_baseline(changed) != baseline
    assert not moved[:4].any() and moved[4:].all()
    assert sf.running_mean_baseline(np.array([2.0])).tolist() == [0.0]


def test_running_mean_baseline_near_the_largest_float():
    f = np.full(4, 1.7e308)
    np.testing.assert_allclose(sf.running_mean_baseline(f), [0.0, 1.7e308, 1.7e308, 1.7e308])


def test_float32_stays_float32():
    eps, z = (a.astype(np.float32) for a in draws(3))
    mean, log_std = MEAN.astype(np.float32), LOG_STD.astype(np.float32)
    f = np.sum(z, axis=-1)
    for part in sf.score_function_gradient(f, z, mean, log_std, np.float32(1)):
        assert part.dtype == np.float32
    for part in sf.reparameterized_gradient(z, eps, log_std):
        assert part.dtype == np.float32
    assert sf.running_mean_baseline(f).dtype == np.float32


def test_bad_input_is_refused_by_name():
    eps, z = draws(4)
    f = np.sum(z, axis=-1)
    with pytest.raises(ValueError, match="^f_values: expected z's shape without its last axis"):
        sf.score_function_gradient(f[:, :1], z, MEAN, LOG_STD)
    with pytest.raises(ValueError, match="^baseline: expected a shape that broadcasts"):
        sf.score_function_gradient(f, z, MEAN, LOG_STD, np.zeros(3))
    with pytest.raises(ValueError, match="^log_std: expected values >= "):
        sf.gaussian_score(z, MEAN, np.full(MEAN.shape, -400.0))
    with pytest.raises(ValueError, match="^z: expected an array"):
        sf.gaussian_score(1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="^f_values: expected shape \\(k, ...\\)"):
        sf.running_mean_baseline(np.zeros(0))
    with pytest.raises(ValueError, match="^eps: expected the shape of grad_f"):
        sf.reparameterized_gradient(z, eps[:2], LOG_STD)
    with pytest.raises(ValueError, match="^grad_f, eps, log_std: expected values for which"):
        sf.reparameterized_gradient(z, eps, np.full(MEAN.shape, 800.0))  # σ overflows
    with pytest.raises(ValueError, match="^z: expected no NaN"):
        sf.gaussian_score(np.full(3, np.nan), 0.0, 0.0)
