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
import scipy.special
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


# ---------------------------------------------------------------- 00 autograd and finite diffs

LESSON_00 = "00_autograd_and_finite_differences"
EPS_THIRD = np.finfo(float).eps ** (1 / 3)  # gradcheck's first step, ≈ 6.06e-6


@pytest.mark.notebook
def test_00_step_size_makes_a_v(lesson_claims):
    c = lesson_claims(LESSON_00)
    assert c["autograd_vs_hand"] < 1e-12  # autograd's gradient is the one by hand
    assert abs(c["slope_truncation"] - 2) < 0.1  # "falls like h²: the printed slope is 2"
    assert -1.3 < c["slope_rounding"] < -0.7  # "a slope near −1"
    # "the smallest error is below 1e-10, at a step between 1e-6 and 1e-5"
    assert c["best_error"] < 1e-10 and 1e-6 <= c["best_step"] <= 1e-5
    assert c["error_at_default_step"] < 3 * c["best_error"]  # "about as small"


@pytest.mark.notebook
def test_00_the_step_follows_f_not_x(lesson_claims):
    c = lesson_claims(LESSON_00)
    assert c["sin_passed"] and c["log_passed"] and c["logsumexp_passed"]
    assert c["sin_first_step"] == pytest.approx(EPS_THIRD, rel=1e-3)  # "kept its first step"
    assert c["log_first_step"] < EPS_THIRD / 100  # "a far smaller step"
    assert c["logsumexp_first_step"] > EPS_THIRD  # "larger ones"
    # the naive rules in closed form: (sin(x+h) − sin(x−h))/2h = cos(x)·sin(h)/h, and
    # x·(log(x+h) − log(x−h))/2h = artanh(u)/u with u = h/x
    h = EPS_THIRD * 1e4  # ∝ |x| for sin at x = 1e4
    assert c["sin_proportional_step_error"] == pytest.approx(1 - math.sin(h) / h, rel=1e-3)
    u = EPS_THIRD / 1e-4  # the fixed step for log at x = 1e-4
    assert c["log_fixed_step_error"] == pytest.approx(math.atanh(u) / u - 1, rel=1e-3)
    # "each naive rule misses the tolerance 1e-4"
    assert min(c["sin_proportional_step_error"], c["log_fixed_step_error"]) > 1e-4


@pytest.mark.notebook
def test_00_wrong_derivation_is_off_by_sigma(lesson_claims):
    c = lesson_claims(LESSON_00)
    # section 3's data and parameters, rebuilt: 50 draws of N(1, 2²), μ = 0.3, s = log σ = 0.2
    x, mu, s = np.random.default_rng(0).normal(1.0, 2.0, size=50), 0.3, 0.2
    right = np.sum(-1 + (x - mu) ** 2 * np.exp(-2 * s))  # ∂ℓ/∂s
    wrong = right / np.exp(s)  # ∂ℓ/∂σ = (∂ℓ/∂s) / σ
    assert not c["wrong_passed"]
    assert c["wrong_mean_rel_error"] < 1e-8  # "coordinate (0,) agrees"
    assert c["wrong_ratio_over_sigma"] == pytest.approx(1, abs=1e-6)  # "off by a factor of σ"
    assert c["wrong_disagreement"] == pytest.approx(abs(right - wrong), rel=1e-5)
    assert c["wrong_fd_error"] < 1e-6 * c["wrong_disagreement"]  # "many orders of magnitude"
    # section 10, right panel: the curves level off at that disagreement, none far below it
    assert c["sweep_wrong_floor"] == pytest.approx(c["wrong_disagreement"], rel=0.01)
    assert c["sweep_wrong_lowest"] > 0.9 * c["wrong_disagreement"]


@pytest.mark.notebook
def test_00_random_directions_and_bisection(lesson_claims):
    c = lesson_claims(LESSON_00)
    # VAE(x_dim=8, z_dim=2, hidden=(16,)): encoder 8→16→2·2, decoder 2→16→8
    assert c["parameters"] == (8 * 16 + 16) + (16 * 4 + 4) + (2 * 16 + 16) + (16 * 8 + 8)
    assert c["parameters"] > c["max_full"]  # "θ has more entries than that": random directions
    assert c["random_checks_passed"] and c["slip_found"]  # bisection names coordinate (123,)
    assert c["evaluations_passing"] < c["evaluations_slip"]  # the bisection's own cost
    assert c["evaluations_slip"] < 4 * c["parameters"] / 5  # "far fewer than one by one"


