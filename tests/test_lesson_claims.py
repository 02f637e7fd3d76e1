"""The lessons' text makes claims about the numbers their cells print: orderings, ratios, signs,
"about tenfold", "within two standard errors". A lesson prints each number a claim rests on as a
line ``CLAIM name=value``; these tests run the lesson once, read those lines, and check every
claim the text makes, so that a change to the package or to a lesson that makes the text wrong
fails here instead of misleading a student.

Each lesson is executed once per session (conftest's ``executed_lesson``, shared with
tests/test_lessons.py: nbclient, the lesson's folder as working directory). The runs are
marked ``notebook``, so the fast loop leaves them out. Claims about timings (lesson 07, and the
cost of k in lesson 05) are medians of repeated, alternated measurements at one BLAS thread; the
checks ask only for the direction of a ratio, or for a wide band around the value the text
names.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import printed_claims


def decreasing(values):
    return bool(np.all(np.diff(values) < 0))


def test_claims_are_parsed():
    notebook = SimpleNamespace(
        cells=[
            {"outputs": [{"output_type": "stream", "name": "stdout", "text": "x\nCLAIM a=1.5\n"}]},
            {
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "CLAIM b=1,"},
                    {"output_type": "stream", "name": "stdout", "text": "2\nCLAIM c=True\n"},
                ]
            },
        ]
    )
    claims = printed_claims(notebook)
    assert claims["a"] == 1.5 and claims["c"] is True
    np.testing.assert_array_equal(claims["b"], [1.0, 2.0])


# ---------------------------------------------------------------- 01 log-densities


@pytest.mark.notebook
def test_01_logsumexp_fails_at_two_different_shifts(lesson_claims):
    c = lesson_claims("01_log_densities_and_logsumexp")
    # the stable form is at rounding level for every shift ("floats near 1000 are ~1e-13 apart")
    assert c["stable_max_error"] <= np.spacing(1000.0 + c["exact"])
    # positive side: e^{c + 2.41} overflows once c + 2.41 > log(largest float) ≈ 709.78, c ≈ 707.4
    overflow_at = c["log_largest_float"] - c["exact"]
    assert c["naive_finite_to"] <= overflow_at < c["naive_finite_to"] + 0.25
    assert abs(c["naive_finite_to"] - 707.4) < 0.5
    # negative side: every term rounds to 0 below log(smallest subnormal) − log 2, at c ≈ −747
    underflow_at = c["log_smallest_subnormal"] - math.log(2) - 2.0
    assert c["naive_finite_from"] - 0.25 < underflow_at <= c["naive_finite_from"]
    assert abs(c["naive_finite_from"] + 747) < 0.5
    # not one symmetric |c|: the floats reach further towards 0 than towards infinity
    assert -c["naive_finite_from"] > c["naive_finite_to"] + 30
    # the error grows only once the terms are subnormal (below e^{−708.40}, the largest at c + 2)
    assert c["naive_finite_from"] < c["naive_accurate_from"] < -708.40 - 2


# ---------------------------------------------------------------- 04 the IWAE bound


@pytest.mark.notebook
def test_04_variance_finite_for_wide_q_infinite_for_narrow(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["wide_min_eigenvalue"] > 0 and c["wide_box_growth"] < 1.01  # converged integral
    assert c["narrow_min_eigenvalue"] < 0 and c["narrow_box_growth"] > 1e6  # grows without bound
    assert c["wide_relative_variance"] > 0


@pytest.mark.notebook
def test_04_bias_one_over_k_only_with_finite_variance(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    wide, narrow, predicted = c["wide_bias"], c["narrow_bias"], c["wide_predicted_bias"]
    ks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert len(wide) == len(narrow) == len(predicted) == len(ks)
    assert decreasing(wide) and decreasing(narrow)  # "the printed biases shrink at every step"
    assert np.all(wide > 0) and np.all(narrow > 0)  # both below log p(x)
    k100 = ks.index(100)
    assert 5 < wide[k100] / wide[-1] < 20  # "about tenfold from k = 100 to 1000"
    assert narrow[k100] / narrow[-1] < 2  # "less than twofold over that same decade"
    # "meets the delta method's line from about k = 100 on"
    np.testing.assert_allclose(wide[k100:], predicted[k100:], rtol=0.25)
    # spreads: shrink with k for both, by a smaller factor for the narrow q
    assert decreasing(c["wide_spread"]) and decreasing(c["narrow_spread"])
    shrink = {q: c[f"{q}_spread"][0] / c[f"{q}_spread"][-1] for q in ("wide", "narrow")}
    assert shrink["narrow"] < shrink["wide"]


@pytest.mark.notebook
def test_04_effective_sample_size(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["ess_fraction_close"] > 0.85  # "ESS/k near 1"
    assert 0.15 < c["ess_fraction_wide"] < 0.35  # "about a quarter of k"


@pytest.mark.notebook
def test_04_banana_gap_plateaus_for_narrow_q_not_for_wide(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["banana_q_star_std_ratio_max"] < 1  # q* narrower than the posterior everywhere
    star, star_se = c["banana_star_gap"], c["banana_star_se"]  # k = 1, 10, 100, 1000, 10000
    wide, wide_se = c["banana_wide_gap"], c["banana_wide_se"]
    assert star[0] > star[1] > star[2]  # falls quickly at first
    assert star[3] / star[4] < 2  # far from the tenfold of 1/k over the last decade
    assert abs(star[3] - star[4]) < 2 * math.hypot(star_se[3], star_se[4])
    assert wide[0] > 5 * star[0]  # "many times q*'s" ELBO gap
    assert 5 < wide[1] / wide[2] < 20  # "about tenfold from k = 10 to k = 100"
    assert abs(wide[3]) < 2 * wide_se[3] and abs(wide[4]) < 2 * wide_se[4]
    assert wide[4] < star[4]  # the better bound at k = 10,000


# ---------------------------------------------------------------- 05 VAE vs IWAE


@pytest.mark.notebook
def test_05_iwae_beats_vae_on_log_px_not_on_elbo(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    for name in ("iwae5", "iwae50"):  # "each by several paired standard errors"
        assert c[f"{name}_vs_first"] > 3 * c[f"{name}_vs_first_se"]
    # "k = 5 gains far more over the VAE than k = 50 adds on top of k = 5"
    assert c["iwae5_vs_first"] > 2 * (c["iwae50_vs_first"] - c["iwae5_vs_first"])
    # "the IWAEs' ELBO is worse, the more so the larger k"
    assert c["vae_elbo"] > c["iwae5_elbo"] > c["iwae50_elbo"]


@pytest.mark.notebook
def test_05_vae_switches_units_off(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    assert c["vae_active_units"] < min(c["iwae5_active_units"], c["iwae50_active_units"])
    assert c["iwae5_active_units"] == c["iwae50_active_units"] == 10
    vae = c["vae_unit_variances"]  # sorted, largest first
    assert np.sum(vae > 0.3) == 5 and np.sum(vae < 0.05) == 5  # five large, five far smaller
    assert np.any(vae < 0.01)  # "some of them already below the threshold"
    assert np.max(vae[:-1] / vae[1:]) > 10  # the VAE's two groups
    for name in ("iwae5", "iwae50"):  # "the IWAEs' variances fall off gradually"
        variances = c[f"{name}_unit_variances"]
        assert np.max(variances[:-1] / variances[1:]) < 5 and np.all(variances > 0.01)


@pytest.mark.notebook
def test_05_samples_and_reconstructions(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    vae, iwae5, iwae50 = (c[f"{m}_samples_log_p_data"] for m in ("vae", "iwae5", "iwae50"))
    assert min(iwae5, iwae50) > vae  # the IWAEs' samples are more like the data
    assert max(vae, iwae5, iwae50) < c["data_log_p_data"]  # all below real test images
    vae, iwae5, iwae50 = (c[f"{m}_reconstruction"] for m in ("vae", "iwae5", "iwae50"))
    assert vae > iwae5 > iwae50 and iwae5 - iwae50 > 1  # k = 50 clearly worst


@pytest.mark.notebook
def test_05_cost_of_k(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    # timings: medians over rounds of ratios taken within each round
    assert 0.75 < c["time_ratio_5_1"] < 1.3  # k = 5 costs about as much as k = 1
    assert c["time_ratio_50_5"] > 1.5  # "a step at k = 50 costs clearly more than one at k = 5"
    assert 1.5 < c["extra_time_ratio_400_200"] < 2.6  # time above the fixed cost ~doubles
    assert c["time_ratio_400_200"] < c["extra_time_ratio_400_200"]  # the total a little less
    assert 1.8 < c["memory_ratio_400_200"] < 2.1  # memory in proportion to k
    assert np.all(np.diff(c["memory_mb"]) > 0)
    assert 100 * 8 < c["bytes_per_pair"] < 1000 * 8  # "a few hundred numbers per pair"


# ---------------------------------------------------------------- 07 why the package is fast


@pytest.mark.notebook
def test_07_design_decisions_pay(lesson_claims):
    c = lesson_claims("07_why_the_package_is_fast")
    assert c["container_ratio"] > 1  # the flat θ is faster
    assert c["slices_ratio"] > 1  # block() is faster than theta[a:b]
    assert c["add_at_ratio"] > 5  # np.add.at is many times slower than +=
    assert c["tiers_ratio"] > 1  # the kernels save time
    # the transcendental passes, not the cheap ones, make the closed form's cost
    assert c["transcendental_ms"] > c["cheap_passes_ms"]
    assert c["profile_share_autograd"] > 1 / 6  # "more than a sixth here"


@pytest.mark.notebook
def test_07_encoding_once(lesson_claims):
    c = lesson_claims("07_why_the_package_is_fast")
    assert 0.8 < c["encode_k1_ratio"] < 1.4  # "only a little above 1" at k = 1
    assert c["encode_k50_ratio"] > max(1.0, c["encode_k1_ratio"])  # slower at k = 50


# ---------------------------------------------------------------- 08 estimators, SNR, Rényi


@pytest.mark.notebook
def test_08_estimator_bias(lesson_claims):
    c = lesson_claims("08_gradient_estimators_and_snr")
    assert 100 < c["dreg_parameters"] < 200  # "about 150 parameters"
    assert c["dreg_max_abs_z"] < 3.5  # chance level
    assert c["stl_max_abs_z"] > 10  # "|z| in the tens"
    assert c["decoder_identical"] is True


@pytest.mark.notebook
def test_08_signal_to_noise(lesson_claims):
    c = lesson_claims("08_gradient_estimators_and_snr")
    for span in ("1_16", "1_64"):  # "between −0.3 and −0.5"
        assert -0.5 <= c[f"iwae_encoder_slope_{span}"] <= -0.3
    assert c["iwae_encoder_snr"][-1] < 2 * c["snr_floor"]  # "less than twice the noise floor"
    assert np.all(np.diff(c["dreg_encoder_snr"]) > 0)  # DReG's grows with k
    assert 0.3 < c["decoder_slope_1_64"] < 0.7  # "roughly along √k"


@pytest.mark.notebook
def test_08_bound_family_orderings_and_alpha_one(lesson_claims):
    c = lesson_claims("08_gradient_estimators_and_snr")
    assert c["vr_decreasing_every_point"] is True
    assert c["miwae_decreasing_every_point"] is True
    assert c["vr_near_one_spread"] < 1e-5  # smooth through α = 1
    assert c["direct_error_near_one"] > 1e3 * c["package_error_near_one"]


@pytest.mark.notebook
def test_08_renyi_upper_bound_for_negative_alpha(lesson_claims):
    c = lesson_claims("08_gradient_estimators_and_snr")
    exact = {a: c[f"renyi_exact_{a}"] for a in (-1.0, -0.5, 0.0, 0.5, 1.0)}
    assert exact[-1.0] > exact[-0.5] > 0  # an upper bound for α < 0
    assert abs(exact[0.0]) < 1e-6  # L_0 = log p(x)
    assert 0 > exact[0.5] > exact[1.0]  # a lower bound for α > 0; the ELBO at α = 1
    # k = 1, 10, 100, 1000: every α gives the ELBO at k = 1
    ones = [c[f"renyi_estimates_{a}"][0] for a in exact]
    assert max(ones) - min(ones) < 1e-9
    for a in (-1.0, -0.5, 0.0, 0.5):  # below the exact value (Jensen), rising with k
        estimates, se = c[f"renyi_estimates_{a}"], c[f"renyi_se_{a}"]
        assert np.all(np.diff(estimates) > 0)
        assert estimates[-1] < exact[a] + 2 * se[-1]
    at_minus_one = c["renyi_estimates_-1.0"]
    assert at_minus_one[1] < 0 < at_minus_one[2]  # k = 10 below log p(x), k = 100 above
