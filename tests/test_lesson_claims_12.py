"""Lesson 12 (the cost of amortization): the claims its text makes, checked against the numbers
its cells print (``CLAIM name=value``; see tests/test_lesson_claims.py for the scheme).

Section 1's timings are medians over alternated rounds at one BLAS thread, section 3's costs
are CPU times of one run each; their checks ask only for directions, or for bands wide enough
to hold on a slow or busy machine. The gaps are computed without Monte Carlo noise
(Gauss–Hermite quadrature), and their checks are orderings, ratios and standard-error bands
with margins that held across the encoders' starting seeds (0, 3, 6, 9, 12) and the shifted
data's seeds (1 to 5) when the lesson was written.
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
    # "the break-even is tiny here, of the order of one point, not thousands" (n* from the
    # medians, where the figure's two median lines cross; every round's own n* as well)
    assert 0.05 < c["break_even_n"] < 20
    assert c["break_even_n_rounds_max"] < 20
    # "encoding a point is thousands of times cheaper than fitting it"
    assert c["classic_over_encode"] > 1000
    # "the amortized line stays nearly flat up to about a thousand points": encoding 1000
    # points at most doubles the cost of training
    assert c["train_over_encode"] > 1000
    # "a training step ... and a classic VI step on one point cost the same order of time"
    assert 0.1 < c["classic_step_over_train_step"] < 10


@pytest.mark.notebook
def test_12_fitting_points_together_raises_the_break_even(claims):
    # "put that per-point cost into the formula and n* comes out many times larger"
    assert claims["batched_over_single_break_even"] > 3
    assert claims["break_even_batched_n"] > claims["break_even_n"]
    # "the square at n = 30 ... lies above the amortized line"
    assert claims["batch_cost_over_amortized"] > 1


@pytest.mark.notebook
def test_12_the_encoder_is_nearly_as_good_as_classic_vi(claims):
    # "its shortfall from q* is a hundredth or two of a nat per point, and classic VI's is
    # smaller still"
    assert 0.002 < claims["encoder_shortfall"] < 0.05
    assert 0 <= claims["classic_shortfall"] < claims["encoder_shortfall"]


# ---------------------------------------------------------------- 2. capacity

LINEAR, NARROW, WIDEST, WIDEST_MORE_DATA = 0, 1, 2, 3


@pytest.mark.notebook
def test_12_the_noise_free_references_pass_their_checks(claims):
    c = claims
    # log p(x) "exact by quadrature": a finer, wider grid changes it by far less than the
    # tenths of a nat the gaps are made of
    assert c["log_px_grid_difference"] < 1e-6
    assert c["q_star_converged"] == 1.0  # "Newton converged for 100% of the points"
    # "Gauss–Hermite quadrature computes [the ELBO] with 12² nodes to within 1e-3 nats or better"
    assert c["q_star_quadrature_error"] < 1e-3 and c["encoder_quadrature_error"] < 1e-3
    assert c["q_star_mc_z"] < 5  # Monte Carlo agrees within its noise (125 points)
    # "a Monte Carlo ELBO for one point, from one draw, scatters by more than" a few tenths
    assert c["single_draw_std"] > 0.3
    assert c["approximation_gap_min"] > 0  # log p(x) > ELBO[q*] at every point
    assert c["sweep_min_gap"] > 0  # "no encoder found a better q than q*"


@pytest.mark.notebook
def test_12_a_hidden_layer_shrinks_the_training_gap_more_than_the_held_out_gap(claims):
    train, held = claims["sweep_train_gap"], claims["sweep_held_gap"]
    assert len(train) == len(held) == 4
    for hidden in (NARROW, WIDEST):
        # "the amortization gaps of both encoders with a hidden layer are several times smaller
        # than the linear encoder's"
        assert train[hidden] * 3 < train[LINEAR], hidden
        # "on held-out points the hidden-layer encoders are still better ... by a smaller factor"
        assert held[hidden] < held[LINEAR], hidden
        assert held[LINEAR] / held[hidden] < train[LINEAR] / train[hidden], hidden
    # every gap is a shortfall from the best q, so positive
    assert np.all(train > 0) and np.all(held > 0)


@pytest.mark.notebook
def test_12_the_hidden_layer_encoders_overfit_25_points(claims):
    train, held = claims["sweep_train_gap"], claims["sweep_held_gap"]
    train_se, held_se = claims["sweep_train_se"], claims["sweep_held_se"]
    difference_se = np.hypot(train_se, held_se)
    for hidden in (NARROW, WIDEST):
        # "for each of them the held-out gap is over twice its training gap, a difference of
        # well over two standard errors"
        assert held[hidden] > 2 * train[hidden], hidden
        assert held[hidden] - train[hidden] > 2.5 * difference_se[hidden], hidden
    # "for the linear encoder these numbers cannot decide": "its held-out and training gaps
    # differ by less than two standard errors, but ... the standard error of its training gap is
    # several times theirs, and two standard errors either side of its difference reach beyond
    # the hidden-layer encoders' differences"
    linear_difference = held[LINEAR] - train[LINEAR]
    assert abs(linear_difference) < 2 * difference_se[LINEAR]
    assert train_se[LINEAR] > 3 * max(train_se[NARROW], train_se[WIDEST])
    for hidden in (NARROW, WIDEST):
        assert linear_difference + 2 * difference_se[LINEAR] > held[hidden] - train[hidden], hidden


@pytest.mark.notebook
def test_12_more_data_cures_the_overfitting(claims):
    train, held = claims["sweep_train_gap"], claims["sweep_held_gap"]
    train_se, held_se = claims["sweep_train_se"], claims["sweep_held_se"]
    # "a clearly smaller held-out gap than with 25 (... the difference is more than twice its
    # standard error, taken point by point over the same held-out points)"
    difference, se = claims["cure_held_gap_difference"]
    assert difference == pytest.approx(held[WIDEST] - held[WIDEST_MORE_DATA], abs=1e-4)
    assert difference > 2 * se
    assert held[WIDEST_MORE_DATA] < 0.75 * held[WIDEST]
    # "its held-out and training gaps agree within their standard errors"
    gap = held[WIDEST_MORE_DATA] - train[WIDEST_MORE_DATA]
    assert abs(gap) < np.hypot(train_se[WIDEST_MORE_DATA], held_se[WIDEST_MORE_DATA])


@pytest.mark.notebook
def test_12_the_starts_can_be_far_apart(claims):
    # "after 100 steps the starts of one encoder can be far apart": by more than the widest
    # encoder's whole final training gap
    assert claims["starts_spread_max"] > claims["sweep_train_gap"][WIDEST]


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
def test_12_refinement_helps_most_points_and_leaves_the_old_ones(claims):
    c = claims
    before, ten, fifty = c["before_gaps"], c["refine10_gaps"], c["refine50_gaps"]
    for batch in (0, 2):  # the arrived and the later points: "more with more steps"
        assert fifty[batch] < ten[batch] < before[batch], batch
    assert ten[1] == before[1] and fifty[1] == before[1]  # "cannot hurt the old points"
    # the medians over each new batch: "from about a nat or more to a tenth or two with K = 10,
    # and to a few thousandths of a nat with K = 50"
    assert np.all(c["before_medians"] > 0.5)
    assert np.all(c["refine10_medians"] < 0.4) and np.all(c["refine10_medians"] > 0.04)
    assert np.all(c["refine50_medians"] < 0.01) and np.all(c["refine50_medians"] > 0.001)
    # "with K = 10 a few points ended with a larger gap than they started with; with K = 50,
    # none or almost none did"
    worse10, worse50 = c["refine10_worse"].sum(), c["refine50_worse"].sum()
    assert 1 <= worse10 <= 15
    assert worse50 <= 2 and worse50 < worse10
    # "the means stay above the medians" (after K = 50, on both new batches)
    assert fifty[0] > c["refine50_medians"][0] and fifty[2] > c["refine50_medians"][1]


@pytest.mark.notebook
def test_12_retraining_keeps_the_old_points_and_costs_the_most(claims):
    c = claims
    before, tuned, fresh = c["before_gaps"], c["finetune_gaps"], c["retrain_gaps"]
    assert fresh[0] < before[0] and fresh[2] < before[2]  # "improves the new ones"
    assert fresh[1] < 0.5 * tuned[1]  # "stays far below the fine-tuned encoder's"
    # the paired differences (mean, s.e. for the arrived, old and later points) match the means
    for key, a, b in (
        ("retrain_minus_before", fresh, before),
        ("retrain_minus_finetune", fresh, tuned),
        ("finetune_minus_before", tuned, before),
    ):
        means = c[f"paired_{key}"][::2]
        np.testing.assert_allclose(means, np.asarray(a) - np.asarray(b), atol=1e-4)
    # "but it is above the old encoder's, by more than two standard errors of the paired
    # difference"
    mean, se = c["paired_retrain_minus_before"][2:4]
    assert mean > 2 * se
    # "it did less than fine-tuning for the new points: on both batches it left the larger gap at
    # more than four in five of the points, and the larger mean gap, by about two standard errors
    # or more"
    paired = c["paired_retrain_minus_finetune"]
    larger = c["paired_retrain_minus_finetune_larger"]
    for batch in (0, 2):  # the arrived and the later points (50 each)
        assert larger[batch] > 40, batch
        mean, se = paired[2 * batch : 2 * batch + 2]
        assert mean > 1.8 * se, batch
    # fine-tuning "closes most of the gap" on the new points and "forgets" the old: each paired
    # difference is clear of its standard error
    paired = c["paired_finetune_minus_before"]
    assert paired[0] < -2 * paired[1] and paired[4] < -2 * paired[5]
    assert paired[2] > 2 * paired[3]
    # "it takes by far the longest to adapt: 600 steps against fine-tuning's 100"
    assert claims["retrain_seconds"] > 2 * claims["finetune_seconds"]
    assert claims["retrain_seconds"] > claims["refine50_seconds"]


@pytest.mark.notebook
def test_12_refining_k50_wins_on_the_new_batches_and_learning_pays_late(claims):
    c = claims
    # "refining with K = 50 left by far the smallest median gaps on both new batches"
    for other in ("before", "finetune", "refine10", "retrain"):
        assert np.all(c["refine50_medians"] * 3 < c[f"{other}_medians"]), other
    # "for a fraction of a second of CPU time per batch"
    assert c["refine50_later_seconds"] < 1
    # "in CPU time, fine-tuning cost as much as refining one to a few batches, and retraining
    # several times as much as fine-tuning"; "the order, refining a batch < fine-tuning <
    # retraining" (fine-tuning: the median of 3 rounds alternated with refining; retraining: one
    # run; load slows computations by different amounts, so wide bands)
    finetune, retrain = c["finetune_in_refined_batches"], c["retrain_in_refined_batches"]
    assert 1 < finetune < 5
    assert retrain > 2.5 * finetune
    # "here both bought a looser bound" (than refining with K = 50, on both new batches)
    for other in ("finetune", "retrain"):
        assert c[f"{other}_gaps"][0] > c["refine50_gaps"][0], other
        assert c[f"{other}_gaps"][2] > c["refine50_gaps"][2], other
        # "they left a larger gap than refining with K = 50 at nearly every new point"
        larger = c[f"paired_{other}_minus_refine50_larger"]
        assert larger[0] >= 45 and larger[2] >= 45, other
        # "their mean differences stand out less against their standard errors where refining's
        # single worst point carries most of its batch's mean" (the arrived batch)
        paired = c[f"paired_{other}_minus_refine50"]
        assert paired[0] / paired[1] < paired[4] / paired[5], other
    shares = c["refine50_largest_share"]
    assert shares[0] > 0.5 and shares[0] > shares[1]
