"""The package's versions of two lesson exercises, which a student copy falls back on while the
exercise is unsolved: ``bounds.sir_resample`` (lesson 06) and ``app.experiments.median_seconds``
(lesson 07). Each is checked against an independent computation."""

import time

import numpy as np
import pytest
import scipy.special
import scipy.stats

from iwae_np.app.experiments import median_seconds
from iwae_np.bounds import sir_resample


def test_sir_picks_the_same_index_as_a_loop_over_groups():
    rng = np.random.default_rng(0)
    k, m = 7, 500
    z = rng.normal(size=(k, m, 3))
    log_w = rng.normal(scale=4, size=(k, m)) - 300  # far from 0: softmax must shift
    picked = sir_resample(z, log_w, np.random.default_rng(1))
    u = np.random.default_rng(1).random(m)  # the same uniforms, one per group
    for j in range(m):  # independent: scipy's softmax and searchsorted, group by group
        cumulative = np.cumsum(scipy.special.softmax(log_w[:, j]))
        i = np.searchsorted(cumulative, u[j] * cumulative[-1], side="right")
        np.testing.assert_array_equal(picked[j], z[i, j])


def test_sir_frequencies_follow_the_normalized_weights():
    weights = np.array([0.1, 0.0, 0.6, 0.3])
    m = 40000
    z = np.broadcast_to(np.arange(4.0)[:, None, None], (4, m, 1))
    with np.errstate(divide="ignore"):
        log_w = np.broadcast_to(np.log(weights)[:, None], (4, m)) + 5.0
    picked = sir_resample(z, log_w, np.random.default_rng(2))[:, 0].astype(int)
    counts = np.bincount(picked, minlength=4)
    assert counts[1] == 0  # a zero weight is never picked
    keep = weights > 0
    chi2 = scipy.stats.chisquare(counts[keep], m * weights[keep]).pvalue
    assert chi2 > 1e-4


def test_sir_edge_cases():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(1, 5, 2))
    np.testing.assert_array_equal(sir_resample(z, np.zeros((1, 5)), rng), z[0])  # k = 1: q
    z = rng.normal(size=(2, 5, 2))
    dominated = np.array([[-1e4] * 5, [0.0] * 5])
    np.testing.assert_array_equal(sir_resample(z, dominated, rng), z[1])
    with pytest.raises(ValueError, match="log_w: expected at least one finite log-weight"):
        sir_resample(z, np.array([[0.0] * 4 + [-np.inf], [0.0] * 4 + [-np.inf]]), rng)
    with pytest.raises(ValueError, match="z: expected shape"):
        sir_resample(z[:, :4], np.zeros((2, 5)), rng)
    with pytest.raises(ValueError, match="log_w: expected shape"):
        sir_resample(z, np.zeros(2), rng)
    with pytest.raises(ValueError, match="rng"):
        sir_resample(z, np.zeros((2, 5)), 0)


def test_median_seconds_is_the_median_of_the_calls():
    calls = []
    durations = [0.06, 0.0, 0.0, 0.0, 0.0]  # one slow call: the mean would be 12 ms

    def f():
        time.sleep(durations[len(calls)])
        calls.append(1)

    assert median_seconds(f, repeats=5) < 0.01
    assert len(calls) == 5
    assert median_seconds(lambda: time.sleep(0.01), repeats=3) >= 0.01  # sleep is a lower bound
    # a scripted clock: five calls lasting 1, 2, 1, 10 and 2 seconds have median 2 (mean 3.2)
    ticks = iter([0.0, 1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 14.0, 14.0, 16.0])
    assert median_seconds(lambda: None, repeats=5, clock=lambda: next(ticks)) == 2.0
    # CPU time does not count sleeping: the process computes nothing meanwhile
    assert median_seconds(lambda: time.sleep(0.02), repeats=3, clock=time.process_time) < 0.01


def test_median_seconds_refuses_bad_arguments():
    with pytest.raises(ValueError, match="repeats: expected an integer >= 1"):
        median_seconds(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="f: expected a function"):
        median_seconds(3)
    with pytest.raises(ValueError, match="clock: expected a function"):
        median_seconds(lambda: None, clock=0.0)