@pytest.mark.notebook
def test_00_reports_name_the_broken_entries(lesson_claims):
    c = lesson_claims(LESSON_00)
    assert c["two_arguments_autograd_passed"]
    assert c["two_arguments_failures"] == 1 and c["two_arguments_fails_at_log_std_1"]
    # forgetting σ breaks ∂z_kij/∂(log σ)_ij wherever σ_ij ≠ 1: k = 4 draws × 5 such entries
    assert c["jvp_by_hand_passed"] and c["jvp_failures_all_log_std"]
    assert c["jvp_failures"] == c["jvp_failures_expected"] == 4 * 5
    assert c["vjp_passed"] and not c["wrong_vjp_passed"]
    # e^{−a}σ(−a) equals σ(a) only at a = 0: the diagonal entries at the other 3 points disagree
    assert c["wrong_vjp_failures"] == 3
    assert c["hessian_passed"] and c["vjp_second_order_passed"]


@pytest.mark.notebook
def test_00_step_sweep(lesson_claims):
    c = lesson_claims(LESSON_00)
    assert c["sweep_decades"] == pytest.approx(13)
    # the worst entry of f(x) = Σ sin(x_i) x_i² at x = (0.3, 1.3, −0.8): coordinate 0
    assert c["sweep_derivative"] == pytest.approx(
        math.cos(0.3) * 0.3**2 + 2 * 0.3 * math.sin(0.3), rel=1e-5
    )
    # "its best step is close to the one the sweep predicts"
    assert 1 / 3 < c["sweep_central_best_step"] / c["sweep_central_predicted_step"] < 3
    # Richardson: "a larger best step, and a smaller error there"
    assert c["sweep_richardson_best_step"] > 10 * c["sweep_central_best_step"]
    assert c["sweep_richardson_best_error"] < c["sweep_central_best_error"]
    # the complex step "falls to the rounding level of the derivative, ε|φ'| or exactly 0":
    # over "several decades" of steps, and the table's best step is "the smallest step swept"
    assert c["sweep_complex_best_error"] <= np.finfo(float).eps * c["sweep_derivative"]
    assert c["sweep_complex_best_step"] == c["sweep_smallest_step"]
    assert c["sweep_complex_flat_up_to"] > 1e3 * c["sweep_smallest_step"]
    # the checks themselves: the complex step resolves the smallest disagreement
    assert c["complex_max_rel_error"] <= c["richardson_max_rel_error"]
    assert c["richardson_max_rel_error"] < c["central_max_rel_error"]


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
    # the unbroken accurate range ends where the finite one does; "a few" isolated shifts below it
    assert c["naive_accurate_to"] == c["naive_finite_to"]
    assert 0 < c["naive_accurate_isolated"] <= 10
    # the printed range is unbroken, and the error first passes 1e-12 just below its start
    shifts = np.arange(-1000, 1000.001, 0.25)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        naive = np.log(np.sum(np.exp(np.array([0.0, 1.0, 2.0]) + shifts[:, None]), axis=1)) - shifts
    exact = scipy.special.logsumexp([0.0, 1.0, 2.0])  # as the lesson computes it
    accurate = np.abs(naive - exact) < 1e-12  # (False where naive is not finite)
    inside = (shifts >= c["naive_accurate_from"]) & (shifts <= c["naive_accurate_to"])
    assert np.all(accurate[inside]) and not accurate[np.argmax(inside) - 1]
    assert np.count_nonzero(accurate[~inside]) == c["naive_accurate_isolated"]


@pytest.mark.notebook
def test_01_stable_softplus_and_densities(lesson_claims):
    c = lesson_claims("01_log_densities_and_logsumexp")
    assert c["softplus_minus_40"] == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-4)
    assert c["one_plus_tiny_is_one"]  # "1 + e^−40 rounds to exactly 1"
    assert c["softplus_max_difference_from_scipy"] < 1e-12
    # "agree with scipy.stats to rounding"
    assert c["bernoulli_max_difference"] < 1e-12 and c["normal_max_difference"] < 1e-12
    # the softmax is logsumexp's gradient; "a −inf entry gets weight exactly 0"; they sum to 1
    assert c["softmax_max_difference"] < 1e-15 and c["weight_of_minus_inf"] == 0
    # "sum to 1, to rounding": within a few spacings of the floats just below 1 (1.1e-16 apart)
    assert abs(c["weights_sum_minus_one"]) <= 4 * np.spacing(1.0) / 2
    assert c["logsumexp_gradcheck_passed"]


# ---------------------------------------------------------------- 02 classic per-sample VI

LESSON_02 = "02_classic_per_sample_vi"


