"""Lesson 12 (the cost of amortization): the claims its text makes, checked against the numbers
its cells print (``CLAIM name=value``; see tests/test_lesson_claims.py for the scheme).

Timings are medians over alternated rounds at one BLAS thread; their checks ask only for
directions, or for bands wide enough to hold on a slow or busy machine. The gaps are computed
without Monte Carlo noise (Gauss–Hermite quadrature), and their checks are orderings and
ratios with margins that held across data and training seeds when the lesson was written.
"""

import numpy as np
import pytest

STEM = "12_the_cost_of_amortization"


@pytest.fixture
def claims(lesson_claims):
    return lesson_claims(STEM)


# ---------------------------------------------------------------- 1. the break-even


@pytest.mark.notebook
def test_12_break_even_is_of_order_one_point(claims):
    c = claims
    # "the break-even is tiny here, of the order of one point, not thousands"
    assert c["break_even_n_q1"] <= c["break_even_n"] <= c["break_even_n_q3"]
    assert 0.05 < c["break_even_n"] < 20
    # "encoding a point is thousands of times cheaper than fitting it"
    assert c["classic_over_encode"] > 1000
    # "a training step ... and a classic VI step on one point cost the same order of time"
    assert 0.1 < c["classic_step_over_train_step"] < 10


@pytest.mark.notebook
def test_12_fitting_points_together_raises_the_break_even(claims):
    # "fitted together ... the break-even against that cost is many times larger"
    assert claims["batched_over_single_break_even"] > 3
    assert claims["break_even_batched_n"] > claims["break_even_n"]


@pytest.mark.notebook
def test_12_the_encoder_is_nearly_as_good_as_classic_vi(claims):
    # "its shortfall from q* is a hundredth or two of a nat per point, and classic VI's is
    # smaller still"
    assert 0.002 < claims["encoder_shortfall"] < 0.05
    assert 0 <= claims["classic_shortfall"] < claims["encoder_shortfall"]


# ---------------------------------------------------------------- 2. capacity


@pytest.mark.notebook
def test_12_the_noise_free_references_pass_their_checks(claims):
    c = claims
    assert c["q_star_converged"] == 1.0  # "Newton converged for 100% of the points"
    # "Gauss–Hermite quadrature computes [the ELBO] with 12² nodes to within 1e-3 nats or better"
    assert c["q_star_quadrature_error"] < 1e-3 and c["encoder_quadrature_error"] < 1e-3
    assert c["q_star_mc_z"] < 5  # Monte Carlo agrees within its noise (125 points)
    # "a Monte Carlo ELBO for one point, from one draw, scatters by more than" a few tenths
    assert c["single_draw_std"] > 0.3
    assert c["approximation_gap_min"] > 0  # log p(x) > ELBO[q*] at every point
    assert c["sweep_min_gap"] > 0  # "no encoder found a better q than q*"


@pytest.mark.notebook
def test_12_capacity_shrinks_the_training_gap_more_than_the_held_out_gap(claims):
    train, held = claims["sweep_train_gap"], claims["sweep_held_gap"]
    linear, widest = 0, 3
    # "the amortization gap of the widest encoder is several times smaller than the linear's"
    assert train[widest] * 3 < train[linear]
    # "on held-out points the same two encoders differ by a smaller factor"
    assert held[linear] / held[widest] < train[linear] / train[widest]
    # "the widest encoder's held-out gap is over twice its training gap"
    assert held[widest] > 2 * train[widest]
    # "the difference between the two is larger for the widest encoder than for the linear one"
    assert held[widest] - train[widest] > held[linear] - train[linear]
    # every gap is a shortfall from the best q, so positive
    assert np.all(train > 0) and np.all(held > 0)


@pytest.mark.notebook
def test_12_more_data_cures_the_overfitting(claims):
    train, held = claims["sweep_train_gap"], claims["sweep_held_gap"]
    widest, widest_more_data = 3, 4
    # "a clearly smaller held-out gap than with 25"
    assert held[widest_more_data] < 0.75 * held[widest]
    # "about the same gap on held-out as on training points"
    overfit = held[widest] - train[widest]
    assert abs(held[widest_more_data] - train[widest_more_data]) < 0.5 * overfit


# ---------------------------------------------------------------- 3. new data


@pytest.mark.notebook
def test_12_the_shift_hurts_the_encoder(claims):
    # "their x lie at the edge of the old data, where the encoder saw few training points"
    assert claims["nearest_distance_ratio"] > 1.5
    arrived, old, later = claims["before_gaps"]
    # "the encoder's gap on the shifted points is several times its gap on the old ones"
    assert arrived > 2 * old and later > 2 * old


@pytest.mark.notebook
def test_12_fine_tuning_learns_the_new_region_and_forgets_the_old(claims):
    before, tuned = claims["before_gaps"], claims["finetune_gaps"]
    assert tuned[0] < 0.5 * before[0]  # "closes most of the gap on them"
    assert tuned[2] < 0.75 * before[2]  # "and a good part of it on the points that arrive later"
    assert tuned[1] > 3 * before[1]  # "its gap on the old points grows many-fold"


@pytest.mark.notebook
def test_12_refinement_helps_each_point_and_leaves_the_old_ones(claims):
    before, ten, fifty = claims["before_gaps"], claims["refine10_gaps"], claims["refine50_gaps"]
    assert fifty[0] < ten[0] < before[0]  # "closes the gap ..., more with more steps"
    assert ten[1] == before[1] and fifty[1] == before[1]  # "cannot hurt the old points"
    assert fifty[2] < before[2]  # the later points, refined in turn


@pytest.mark.notebook
def test_12_retraining_keeps_the_old_points_and_costs_the_most(claims):
    before, tuned, fresh = claims["before_gaps"], claims["finetune_gaps"], claims["retrain_gaps"]
    assert fresh[0] < before[0]  # "improves the new ones"
    assert fresh[1] < 0.5 * tuned[1]  # "stays far below the fine-tuned encoder's"
    assert tuned[0] < fresh[0]  # "it did less for them than fine-tuning did here"
    # "it takes by far the longest to adapt: 600 steps against fine-tuning's 100"
    assert claims["retrain_seconds"] > 2 * claims["finetune_seconds"]
    assert claims["retrain_seconds"] > claims["refine50_seconds"]
