"""Checks for assignment A4, amortized inference (``A4_amortized_inference``).

Exercises: a VAE's log-weights from its encoder and decoder (``check_log_weights``); training an
encoder and measuring the amortization and approximation gaps against exact answers (graded with
the generic ``checks.check_value``, which the notebook calls with its measured gaps).
"""

import numpy as np

from .checks import SIGN_HINT, is_negated, run_cases


def check_log_weights(student, points=4):
    """student(model, theta, x, eps) = log p(x|z) + log p(z) − log q(z|x) with z = μ + σ ε and
    (μ, log σ) = model.encode(theta, x): (k, n)."""
    from ..models import VAE

    rng = np.random.default_rng(8)
    model = VAE(6, 2, hidden=(5,))
    x = (rng.random((3, 6)) < 0.5) * 1.0
    theta = model.init(seed=1, x=x)
    theta[model.layout.slice("encoder.1.b")] += rng.normal(scale=0.5, size=4)  # σ ≠ 1

    def diagnose(expected, actual, args):
        if actual.shape != expected.shape:
            return "return log-weights of shape (k, n): samples first, then points"
        if is_negated(expected, actual):
            return SIGN_HINT
        _, log_std = model.encode(theta, x)
        if np.allclose(actual - expected, -np.sum(log_std, -1), atol=1e-7):
            return (
                "off by exactly −Σ log σ: you used the density of ε where log q(z|x) belongs; "
                "log q(z|x) = log N(ε; 0, I) − Σ log σ"
            )
        eps = args[3]
        if np.allclose(eps, eps[:1]) and not np.allclose(actual, actual[:1]):
            return (
                "the k samples use the same ε but got different log-weights: q(z|x) must be "
                "the same for every sample. Encode x once, shape (n, z_dim), and broadcast it "
                "against ε (k, n, z_dim); if you repeat x k times, the reshape order must "
                "match"
            )
        return None

    eps = model.draw_eps(rng, 4, 3)
    same = np.repeat(eps[:1], 5, axis=0)
    # identical ε first: it tells a q that differs between samples apart from other mistakes
    cases = [
        (
            "k = 5 identical samples ε_1 = … = ε_5, 3 points",
            (model, theta, x, same),
            model.log_weights(theta, x, same),
            diagnose,
        ),
        (
            "k = 4 samples, 3 points",
            (model, theta, x, eps),
            model.log_weights(theta, x, eps),
            diagnose,
        ),
        ("k = 1", (model, theta, x, eps[:1]), model.log_weights(theta, x, eps[:1]), diagnose),
    ]
    return run_cases("log_weights", points, cases, student)