def best_diagonal_gap(seed, n):
    """KL(q*‖p(z|x)) of lessons 02/03's linear-Gaussian model (x_dim 5, z_dim 2, σ 0.5), from its
    W in closed form: ½ (Σ_j log (Σ⁻¹)_jj − log det Σ⁻¹), Σ⁻¹ = I + W Wᵀ / σ²."""
    import iwae_np as iw

    lg = iw.data.linear_gaussian(n=n, x_dim=5, z_dim=2, noise_std=0.5, seed=seed)
    precision = np.eye(2) + lg.W @ lg.W.T / 0.5**2
    return 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])


@pytest.mark.notebook
def test_02_classic_vi_reaches_the_exact_best_diagonal(lesson_claims):
    c = lesson_claims(LESSON_02)
    assert c["mc_elbo_error"] < 2 * c["mc_elbo_se"]  # "within two standard errors"
    assert c["converged_fraction"] == 1  # "every point converged"
    # "within a few hundredths of the exact best diagonal Gaussian at every point"
    assert c["lg_max_mean_error"] < 0.05 and c["lg_max_std_error"] < 0.05
    assert c["q_star_centre_offset"] < 0.05  # "both densities share a centre"
    assert c["lg_exact_gap"] == pytest.approx(best_diagonal_gap(seed=0, n=200), abs=1e-5)
    # in closed form classic VI's q falls short by a little more than the best, "by less than a
    # thousandth of a nat"; its Monte Carlo estimate "within three standard errors" of that
    assert 0 <= c["lg_fit_gap_exact"] - c["lg_exact_gap"] < 0.001
    assert abs(c["lg_fit_gap"] - c["lg_fit_gap_exact"]) < 3 * c["lg_fit_gap_se"]


@pytest.mark.notebook
def test_02_q_star_is_narrower_than_the_posterior(lesson_claims):
    c = lesson_claims(LESSON_02)
    assert np.all(c["q_star_variances"] < c["posterior_variances"])  # "narrower" along each axis
    # "along the direction in which the posterior is narrowest, q* is the wider of the two"
    posterior_along_u, q_star_along_u = c["narrow_direction_variances"]
    assert q_star_along_u > posterior_along_u
    # "match 1/diag(Σ⁻¹)", to the few percent that classic VI's convergence test allows
    np.testing.assert_allclose(c["q_star_variances"], c["best_variances"], rtol=0.05)
    assert abs(c["posterior_correlation"]) > 0.3  # "z₁ and z₂ are correlated given x"


@pytest.mark.notebook
def test_02_cost_grows_in_proportion_to_n(lesson_claims):
    c = lesson_claims(LESSON_02)
    # CPU times: medians over rounds of ratios taken within each round
    assert c["time_ratio_100_10"] < 1.5  # "100 points take hardly longer than 10"
    # the cost per point and step "falls by a factor of tens from 10 to 1,000 points", then
    # "at 3,000, 10,000 and 30,000 points it agrees to within a factor of two"
    assert c["per_point_fall_10_1000"] > 10
    assert 1 <= c["per_point_spread_large"] < 2
    # "30,000 points take about three times as long as 10,000 ... near three, not exactly"
    assert 2 < c["time_ratio_30000_10000"] < 4.5
    low, high = c["time_ratio_30000_10000_iqr"]
    assert low <= c["time_ratio_30000_10000"] <= high
    assert 0.5 < c["microseconds_per_point_step"] < 10  # "a few microseconds per step"
    # at one sample per step, section 3's median number of steps: "of the order of a millisecond
    # per point"
    assert 0.3 < c["ms_per_point_at_one_sample"] < 3
    # section 3's own fit (until every point converged): "about an order of magnitude more", and
    # the printed range over the rounds brackets that ratio
    section_3_ratio = c["ms_per_point_section_3"] / c["ms_per_point_at_one_sample"]
    assert 5 < section_3_ratio < 25
    low, high = c["section_3_ratio_range"]
    assert low <= section_3_ratio * (1 + 1e-3) and section_3_ratio <= high * (1 + 1e-3)
    # "every step timed here is among the first ones", which refresh the curvature estimate
    assert c["timed_steps"] <= c["curvature_refresh_window"]


@pytest.mark.notebook
def test_02_banana_gap_belongs_to_the_family(lesson_claims):
    c = lesson_claims(LESSON_02)
    assert c["banana_converged"]
    # the grid optimizer: "the same λ to within a few hundredths, the same gap to within a few
    # thousandths of a nat"
    assert c["banana_lambda_difference"] < 0.05
    assert abs(c["banana_gap_classic"] - c["banana_gap_best"]) < 0.005
    assert c["banana_gap_best"] <= c["banana_gap_classic"] + 1e-6  # BFGS's is the grid's best
    assert 0.6 < c["banana_gap_best"] < 0.75  # "about two thirds of a nat"
    # the Monte Carlo gap "within three standard errors of its quadrature value"
    gap_error = abs(c["banana_gap_monte_carlo"] - c["banana_gap_classic"])
    assert gap_error < 3 * c["banana_gap_monte_carlo_se"]


