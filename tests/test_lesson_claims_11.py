"""The claims of lesson 11 (the ELBO as reconstruction − KL; score-function vs reparameterized
gradients), checked against the numbers the lesson prints as ``CLAIM name=value`` lines.

The lesson runs once per session (conftest's ``lesson_claims``, shared with tests/test_lessons.py).
Every check is a sign, an ordering, a ratio band or a z-score band that the text states; none
compares with a value produced by the code under test.
"""

import numpy as np
import pytest

STEM = "11_reconstruction_kl_and_score_function"


def increasing(values):
    return bool(np.all(np.diff(values) > 0))


@pytest.fixture
def c(lesson_claims):
    return lesson_claims(STEM)


@pytest.mark.notebook
def test_11_closed_form_kl_and_the_two_forms_agree(c):
    assert c["kl_quadrature_max_error"] < 1e-8  # "agree ... at the level of quad's tolerance"
    assert c["lg_closed_forms_max_difference"] < 1e-9  # "agree to rounding"
    # both Monte Carlo estimates agree with the exact ELBO at every one of 20 points (chance level)
    assert c["lg_logw_max_abs_z"] < 4 and c["lg_closed_kl_max_abs_z"] < 4
    # trained VAE: "their paired difference is within three standard errors of zero"
    assert abs(c["vae_difference_z"]) < 3
    assert abs(c["vae_elbo_logw"] - c["vae_elbo_closed_kl"]) < 0.1
    assert c["elbo_terms_same"] is True
    # the trainer's test ELBO is from one draw per image: its standard error is √500 ≈ 22 times
    # that of the mean of log w (500 draws of the same spread), and "it lies within two of its
    # standard errors of that mean"
    assert c["vae_one_draw_se_ratio"] == pytest.approx(np.sqrt(500), rel=1e-3)
    assert abs(c["vae_one_draw_z"]) < 2


@pytest.mark.notebook
def test_11_which_estimate_has_the_lower_variance_depends_on_q(c):
    # at initialization R varies less than D, nearly uncorrelated with it; the closed form wins
    assert c["var_rec_vae_init"] < c["var_d_vae_init"]
    assert abs(c["two_cov_vae_init"]) < 0.2 * c["var_d_vae_init"]
    assert c["variance_ratio_vae_init"] < 1 and c["closed_lower_fraction_vae_init"] > 0.5
    # once q is fitted, 2 Cov[R, D] more than cancels Var[D], and log w wins: for the trained
    # VAE at most points ...
    for name in ("vae_trained", "lg_best"):
        assert c[f"two_cov_{name}"] < -c[f"var_d_{name}"]
    assert c["variance_ratio_vae_trained"] > 1 and c["closed_lower_fraction_vae_trained"] < 0.5
    # ... and for the best diagonal q by the largest factor
    others = ("lg_wide", "vae_init", "vae_trained")
    assert c["variance_ratio_lg_best"] > max(c[f"variance_ratio_{name}"] for name in others)
    assert c["closed_lower_fraction_lg_best"] < 0.5
    assert abs(c["variance_ratio_lg_wide"] - 1) < 0.25  # "the two variances close"


@pytest.mark.notebook
def test_11_per_unit_kl_and_what_a_unit_buys(c):
    kl = c["unit_kl_sorted"]
    informative, silent = kl[:5], kl[5:]
    assert c["informative_units"] == 5 and c["informative_are_most_active"] is True
    assert np.all((informative > 0.5) & (informative < 1.0))  # "between half a nat and a nat"
    assert informative.sum() > 0.9 * kl.sum()  # "together nearly all of the total"
    assert np.all(silent < 0.06)  # "a few hundredths of a nat each"
    assert c["active_units"] > 5  # lesson 05's threshold counts some silent units as active
    assert c["unit_kl_sum_equals_total"] is True
    # switching an informative unit off loses about four to six times its KL; the ELBO falls by nats
    assert np.all((c["rec_per_kl_informative"] > 3.5) & (c["rec_per_kl_informative"] < 6.5))
    assert np.all(c["change_elbo_sorted"][:5] < -1)
    # a silent unit: reconstruction by a few hundredths at most, the ELBO by < 0.1 either way
    change_rec, change_elbo = c["change_rec_sorted"][5:], c["change_elbo_sorted"][5:]
    assert np.all(np.abs(change_rec) < 0.05) and np.all(np.abs(change_elbo) < 0.1)
    rises = change_elbo > 0  # "for some of them the ELBO even rises a little, by about their KL"
    assert rises.any()
    assert np.all(
        (change_elbo[rises] > 0.4 * silent[rises]) & (change_elbo[rises] <= silent[rises])
    )


