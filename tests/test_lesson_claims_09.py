"""The claims of lesson 09 (inference gaps, semi-amortized VI, two stochastic layers), read from
the lines ``CLAIM name=value`` that its cells print (see tests/test_lesson_claims.py).

Most claims compare two quantities measured on the same test points; the lesson prints each as
"mean, standard error" of the per-point differences, and a test asks for what the text says:
"larger" means more than two standard errors above zero, "a tie" or "cannot be told apart" means
within two standard errors. The lesson runs once per session (conftest's ``lesson_claims``).
"""

import pytest

LESSON = "09_inference_gaps_and_semi_amortized"


def above(pair, z=2.0):
    """A paired difference (mean, standard error) more than z standard errors above zero."""
    mean, se = pair
    return mean - z * se > 0


def below(pair, z=2.0):
    mean, se = pair
    return mean + z * se < 0


def tie(pair, z=2.0):
    mean, se = pair
    return abs(mean) < z * se


@pytest.fixture(scope="module")
def c(lesson_claims):
    return lesson_claims(LESSON)


# ---------------------------------------------------------------- 1. the two gaps on toys


@pytest.mark.notebook
def test_linear_amortization_gap_is_a_few_hundredths(c):
    mean, se = c["linear_amortization_gap"]
    assert -2 * se < mean < 0.1  # "a few hundredths of a nat"
    # far below the banana's: a linear map can output the best q for every x
    assert mean < 0.2 * c["banana_amortization_gap"][0]


@pytest.mark.notebook
def test_linear_approximation_gap_matches_the_closed_form(c):
    # classic VI reproduces KL(q* ‖ p(z|x)) of the best diagonal Gaussian
    assert abs(c["linear_approximation_gap"] - c["linear_exact_approximation_gap"]) < 0.01
    # "their mean lies within two standard errors of the closed form (the z ...)"
    assert abs(c["linear_approximation_gap_z"]) < 2
    assert c["linear_exact_approximation_gap"] > 0
    assert c["linear_converged"] == 1.0


@pytest.mark.notebook
def test_banana_gaps_are_larger_than_the_linear_ones(c):
    banana_approx, banana_amort = c["banana_approximation_gap"], c["banana_amortization_gap"]
    assert banana_approx[0] - 2 * banana_approx[1] > c["linear_approximation_gap"]
    assert banana_amort[0] - 2 * banana_amort[1] > c["linear_amortization_gap"][0]


@pytest.mark.notebook
def test_banana_means_do_not_rank_the_gaps_but_most_points_do(c):
    assert tie(c["banana_gap_difference"])  # the means: within two standard errors
    share, _ = c["banana_share_approximation_larger"]
    assert share > 0.5  # "at most of these points the approximation gap is the larger"
    median, largest = c["banana_amortization_median_max"]
    assert largest > 5 * median  # "a long tail: gaps many times the median"
    # "about ten times the next largest: every other point's gap is about 1 nat or less"
    top = c["banana_amortization_top"]
    assert top[0] == pytest.approx(largest, abs=1e-4)
    assert 6 < top[0] / top[1] < 16
    assert top[1] < 1.5
    assert c["banana_approximation_median"] > median


@pytest.mark.notebook
def test_banana_share_holds_where_classic_vi_converged(c):
    # "classic VI did not meet its tolerance in 500 steps at a good part of the points"
    assert c["banana_converged"] < 0.8
    # "counted again over the points where classic VI converged: there too the approximation gap
    # is the larger at most of them"
    share, converged = c["banana_share_larger_converged"]
    assert converged >= 10 and share > 0.5


@pytest.mark.notebook
def test_a_negative_amortization_gap_is_slight(c):
    # "a point's amortization gap can come out slightly below zero": a few hundredths at most
    assert min(c["smallest_amortization_gap"]) > -0.05


@pytest.mark.notebook
def test_banana_quadrature_is_converged(c):
    assert c["quadrature_change"] < 1e-6


# ---------------------------------------------------------------- 3. SA-VAE vs VAE vs SVI