# ---------------------------------------------------------------- 03 amortized inference

LESSON_03 = "03_amortized_inference"
BUDGETS_03 = [0, 5, 20, 50, 300]  # section 4's steps of classic VI


@pytest.mark.notebook
def test_03_linear_encoder_nearly_exact(lesson_claims):
    c = lesson_claims(LESSON_03)
    assert c["exact_approximation_gap"] == pytest.approx(best_diagonal_gap(0, 1200), abs=1e-5)
    # "small but not 0: a small fraction of the approximation gap"
    assert 0 < c["exact_amortization_gap"] < 0.2 * c["exact_approximation_gap"]
    # "the two mean ELBOs differ by a few thousandths of a nat", the gap between their two q's
    assert abs(c["elbo_difference"]) < 0.02
    assert abs(c["elbo_difference"] - c["closed_form_gap"]) < 3 * c["elbo_difference_se"]
    # "both fall short of log p(x) by the same amount, the exact approximation gap"
    for key in ("encoder_approximation_gap", "classic_approximation_gap"):
        assert abs(c[key] - c["exact_approximation_gap"]) < 0.02
    assert c["classic_converged_fraction"] == 1


@pytest.mark.notebook
def test_03_classic_vi_costs_far_more_per_point(lesson_claims):
    c = lesson_claims(LESSON_03)
    assert c["match_steps"] < c["converge_steps"]
    assert c["match_ratio"] > 100  # "more than a hundred times ... within 0.01 nats"
    assert c["converge_ratio"] > 1000  # "more than a thousand times to converge"
    # "the encoder's time per point is lower still when it encodes 1000 points in one call"
    at_200, at_1000 = c["encoder_microseconds_per_point"]
    assert at_1000 < at_200


@pytest.mark.notebook
def test_03_same_draws_cancel_noise(lesson_claims):
    c = lesson_claims(LESSON_03)
    assert c["paired_gap_se"] < c["elbo_difference_se"] / 2  # "several times smaller"
    assert abs(c["paired_gap"] - c["closed_form_gap"]) < 2 * c["paired_gap_se"]
    assert 0 < c["closed_form_gap"] < 0.1 * c["exact_approximation_gap"]  # "far smaller"


@pytest.mark.notebook
def test_03_banana_gaps_and_their_spread(lesson_claims):
    c = lesson_claims(LESSON_03)
    names = ("mean", "q25", "median", "q75", "max")
    approximation = dict(zip(names, c["banana_approximation_gap"], strict=True))
    amortization = dict(zip(names, c["banana_amortization_gap"], strict=True))
    # "both substantial: the median amortization gap a sizeable fraction of the approximation's"
    assert amortization["median"] > 0.2 * approximation["median"] > 0.02
    # the approximation gap is bounded: "mean and median close, the largest < 3 × the median"
    assert approximation["mean"] < 1.3 * approximation["median"]
    assert approximation["max"] < 3 * approximation["median"]
    # the amortization gap's long tail: 3 of 60 points carry a large share, mean well above median
    assert c["banana_amortization_top3_share"] > max(0.2, 2 * c["banana_approximation_top3_share"])
    assert amortization["mean"] > 1.3 * amortization["median"]
    assert amortization["max"] > 5 * amortization["median"]
    # "can come out slightly below zero ... small next to the typical gap"
    assert c["banana_amortization_gap_min"] > -0.2 * amortization["median"]
    # log p(x)'s grid: its change on a grid twice as fine is far below every gap here
    assert c["banana_grid_difference"] < 1e-4 * approximation["q25"]
    # the standard errors come from the same draws as the gaps
    assert c["banana_paired_same_draws"] < 1e-10
    # each estimate below 0 "lies within two standard errors of 0"; by quadrature those points'
    # gaps are positive, and "no point's gap is below 0"; the estimates lie within "a few"
    # standard errors of the quadrature's gaps, which doubling the nodes leaves unchanged
    assert (c["banana_below_zero_count"] > 0) == (c["banana_amortization_gap_min"] < 0)
    if c["banana_below_zero_count"]:
        assert c["banana_below_zero_largest_z"] < 2 and c["banana_below_zero_exact_min"] > 0
    assert c["banana_exact_gap_below_zero"] == 0
    assert c["banana_estimate_largest_z"] < 4
    assert c["banana_quadrature_order_change"] < 1e-4


