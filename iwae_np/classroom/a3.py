"""Checks for assignment A3, the IWAE bound (``A3_iwae_bound``).

Exercises: the IWAE bound vectorized over k (``check_iwae_bound``); normalized importance
weights (``check_normalized_weights``); the gradient Σ w̃ᵢ ∇ log wᵢ, checked against finite
differences (``check_iwae_gradient``).
"""

import math

import numpy as np

from ..bounds import iwae_bound as _ref_iwae_bound
from ..gradcheck import gradcheck as _gradcheck
from ..numerics import logsumexp as _ref_logsumexp
from .checks import SIGN_HINT, constant_offset, is_negated, run_cases


def check_iwae_bound(student, points=4):
    """student(log_w) = log (1/k) Σ_i exp(log_w_i) over axis 0 (k first): (k, ...) -> (...)."""
    rng = np.random.default_rng(3)

    def diagnose(expected, actual, args):
        log_w = args[0]
        k = log_w.shape[0]
        if actual.shape != expected.shape:
            return (
                "reduce over axis 0, the k samples; the remaining axes are data points "
                f"(log_w has shape {log_w.shape}, so the result has shape {expected.shape})"
            )
        offset = constant_offset(expected, actual)
        if offset is not None and k > 1 and abs(offset - math.log(k)) < 1e-7:
            return (
                "off by exactly log k: you computed log Σ w_i; the bound averages the weights, "
                "log (1/k) Σ w_i = logsumexp − log k"
            )
        if is_negated(expected, actual):
            return SIGN_HINT
        if np.allclose(actual, np.mean(log_w, axis=0)) and k > 1:
            return (
                "this is the ELBO (the mean of log w), not the IWAE bound (the log of the mean "
                "of w)"
            )
        if np.any(~np.isfinite(actual) & np.isfinite(expected)):
            return (
                "inf or NaN for large or very negative log-weights: exponentiate after "
                "subtracting the maximum over k (a stable logsumexp)"
            )
        return None

    cases = []
    for shape, label in (
        ((7, 4), "log_w (7, 4): k = 7 samples, 4 points"),
        ((1, 5), "k = 1: the bound equals the ELBO"),
        ((6, 2, 3), "log_w (6, 2, 3): extra data axes"),
    ):
        log_w = rng.normal(scale=2, size=shape)
        cases.append((label, (log_w,), _ref_iwae_bound(log_w), diagnose))
    low = rng.normal(size=(50, 3)) - 1000  # every exp(log w) underflows to 0
    cases.append(
        ("log-weights around −1000 (exp underflows)", (low,), _ref_iwae_bound(low), diagnose)
    )
    high = rng.normal(size=(50, 3)) + 800  # every exp(log w) overflows to inf
    cases.append(
        ("log-weights around +800 (exp overflows)", (high,), _ref_iwae_bound(high), diagnose)
    )
    with_inf = np.array([[-np.inf, 0.3], [1.0, -np.inf], [-np.inf, 2.0]])
    cases.append(
        ("some weights exactly 0 (log_w = −inf)", (with_inf,), _ref_iwae_bound(with_inf), diagnose)
    )
    return run_cases("iwae_bound", points, cases, student)


def check_normalized_weights(student, points=2):
    """student(log_w) = w̃ = softmax of log_w over axis 0: (k, n) -> (k, n), columns sum to 1."""
    rng = np.random.default_rng(4)

    def reference(log_w):
        shifted = np.exp(log_w - _ref_logsumexp(log_w, axis=0, keepdims=True))
        return shifted

    def diagnose(expected, actual, args):
        if actual.shape == expected.shape and np.allclose(actual.sum(axis=1), 1):
            return "normalize over axis 0 (the k samples of each point), not axis 1"
        if np.any(~np.isfinite(actual)):
            return "inf or NaN for large log-weights: subtract the max over k before exponentiating"
        return None

    cases = []
    for label, log_w in (
        ("log_w (5, 3)", rng.normal(size=(5, 3))),
        ("log_w around +800", rng.normal(size=(4, 2)) + 800),
        ("k = 1", rng.normal(size=(1, 3))),
    ):
        cases.append((label, (log_w,), reference(log_w), diagnose))
    return run_cases("normalized_weights", points, cases, student)


def check_iwae_gradient(student, points=4):
    """student(jacobian, log_w) = Σ_i w̃_i ∇ log w_i, with jacobian (k, P) the gradients of the
    k log-weights. Checked against the reference and against finite differences of L_k."""
    rng = np.random.default_rng(5)
    cases = []
    for k, scale in ((6, 1.0), (1, 1.0), (30, 40.0)):
        A = rng.normal(size=(k, 4))
        b = rng.normal(scale=scale, size=k)
        lam = rng.normal(size=4)
        log_w = A @ lam + b - 0.5 * lam @ lam  # log-weights with a known Jacobian
        jacobian = A - lam[None, :]
        bound = lambda l, A=A, b=b: _ref_iwae_bound((A @ l + b - 0.5 * l @ l)[:, None])[0]
        # the expected value comes from finite differences, not from the formula
        report = _gradcheck(bound, lam)
        numeric = np.array([c[2] for c in report.checks])

        def diagnose(expected, actual, args, k=k):
            if actual.shape == expected.shape and is_negated(expected, actual):
                return SIGN_HINT
            if actual.shape == expected.shape and np.allclose(actual, args[0].mean(axis=0)):
                return (
                    "you averaged the gradients with weight 1/k (the ELBO's gradient); the "
                    "IWAE weights each ∇ log w_i by its normalized weight w̃_i"
                )
            if actual.shape != expected.shape:
                return f"return one gradient of shape ({args[0].shape[1]},): Σ_i w̃_i ∇ log w_i"
            return (
                "differs from finite differences of L_k: check that w̃ is the softmax of log_w "
                "over the k samples and that you weight the rows of the Jacobian"
            )

        cases.append(
            (
                f"k = {k}, log-weights of scale {scale}, jacobian ({k}, 4)",
                (jacobian, log_w),
                numeric,
                diagnose,
            )
        )
    # the expected values are finite differences, accurate to about 1e-9: compare at 1e-5
    return run_cases("iwae_gradient", points, cases, student, rtol=1e-5, atol=1e-7)