@pytest.mark.notebook
def test_11_tradeoff_curve(c):
    assert c["beta_one_is_best_diagonal_error"] < 1e-10  # q_1 is lesson 02's best diagonal q
    assert c["bfgs_max_difference"] < 1e-5
    np.testing.assert_allclose(c["tradeoff_slopes"], [0.5, 1.0, 2.0], rtol=1e-3)  # slope = β
    elbo_half, elbo_one, elbo_two = c["elbo_at_betas"]
    assert elbo_one > max(elbo_half, elbo_two)
    assert c["curve_kl_decreasing"] is True and c["curve_rec_decreasing"] is True


@pytest.mark.notebook
def test_11_both_gradients_unbiased(c):
    assert c["fd_max_error"] < 1e-6  # the exact gradient, by finite differences
    for name in ("reparameterized", "score_function", "score_function_baseline"):
        assert 0.8 < c[f"{name}_mean_z2"] < 1.2  # z-scores like N(0, 1) draws (760 of them)
        assert c[f"{name}_max_abs_z"] < 5


@pytest.mark.notebook
def test_11_score_function_variance_grows_with_d(c):
    series = {
        key: c[f"ratio_{key}"]
        for key in ("sf_mu", "sf_log_std", "sf_baseline_mu", "sf_baseline_log_std")
    }
    for key, ratios in series.items():
        assert len(ratios) == 5 and np.all(ratios > 1), key  # d = 1, 2, 5, 10, 20
        assert increasing(ratios), key  # "the multiple grows with d"
    # the guides pass through the μ curves' d = 10 points (∝ d² without a baseline, ∝ d with
    # one); "at small d all four curves lie above the guides"
    dims = np.array([1, 2, 5])
    for part in ("mu", "log_std"):
        assert np.all(series[f"sf_{part}"][:3] > series["sf_mu"][3] * (dims / 10) ** 2)
        assert np.all(series[f"sf_baseline_{part}"][:3] > series["sf_baseline_mu"][3] * dims / 10)
    for part in ("mu", "log_std"):
        assert 3 < c[f"growth_sf_{part}"] < 5.5  # about fourfold from d = 10 to 20: ∝ d²
        assert 1.4 < c[f"growth_sf_baseline_{part}"] < 2.8  # about twofold: ∝ d
        # the baseline lowers the variance at every d, by a factor that grows with d
        reduction = series[f"sf_{part}"] / series[f"sf_baseline_{part}"]
        assert np.all(reduction > 1) and increasing(reduction)


@pytest.mark.notebook
def test_11_when_only_the_score_function_works(c):
    assert c["step_fd_error"] < 1e-7 and c["bernoulli_fd_error"] < 1e-7
    assert c["step_exact"] > 0.1  # the true gradient is far from 0 ...
    assert c["step_pathwise_all_zero"] is True  # ... but every pathwise estimate is exactly 0
    assert c["step_autograd_warned"] is True  # "the first printed line is its warning"
    assert abs(c["step_score_z"]) < 4
    assert np.all(np.abs(c["bernoulli_z"]) < 4)
    no_baseline, with_baseline = c["bernoulli_std_over_gradient"]
    assert 4 < no_baseline < 6  # "about five times the gradient"
    assert with_baseline < 0.1  # "a small fraction of the gradient"