@pytest.mark.notebook
def test_03_refining_from_the_encoder(lesson_claims):
    c = lesson_claims(LESSON_03)
    warm_mean, warm_median = c["warm_mean_left"], c["warm_median_left"]
    cold_mean, cold_median = c["cold_mean_left"], c["cold_median_left"]
    share = c["warm_share_closed"]
    assert len(share) == len(warm_mean) == len(cold_median) == len(BUDGETS_03)
    # the same ELBOs from the same draws: 0 steps from the encoder's λ is section 3's gap
    assert c["warm_start_minus_section_3"] == 0
    i5, i20, i50 = (BUDGETS_03.index(steps) for steps in (5, 20, 50))
    # "falls to about a third of its starting value within 5 steps"
    assert 0.2 < warm_median[i5] / warm_median[0] < 0.45
    assert warm_median[i20] < 0.03  # "the median point within about a hundredth of a nat"
    assert share[i20] > 0.7  # "most of the mean gap is closed by 20 steps"
    assert warm_mean[i20] > 2 * warm_median[i20]  # "the mean lags far behind the median"
    assert cold_mean[0] > 10  # "from the prior, classic VI starts tens of nats lower"
    assert cold_median[i20] > 2 * warm_median[i20]  # "still at least twice as far from q*"
    assert cold_median[i50] < 1.5 * warm_median[i20]  # "at 50 steps where the warm start was at 20"
    # "by 300 steps both starts have reached q*, to within about a hundredth of a nat on average"
    assert max(abs(warm_mean[-1]), abs(cold_mean[-1])) < 0.02


# ---------------------------------------------------------------- 04 the IWAE bound