@pytest.mark.notebook
def test_sa_vae_encoder_is_poor_alone_but_refines_well(c):
    assert below(c["sa_minus_vae_encoder_elbo"])  # its encoder alone: below the VAE's
    gain = c["sa_steps_gain"]
    assert above(gain) and gain[0] > 3  # "5 steps raise its ELBO by several nats"
    assert above(c["sa_steps_minus_vae_encoder"])  # "to above the VAE's encoder"


@pytest.mark.notebook
def test_the_same_steps_lower_the_vae_elbo_unless_smaller(c):
    assert below(c["vae_steps_gain"])  # η = 0.1 lowers the VAE's ELBO
    assert above(c["vae_small_steps_gain"])  # η = 0.02 raises it
    assert c["vae_small_steps_gain"][0] < 0.5  # "a little"


@pytest.mark.notebook
def test_svi_budget_is_small(c):
    assert c["svi_steps_minus_vae_encoder"][0] < 0  # "below the VAE's encoder, on average"
    gain = c["svi_q_star_gain"]
    assert gain[0] - 2 * gain[1] > 1.0  # "classic VI still gains more than a nat"


@pytest.mark.notebook
def test_log_px_ranks_sa_vae_first_and_ties_svi_with_the_vae(c):
    assert above(c["sa_minus_vae_log_px"])  # "the best of the three"
    assert above(c["sa_minus_svi_log_px"])
    assert tie(c["svi_minus_vae_log_px"])  # "cannot be told apart"
    # the same order holds with every model's q* (the log p(x) estimate is not the reason)
    assert above(c["sa_minus_vae_q_star_elbo"])


@pytest.mark.notebook
def test_the_proposal_matters_for_the_sa_vae_only(c):
    mean, se = c["vae_log_px_proposals"]
    assert abs(mean) < 0.05 and abs(mean) < 3 * se + 0.01  # "within a few hundredths"
    assert above(c["sa_log_px_proposals"])  # its encoder as proposal: a lower estimate


@pytest.mark.notebook
def test_refinement_costs_several_vae_epochs(c):
    sa, svi = c["sa_vae_epoch_ratio"], c["svi_epoch_ratio"]  # median, 25th, 75th percentile
    assert sa[1] > 3 and svi[1] > 2  # "several times": even the lower quartile
    assert sa[0] > svi[0]  # differentiating through the steps costs the most


# ---------------------------------------------------------------- 4. two stochastic layers


@pytest.mark.notebook
def test_hand_built_log_weights_are_the_packages(c):
    assert c["layer_log_weights_difference"] < 1e-10


@pytest.mark.notebook
def test_the_amortization_gap_arises_in_the_first_layer(c):
    layer1, layer2, both = c["two_layer1_gain"], c["two_layer2_gain"], c["two_both_gain"]
    assert above(both, z=5) and above(layer1, z=5)
    assert layer1[0] > 0.8 * both[0]  # "closes almost all of the amortization gap"
    assert layer2[0] < 0.1 and layer2[0] < 0.2 * both[0]  # "only a few hundredths"


@pytest.mark.notebook
def test_one_and_two_layer_amortization_gaps_are_close(c):
    one, difference = c["one_layer_amortization_gap"], c["two_minus_one_amortization_gap"]
    assert above(one, z=5)
    assert abs(difference[0]) < 0.3 * one[0]  # "a small fraction of either"


@pytest.mark.notebook
def test_approximation_gap_is_the_smaller_gap_in_both_models(c):
    for approx, amort in (
        (c["one_layer_approximation_gap"], c["one_layer_amortization_gap"]),
        (c["two_layer_approximation_gap"], c["two_both_gain"]),
    ):
        assert approx[0] + 2 * approx[1] < amort[0] - 2 * amort[1]


@pytest.mark.notebook
def test_no_measurable_gain_from_the_second_layer(c):
    assert tie(c["two_minus_one_log_px"])


@pytest.mark.notebook
def test_two_layer_checks(c):
    # the Adam refinement barely moves in its last half, beside the gaps it measures
    assert c["two_refinement_last_half_change"] < 0.1 * c["two_both_gain"][0]
    change, se = c["two_log_px_k_change"]
    assert -2 * se < change < 0.05  # L_k rises with k, and barely from k = 100 to k = 1000
    mean, se = c["two_log_px_proposals"]
    assert abs(mean) < 0.05 and abs(mean) < 3 * se + 0.01  # the two proposals agree
