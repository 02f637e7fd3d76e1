"""Checks for assignment A1, log densities (``A1_log_densities``).

Exercises: a diagonal Gaussian log-density with broadcasting (``check_normal_logpdf``); a
Bernoulli log-likelihood stable at logits ±1e4 (``check_bernoulli_logpmf``); a stable logsumexp
that handles −inf and all −inf slices (``check_logsumexp``).
"""

import math

import numpy as np

from ..distributions import bernoulli_logpmf as _ref_bernoulli
from ..distributions import normal_logpdf as _ref_normal
from ..numerics import logsumexp as _ref_logsumexp
from .checks import SIGN_HINT, is_negated, run_cases


def check_normal_logpdf(student, points=3):
    """student(x, mean, log_std) = Σ_d log N(x_d; mean_d, exp(log_std_d)²), broadcasting."""
    rng = np.random.default_rng(0)

    def diagnose(expected, actual, args):
        same_shape = actual.shape == expected.shape
        if same_shape and is_negated(expected, actual):
            return SIGN_HINT
        shape = np.broadcast_shapes(*(np.shape(a) for a in args))
        log_std_sum = np.sum(np.broadcast_to(args[2], shape), -1)
        if same_shape and np.allclose(actual - expected, log_std_sum, atol=1e-7):
            return (
                "off by exactly +Σ log σ: the −log σ term is missing (the density of "
                "x = μ + σε is the density of ε divided by σ)"
            )
        event = np.shape(args[0])[-1]
        if same_shape and np.allclose(
            actual - expected, 0.5 * math.log(2 * math.pi) * event, atol=1e-7
        ):
            return (
                "off by exactly (d/2) log 2π: the normalizing constant −½ log 2π per dimension "
                "is missing"
            )
        if actual.shape == expected.shape[:-1] or actual.shape == expected.shape + (event,):
            return "sum over the last axis (the event dimensions) and only that axis"
        return None

    cases = []
    x, mean, log_std = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    cases.append(
        (
            "x, mean, log_std of shape (4, 3)",
            (x, mean, log_std),
            _ref_normal(x, mean, log_std),
            diagnose,
        )
    )
    mean_k = rng.normal(size=(5, 4, 3))
    cases.append(
        (
            "broadcast: x (4, 3) against mean (5, 4, 3) -> (5, 4)",
            (x, mean_k, log_std),
            _ref_normal(x, mean_k, log_std),
            diagnose,
        )
    )
    scale = np.full((4, 3), 1.5)
    cases.append(
        ("log_std = 1.5 everywhere", (x, mean, scale), _ref_normal(x, mean, scale), diagnose)
    )
    for extreme in (-50.0, 50.0):
        ls = np.full((1, 2), extreme)
        xs, ms = np.array([[0.3, -1.0]]), np.array([[0.3, -1.0 + 1e-22]])
        cases.append(
            (f"extreme log_std = {extreme}", (xs, ms, ls), _ref_normal(xs, ms, ls), diagnose)
        )
    return run_cases("normal_logpdf", points, cases, student)


def check_bernoulli_logpmf(student, points=3):
    """student(x, logits) = Σ_d log Bern(x_d; sigmoid(logits_d)), stable for |logits| up to 1e4."""
    rng = np.random.default_rng(1)

    def diagnose(expected, actual, args):
        if actual.shape == expected.shape and is_negated(expected, actual):
            return SIGN_HINT
        if np.any(~np.isfinite(actual)) and np.max(np.abs(args[1])) > 700:
            return (
                "inf or NaN at large |logits|: log(sigmoid(l)) overflows in exp; use "
                "log σ(t) = min(t, 0) − log1p(exp(−|t|))"
            )
        return None

    x = (rng.random((4, 6)) < 0.5) * 1.0
    logits = rng.normal(scale=3, size=(4, 6))
    cases = [
        ("x (4, 6) binary, logits ~ N(0, 9)", (x, logits), _ref_bernoulli(x, logits), diagnose)
    ]
    logits_k = rng.normal(size=(3, 4, 6))
    cases.append(
        (
            "broadcast: x (4, 6) against logits (3, 4, 6) -> (3, 4)",
            (x, logits_k),
            _ref_bernoulli(x, logits_k),
            diagnose,
        )
    )
    extreme = np.array([[-1e4, 1e4, -1e4, 1e4, -40.0, 40.0]])
    xe = np.array([[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    cases.append(
        ("extreme logits ±1e4 and ±40", (xe, extreme), _ref_bernoulli(xe, extreme), diagnose)
    )
    return run_cases("bernoulli_logpmf", points, cases, student)


def check_logsumexp(student, points=4):
    """student(a, axis) = log Σ exp(a) over ``axis``, stable, −inf for an all −inf slice."""
    rng = np.random.default_rng(2)

    def diagnose(expected, actual, args):
        a, axis = args
        if actual.shape != expected.shape:
            if actual.size == expected.size:
                return (
                    f"expected shape {expected.shape}, got {actual.shape}: the reduced axis must "
                    "go (keepdims=False, or np.squeeze(..., axis=axis) at the end)"
                )
            other = 1 - axis if a.ndim == 2 else None
            if other is not None and actual.shape == expected.shape[:0] + (a.shape[axis],):
                return f"you reduced over axis {other}; reduce over axis {axis}"
            return (
                f"expected shape {expected.shape}, got {actual.shape}: reduce over the given "
                "axis only, and return the result (not a Python loop's list)"
            )
        overflowed = np.any(~np.isfinite(actual) & np.isfinite(expected))
        if overflowed and np.max(np.abs(a[np.isfinite(a)])) > 700:
            return (
                "inf or NaN for inputs around ±1000: exp overflows or underflows; subtract the "
                "maximum first: log Σ exp(a) = m + log Σ exp(a − m)"
            )
        if np.any(np.isnan(actual)) and np.any(np.isneginf(a)):
            return (
                "NaN for a slice that is all −inf: shifting by m = −inf gives −inf − (−inf); "
                "shift such slices by 0 instead"
            )
        return None

    a = rng.normal(size=(5, 3))
    cases = [
        ("a of shape (5, 3), axis 0", (a, 0), _ref_logsumexp(a, axis=0), diagnose),
        ("a of shape (5, 3), axis 1", (a, 1), _ref_logsumexp(a, axis=1), diagnose),
    ]
    big = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1001.0]]).T
    cases.append(
        (
            "large values ±1000 (overflow / underflow), axis 0",
            (big, 0),
            _ref_logsumexp(big, axis=0),
            diagnose,
        )
    )
    neg = np.array([[-np.inf, -np.inf], [-np.inf, 0.5], [-np.inf, 2.0]])
    cases.append(
        (
            "−inf entries and an all −inf column, axis 0",
            (neg, 0),
            _ref_logsumexp(neg, axis=0),
            diagnose,
        )
    )
    one = rng.normal(size=(1, 4))
    cases.append(("a single row (k = 1), axis 0", (one, 0), _ref_logsumexp(one, axis=0), diagnose))
    return run_cases("logsumexp", points, cases, student)