@pytest.mark.notebook
def test_04_variance_finite_for_wide_q_infinite_for_narrow(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["wide_min_eigenvalue"] > 0 and c["wide_box_growth"] < 1.01  # converged integral
    assert c["narrow_min_eigenvalue"] < 0 and c["narrow_box_growth"] > 1e6  # grows without bound
    assert c["wide_relative_variance"] > 0
    # "even the smallest box (half-width 0.5) reaches more than three posterior stds each way"
    assert 0.5 > 3 * c["posterior_std_max"]


@pytest.mark.notebook
def test_04_bias_one_over_k_only_with_finite_variance(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    wide, narrow, predicted = c["wide_bias"], c["narrow_bias"], c["wide_predicted_bias"]
    wide_se = c["wide_bias_se"]
    ks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert len(wide) == len(narrow) == len(predicted) == len(wide_se) == len(ks)
    assert decreasing(wide) and decreasing(narrow)  # "the printed biases shrink at every step"
    assert np.all(wide > 0) and np.all(narrow > 0)  # both below log p(x)
    k100 = ks.index(100)
    assert np.all(wide[:k100] < predicted[:k100])  # "up to k = 50 it lies below the line"
    # "from k = 100 on, measurement and line differ by less than three standard errors"
    assert np.all(np.abs(wide[k100:] - predicted[k100:]) < 3 * wide_se[k100:])
    assert wide_se[-1] > 0.05 * wide[-1]  # "a sizeable fraction of the bias itself" at k = 1000
    assert 6 < wide[k100] / wide[-1] < 14  # "roughly tenfold from k = 100 to 1000"
    assert narrow[k100] / narrow[-1] < 2  # "less than twofold over that same decade"
    # spreads: shrink with k for both, by a smaller factor for the narrow q
    assert decreasing(c["wide_spread"]) and decreasing(c["narrow_spread"])
    shrink = {q: c[f"{q}_spread"][0] / c[f"{q}_spread"][-1] for q in ("wide", "narrow")}
    assert shrink["narrow"] < shrink["wide"]


@pytest.mark.notebook
def test_04_effective_sample_size(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["ess_fraction_close"] > 0.85  # "ESS/k near 1"
    assert 0.15 < c["ess_fraction_wide"] < 0.35  # "about a quarter of k"
    # Exercise 1's gradient Σ w̃_i ∇ log w_i is autograd's gradient of L_k, to rounding
    assert c["iwae_gradient_vs_autograd"] < 1e-8


@pytest.mark.notebook
def test_04_banana_gap_plateaus_for_narrow_q_not_for_wide(lesson_claims):
    c = lesson_claims("04_the_iwae_bound")
    assert c["banana_q_star_converged"] == 1  # the quadrature's Newton converged at every point
    assert c["banana_q_star_std_ratio_max"] < 1  # q* narrower than the posterior everywhere
    star, wide = c["banana_star_gap"], c["banana_wide_gap"]  # k = 1, 10, 100, 1000, 10000
    assert star[1] < 0.75 * star[0] and star[2] < 0.75 * star[1]  # "by more than a quarter"
    # "after that by less than a factor of two with each tenfold k", far from 1/k's tenfold
    assert 1 < star[2] / star[3] < 2 and star[3] / star[4] < 2
    # the weights: q*'s heaviest sample carries "many times the share" of the widened q's
    share = {q: c[f"banana_{q}_heaviest_share_median"] for q in ("star", "wide")}
    assert share["star"] > 5 * share["wide"]
    # "the ESS is a few percent of k, against about a quarter of k for the widened q"
    assert c["banana_star_ess_fraction_median"] < 0.1
    assert 0.15 < c["banana_wide_ess_fraction_median"] < 0.35
    assert wide[0] > 5 * star[0]  # "many times q*'s" ELBO gap
    assert 5 < wide[1] / wide[2] < 20  # "about tenfold from k = 10 to k = 100"
    # "from k = 1000 on ... within two standard errors of 0"; at k = 10,000 "the gap plus two
    # standard errors is below a hundredth of a nat, a small fraction of q*'s gap"
    wide_se = c["banana_wide_se"]
    assert np.all(np.abs(wide[3:]) < 2 * wide_se[3:])
    assert wide[4] + 2 * wide_se[4] < min(0.01, star[4] / 10)
    assert wide[4] < star[4]  # the better bound at k = 10,000


# ---------------------------------------------------------------- 05 VAE vs IWAE


@pytest.mark.notebook
def test_05_iwae_beats_vae_on_log_px_not_on_elbo(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    for name in ("iwae5", "iwae50"):  # "each by several paired standard errors"
        assert c[f"{name}_vs_first"] > 3 * c[f"{name}_vs_first_se"]
    # "k = 5 gains far more over the VAE than k = 50 adds on top of k = 5"
    assert c["iwae5_vs_first"] > 2 * (c["iwae50_vs_first"] - c["iwae5_vs_first"])
    # the printed paired difference of k = 50 and k = 5 is that of the table's two rows
    assert c["iwae50_vs_iwae5"] == pytest.approx(
        c["iwae50_vs_first"] - c["iwae5_vs_first"], abs=1e-6
    )
    # "k = 50 ... ahead of k = 5 by only two to three paired standard errors": probably, not
    # certainly, the better model
    assert 1.5 < c["iwae50_vs_iwae5"] / c["iwae50_vs_iwae5_se"] < 3.5
    # "training at k = 50 took clearly longer than at k = 5" (wall clock: a wide margin)
    assert c["iwae50_train_seconds"] > 1.5 * c["iwae5_train_seconds"]
    # "the IWAEs' ELBO is worse, the more so the larger k"
    assert c["vae_elbo"] > c["iwae5_elbo"] > c["iwae50_elbo"]


@pytest.mark.notebook
def test_05_vae_switches_units_off(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    # "the VAE keeps fewer units active than either IWAE"
    assert c["vae_active_units"] < min(c["iwae5_active_units"], c["iwae50_active_units"])
    for name in ("vae", "iwae5", "iwae50"):  # the printed counts are those of the curves
        variances = c[f"{name}_unit_variances"]
        assert len(variances) == 20 and np.all(np.diff(variances) <= 0)
        assert np.sum(variances > 0.01) == c[f"{name}_active_units"]
    assert c["vae_unit_variances"][-1] < 0.01  # "its least active units lie below the threshold"


@pytest.mark.notebook
def test_05_why_units_stay_off(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    # "their rank correlations with A_u are all above 0.9"
    for name in ("kl", "decoder_weights", "gradient"):
        assert c[f"rank_correlation_{name}"] > 0.9
    # "a trend in the ranks, not a rule for every unit: the least active unit has a larger KL and
    # a larger gradient than some units more active than it"
    assert c["kl_below_weakest"] >= 1 and c["gradient_below_weakest"] >= 1
    assert c["gradient_ratio"] > 4  # "a fraction of the most active unit's gradient"
    # "every inactive unit is within a few hundredths of a nat of the prior"
    assert c["inactive_kl_max"] < 0.05 and c["inactive_kl_max"] < c["strongest_kl"] / 10


@pytest.mark.notebook
def test_05_lk_charges_less_than_the_kl(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    for q in ("0.5_1.0", "0.0_0.5", "1.0_0.7"):
        kl, charge, se = c[f"charge_{q}_kl"], c[f"charge_{q}"], c[f"charge_{q}_se"]
        # the closed form, checked by Monte Carlo within its standard error (k = 1)
        assert kl > 0 and abs(charge[0] - kl) < 3 * se[0]
        # "at k = 5 already a fraction of the KL, at k = 50 a smaller fraction still"
        assert charge[1] < 0.8 * kl and charge[2] < charge[1] - 3 * se[1]
        assert charge[2] > -3 * se[2]  # a gap: never below 0, beyond noise


@pytest.mark.notebook
def test_05_samples_and_reconstructions(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    vae, iwae5, iwae50 = (c[f"{m}_samples_log_p_data"] for m in ("vae", "iwae5", "iwae50"))
    assert min(iwae5, iwae50) > vae  # the IWAEs' samples are more like the data
    assert max(vae, iwae5, iwae50) < c["data_log_p_data"]  # all below real test images
    vae, iwae5, iwae50 = (c[f"{m}_reconstruction"] for m in ("vae", "iwae5", "iwae50"))
    assert iwae5 > max(vae, iwae50)  # "the IWAE (k = 5) reconstructs best"
    assert c["iwae50_log_px"] > c["iwae5_log_px"]  # "the best model in log p(x)" is k = 50


@pytest.mark.notebook
def test_05_cost_of_k(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    # timings: CPU time, medians over rounds of ratios taken within each round
    # "k = 5 costs little more than k = 1 (the printed ratio is much closer to 1 than to the 5 that
    # a time in proportion to k would give)"
    assert 0.75 < c["time_ratio_5_1"] < 2
    assert c["time_ratio_50_5"] > 1.5  # "a step at k = 50 costs clearly more than one at k = 5"
    assert 1.5 < c["extra_time_ratio_400_200"] < 2.6  # time above the fixed cost ~doubles
    assert c["time_ratio_400_200"] < c["extra_time_ratio_400_200"]  # the total a little less
    assert 1.8 < c["memory_ratio_400_200"] < 2.1  # memory in proportion to k
    assert np.all(np.diff(c["memory_mb"]) > 0)
    # "tens to a few hundred numbers per (sample, point) pair"
    assert 10 * 8 <= c["bytes_per_pair"] < 500 * 8


@pytest.mark.notebook
def test_05_fixed_budget(lesson_claims):
    c = lesson_claims("05_training_vae_vs_iwae")
    k1, k5, k50 = c["budget_log_px"]  # k × epochs = 150 for each
    assert k5 == pytest.approx(c["iwae5_log_px"], abs=1e-4)  # section 1's model, reused
    assert c["budget_small_k_difference"] == pytest.approx(abs(k1 - k5), abs=1e-4)
    # "k = 1 and k = 5 end close together, while k = 50 ends far below both"
    assert c["budget_small_k_difference"] < 0.5
    assert c["budget_large_k_deficit"] > 1 and c["budget_large_k_deficit"] > 3 * abs(k1 - k5)
    assert c["budget_seconds_ratio_1_5"] > 1.5  # "k = 1 took longer than k = 5"
    # the prediction beside it: five times the steps over section 4's k = 5 / k = 1 ratio
    assert c["budget_seconds_predicted"] == pytest.approx(5 / c["time_ratio_5_1"], rel=1e-3)


# ---------------------------------------------------------------- 06 what the IWAE fits


@pytest.mark.notebook
def test_06_iwae_q_is_wider(lesson_claims):
    c = lesson_claims("06_what_the_iwae_fits")
    assert np.all(c["std_iwae"] > 1.5 * c["std_elbo"])  # wider in both coordinates


@pytest.mark.notebook
def test_06_sir_approaches_the_posterior(lesson_claims):
    c = lesson_claims("06_what_the_iwae_fits")
    # columns: E[z2], Var[z1], P(z2 < 0.5), and its parts on the arms (|z1| ≥ 0.5) and between
    # them (|z1| < 0.5)
    true, q = c["stats_true"], c["stats_q"]
    sir = {k: (c[f"stats_sir{k}"], c[f"stats_sir{k}_se"]) for k in (1, 10, 100, 1000)}
    # the grid's error in each column is below every standard error in that column
    assert np.all(c["grid_check"] < np.min([se for _, se in sir.values()], axis=0))
    values, se = sir[1]  # k = 1: q's own samples, "within three standard errors in every column"
    assert np.all(np.abs(values - q) < 3 * se)
    np.testing.assert_allclose(true[3] + true[4], true[2], atol=1e-12)  # the two parts
    # "q gets P(z2 < 0.5) about right, but ... a large part of that mass between the arms, where
    # the posterior has almost none, and too little on the arms"
    assert abs(q[2] - true[2]) < 0.1 * true[2]
    assert q[4] > 0.25 * q[2] and true[4] < 0.05 * true[2] and q[3] < true[3]
    values, se = sir[10]
    # "that column falls almost to the posterior's; ... the arms' column rises only part of the way"
    assert values[4] - true[4] < 0.1 * (q[4] - true[4])
    assert q[3] < values[3] < true[3] - 5 * se[3]
    # "P(z2 < 0.5) drops below the posterior's at k = 10, further from it than q's, by many
    # standard errors, and comes back only with more proposals"
    assert true[2] - values[2] > abs(q[2] - true[2]) + 5 * se[2]
    assert abs(sir[100][0][2] - true[2]) < true[2] - values[2]
    # "E[z2] too high, and Var[z1], which q gets badly wrong (far too wide), is much closer but now
    # too small; both by many standard errors"
    assert q[1] - true[1] > 0.3 and abs(values[1] - true[1]) < 0.2 * (q[1] - true[1])
    assert values[0] - true[0] > 5 * se[0] and true[1] - values[1] > 5 * se[1]
    # "at k = 100 the gaps in E[z2] and Var[z1] are a fraction of those at k = 10, in the same
    # directions, but still several standard errors wide"
    values_100, se_100 = sir[100]
    for j, sign in ((0, 1), (1, -1)):
        gap_100, gap_10 = sign * (values_100[j] - true[j]), sign * (values[j] - true[j])
        assert 3 * se_100[j] < gap_100 < 0.5 * gap_10
    values, se = sir[1000]  # "every column agrees within three standard errors"
    assert np.all(np.abs(values - true) < 3 * se)
    assert np.all(np.abs(values - true) < np.abs(sir[10][0] - true))
    # "about twice as wide as the other rows'" (5,000 draws instead of 20,000)
    assert np.all((1.5 * se_100 < se) & (se < 3 * se_100))


# ---------------------------------------------------------------- 07 why the package is fast


@pytest.mark.notebook
def test_07_design_decisions_pay(lesson_claims):
    c = lesson_claims("07_why_the_package_is_fast")
    assert c["container_ratio"] > 1  # the flat θ is faster
    assert c["slices_ratio"] > 1  # block() is faster than theta[a:b]
    assert c["add_at_ratio"] > 5  # np.add.at is many times slower than +=
    # six blocks' (np.add.at − +=), same rounds, "comes to most of the whole gap ... well above a
    # half" (timing noise: a wide band)
    assert 0.6 < c["add_at_account"] < 1.25
    assert c["tiers_ratio"] > 1  # the kernels save time
    # the transcendental passes, not the cheap ones, make the closed form's cost
    assert c["transcendental_ms"] > c["cheap_passes_ms"]
    # "the six passes, timed one by one, add up to most of the closed form's time"
    assert 0.5 < c["passes_sum_ratio"] < 1.25
    # "the kernels' group takes the largest share", NumPy's functions "come second"; the package's
    # other Python and autograd's bookkeeping "take the two smallest shares, each less than a
    # sixth" (their order between them is not claimed: it can change from run to run)
    shares = {g: c[f"profile_share_{g}"] for g in ("autograd", "kernels", "package", "other")}
    assert max(shares, key=shares.get) == "kernels"
    assert shares["other"] > max(shares["autograd"], shares["package"])
    assert shares["autograd"] < 1 / 6 and shares["package"] < 1 / 6
    # np.logaddexp against the closed form: "where exp and log1p run as SIMD loops [AVX-512], the
    # closed form wins; where they run one element at a time, the two are close"
    if c["numpy_avx512f"]:
        assert c["softplus_ratio"] > 1
    else:
        assert 0.5 < c["softplus_ratio"] < 2
    assert c["softplus_ratio_q1"] <= c["softplus_ratio"] <= c["softplus_ratio_q3"]


@pytest.mark.notebook
def test_07_encoding_once(lesson_claims):
    c = lesson_claims("07_why_the_package_is_fast")
    assert 0.8 < c["encode_k1_ratio"] < 1.4  # "close to 1" at k = 1
    assert c["encode_k50_ratio"] > max(1.0, c["encode_k1_ratio"])  # slower at k = 50


# ---------------------------------------------------------------- 08 estimators, SNR, Rényi


@pytest.mark.notebook
def test_08_estimator_bias(lesson_claims):
    c = lesson_claims("08_gradient_estimators_and_snr")
    m = c["dreg_parameters"]
    assert m == c["stl_parameters"]
    # the printed chance levels: the union bound's 5 % threshold, and the median of the largest
    # of m independent |z|
    assert c["union_threshold"] == pytest.approx(scipy.stats.norm.isf(0.05 / (2 * m)), abs=1e-3)
    assert c["independent_median_max"] == pytest.approx(
        scipy.stats.norm.ppf((1 + 0.5 ** (1 / m)) / 2), abs=1e-3
    )
    # "DReG's largest |z| is below it. It is also below the typical largest of that many
    # independent z-scores"
    assert c["dreg_max_abs_z"] < c["independent_median_max"] < c["union_threshold"]
    # "only a handful of independent directions ..., not one per parameter"
    assert c["dreg_effective_directions"] < min(15, m / 10)
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
