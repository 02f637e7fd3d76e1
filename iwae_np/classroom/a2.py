"""Checks for assignment A2, the ELBO and classic VI (``A2_elbo_and_classic_vi``).

Exercises: a Monte Carlo ELBO (``check_elbo_estimate``); the Gaussian ELBO's gradient derived by
hand, checked against finite differences (``checks.check_gradient``); classic VI with that
gradient, reaching the best diagonal Gaussian (``checks.check_value``). The last two are generic
checks the notebook calls from ``checks`` with its own function and inputs.
"""

import numpy as np

from ..bounds import elbo as _ref_elbo
from .checks import SIGN_HINT, is_negated, run_cases


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
