"""Checks for assignment A2, the ELBO and classic VI (``A2_elbo_and_classic_vi``).

Exercises: a Monte Carlo ELBO (``check_elbo_estimate``); the Gaussian ELBO's gradient derived by
hand, checked against finite differences (the generic ``checks.check_gradient``, which the
notebook calls with its own function and inputs); classic VI by gradient ascent
(``check_fit_diagonal``), checked step by step with the true gradient in place of the student's.
"""

import autograd
import numpy as np

from ..bounds import elbo as _ref_elbo
from .checks import HIDDEN, SIGN_HINT, Call, conceal, is_negated, run_cases, substituted


def check_elbo_estimate(student, points=3):
    """student(log_joint, x, mean, log_std, eps) = (1/k) Σ_i [log p(x, z_i) − log q(z_i)], z_i =
    mean + exp(log_std) ε_i; log_joint(x, z): (n, d), (k, n, dz) -> (k, n); returns (n,)."""
    from ..data import linear_gaussian

    lg = linear_gaussian(n=4, x_dim=3, z_dim=2, noise_std=0.5, seed=7)
    log_joint = lambda x, z: lg.model.log_joint(lg.theta, x, z)
    rng = np.random.default_rng(6)

    def reference(x, mean, log_std, eps):
        return _ref_elbo(lg.model.log_weights_given(lg.theta, x, mean, log_std, eps))

    def diagnose(expected, actual, args):
        _, x, mean, log_std, eps = args
        if actual.shape != expected.shape:
            return "average over axis 0 (the k samples) and return one ELBO per point, shape (n,)"
        if is_negated(expected, actual):
            return SIGN_HINT
        log_std_sum = np.sum(np.broadcast_to(log_std, mean.shape), -1)
        if np.allclose(actual - expected, -log_std_sum, atol=1e-7):
            return (
                "off by exactly −Σ log σ: you used the density of ε, log N(ε; 0, I), where "
                "log q(z|x) belongs; log q(z|x) = log N(ε; 0, I) − Σ log σ"
            )
        return None

    cases = []
    for label, k, shift in (
        ("k = 10 samples, 4 points", 10, 0.0),
        ("k = 1", 1, 0.0),
        ("log_std = −2 (a narrow q)", 5, -2.0),
    ):
        mean = rng.normal(size=(4, 2))
        log_std = rng.normal(scale=0.3, size=(4, 2)) + shift
        eps = rng.standard_normal((k, 4, 2))
        cases.append(
            (
                label,
                (log_joint, lg.x, mean, log_std, eps),
                reference(lg.x, mean, log_std, eps),
                diagnose,
            )
        )
    return run_cases("elbo_estimate", points, cases, student)


def check_fit_diagonal(
    student, objective, points=3, cases=((0, 0.05), (3, 0.1), (60, 0.05)), start=None, hidden=False
):
    """student(steps=…, lr=…) = the params after ``steps`` steps of gradient ascent on the ELBO
    from ``start`` (default zeros(4)) with step size ``lr``.

    The expected params are the same steps taken with the true gradient (autograd's, of
    ``objective``), and the student's function runs with that gradient in place of their own
    ``elbo_gradient`` (``checks.substituted``): a mistake in the gradient exercise costs no points
    here, and a function that returns the known optimum without taking the steps fails, since
    after 3 steps the params are nowhere near it."""
    start = np.zeros(4) if start is None else np.asarray(start, dtype=float)
    exact = autograd.grad(objective)
    seen = {}

    def true_gradient(params, *args, **kwargs):  # the student's calls revisit ascend's points
        params = np.asarray(params, dtype=float)
        key = params.tobytes()
        if key not in seen:
            seen[key] = exact(params, *args, **kwargs)
        return seen[key]

    def ascend(steps, lr, sign=1.0):
        params = start.copy()
        for _ in range(steps):
            params = params + sign * lr * true_gradient(params)
        return params

    def diagnose(expected, actual, args, steps=0, lr=0.0):
        if actual.shape != expected.shape:
            return f"return the params, an array of shape {expected.shape}"
        if steps and np.allclose(actual, ascend(steps, lr, -1.0), rtol=1e-6, atol=1e-9):
            return "you descended (params − lr·gradient); VI climbs the ELBO: params + lr·gradient"
        for other in (steps - 1, steps + 1):
            if other >= 0 and np.allclose(actual, ascend(other, lr), rtol=1e-6, atol=1e-9):
                return f"you took {other} steps instead of {steps}"
        if steps < 100 and np.allclose(actual, ascend(500, 0.2), atol=1e-3):
            return (
                "your result is the optimum whatever the number of steps: take exactly `steps` "
                "steps of size `lr` with the gradient"
            )
        return "start from the given params and take `steps` steps: params = params + lr·gradient"

    student = substituted(student, elbo_gradient=true_gradient)
    full = []
    for steps, lr in cases:
        full.append(
            (
                f"steps={steps}, lr={lr}",
                Call(steps=steps, lr=lr),
                ascend(steps, lr),
                lambda e, a, args, steps=steps, lr=lr: diagnose(e, a, args, steps, lr),
            )
        )
    name = "fit_diagonal" + (HIDDEN if hidden else "")
    result = run_cases(name, points, full, student, rtol=1e-6, atol=1e-9)
    if hidden:
        safe = [
            "start from the given params and take `steps` steps: params = params + lr·gradient",
            "you descended (params − lr·gradient); VI climbs the ELBO: params + lr·gradient",
            "your result is the optimum whatever the number of steps: take exactly `steps` "
            "steps of size `lr` with the gradient",
            "return the params, an array of shape (4,)",
        ]
        result = conceal(result, safe, safe[0])
    return result
