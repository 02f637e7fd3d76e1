"""gaps.amortization_gap_given: ELBO[q*] − ELBO[q_encoder] per point for a q* given, both ELBOs
estimated from the same draws, checked against the closed form on a linear-Gaussian model
(conftest's ``LinearGaussian``: exact posterior, exact ELBO of any diagonal Gaussian)."""

from types import SimpleNamespace

import numpy as np
import pytest

import iwae_np as iw


def encoder_and_best(lg, x, shift=0.3, scale=1.5):
    """An encoder whose q is the exact posterior mean + ``shift`` with σ ``scale`` times the best
    diagonal's, q* = the best diagonal Gaussian itself (mean m, variances 1/diag(Σ⁻¹)), and the
    exact gap ELBO[q*] − ELBO[q_encoder] (the same for every point)."""
    best_log_std = -0.5 * np.log(np.diag(lg.precision))
    theta = lg.theta(best_log_std + np.log(scale), mean_shift=shift)
    q_star = (lg.posterior_mean(x), np.tile(best_log_std, (len(x), 1)))
    exact = lg.exact_elbo(x, best_log_std) - lg.exact_elbo(x, best_log_std + np.log(scale), shift)
    return theta, q_star, exact


def test_matches_the_closed_form(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample_x(40)
    theta, q_star, exact = encoder_and_best(lg, x)
    gap = iw.gaps.amortization_gap_given(lg.model, theta, x, q_star, replicates=4000)
    assert gap.shape == (len(x),)
    assert np.all(exact > 0.1)  # a gap worth measuring
    # the points' estimates are independent, each unbiased for the same exact gap
    standard_error = np.std(gap, ddof=1) / np.sqrt(len(x))
    assert abs(gap.mean() - exact[0]) < 4 * standard_error
    np.testing.assert_allclose(gap, exact, atol=8 * np.std(gap, ddof=1))


def test_common_draws_cancel_noise(linear_gaussian):
    """The same draws for both ELBOs: for an encoder close to q*, the paired estimate varies far
    less than the difference of two estimates from independent draws."""
    lg = linear_gaussian
    x = lg.sample_x(40)
    theta, q_star, exact = encoder_and_best(lg, x, shift=0.05, scale=1.05)
    paired = iw.gaps.amortization_gap_given(lg.model, theta, x, q_star, replicates=100, seed=3)
    given = iw.evaluate.expected_bound(lg.model, theta, x, "elbo", 1, 100, seed=4, lam=q_star)
    encoder = iw.evaluate.expected_bound(lg.model, theta, x, "elbo", 1, 100, seed=5)
    assert np.std(paired - exact) < 0.5 * np.std(given - encoder - exact)


def test_takes_a_fit_and_refuses_a_bad_one(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample_x(10)
    theta, (mean, log_std), _ = encoder_and_best(lg, x)
    as_pair = iw.gaps.amortization_gap_given(lg.model, theta, x, (mean, log_std), replicates=50)
    as_fit = iw.gaps.amortization_gap_given(
        lg.model, theta, x, SimpleNamespace(mean=mean, log_std=log_std), replicates=50
    )
    np.testing.assert_array_equal(as_pair, as_fit)
    with pytest.raises(ValueError, match="fit: expected mean of shape"):
        iw.gaps.amortization_gap_given(lg.model, theta, x, (mean[:3], log_std[:3]))
    with pytest.raises(ValueError, match="fit: expected a pair"):
        iw.gaps.amortization_gap_given(lg.model, theta, x, "q*")
    with pytest.raises(ValueError, match="replicates: expected an integer >= 1"):
        iw.gaps.amortization_gap_given(lg.model, theta, x, (mean, log_std), replicates=0)


def test_amortization_gap_pairs_its_draws_too(linear_gaussian):
    """``amortization_gap`` fits q* itself and then estimates both ELBOs from the same draws: its
    gap is ``amortization_gap_given`` of its own fit, bit for bit, and an unbiased estimate of the
    closed-form gap of the q* it found (the exact ELBO of each q is known on this model)."""
    lg = linear_gaussian
    x = lg.sample_x(12)
    theta, _, _ = encoder_and_best(lg, x, shift=0.2, scale=1.3)
    measured, fit = iw.gaps.amortization_gap(lg.model, theta, x, steps=300, replicates=400)
    given = iw.gaps.amortization_gap_given(lg.model, theta, x, fit, replicates=400)
    np.testing.assert_array_equal(measured["gap"], given)
    np.testing.assert_array_equal(
        measured["gap"], measured["local_elbo"] - measured["encoder_elbo"]
    )
    shift = fit.mean - lg.posterior_mean(x)  # q*'s exact ELBO, per point, from its own λ
    encoder_log_std = np.log(1.3) - 0.5 * np.log(np.diag(lg.precision))
    exact = [
        np.ravel(lg.exact_elbo(x[i : i + 1], fit.log_std[i], shift[i]))[0]
        - np.ravel(lg.exact_elbo(x[i : i + 1], encoder_log_std, 0.2))[0]
        for i in range(len(x))
    ]
    error = measured["gap"] - np.array(exact)  # each point's estimate is unbiased for its gap
    assert abs(error.mean()) < 4 * np.std(error, ddof=1) / np.sqrt(len(x))
