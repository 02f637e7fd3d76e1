"""Checks for assignment A4, amortized inference (``A4_amortized_inference``).

Exercises: a VAE's log-weights from its encoder and decoder (``check_log_weights``); training an
encoder for a linear-Gaussian model (``check_trained_encoder``); measuring its amortization and
approximation gaps (``check_gaps``, one graded test per gap).

The gaps are checked against exact answers computed here in closed form (``exact_gaps``), on
encoders the student did not train (``probes``): a number copied from a check cell, or the
formula for the exact gap, does not pass for an encoder it was not made for.
"""

import numpy as np

from .checks import (
    HIDDEN,
    SIGN_HINT,
    CheckResult,
    Memo,
    conceal,
    describe_error,
    is_negated,
    run_cases,
    show,
    verdict,
)


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


def exact_gaps(lg, theta, x):
    """The exact (amortization gap, approximation gap) in nats of the encoder in ``theta`` for the
    linear-Gaussian model ``lg`` (an ``iwae_np.data.LinearGaussian``), averaged over the points x.

    The ELBO of a Gaussian q is log p(x) − KL(q ‖ p(z|x)), and p(z|x) = N(m, Σ) is known, so
    amortization gap = mean KL(q_encoder ‖ p) − KL(q* ‖ p) and approximation gap = KL(q* ‖ p),
    with q* the best diagonal Gaussian: mean m, variances 1/diag(Σ⁻¹)."""
    mean_q, log_std_q = lg.model.encode(theta, x)
    mean_p, cov = lg.posterior(x)
    precision = np.linalg.inv(cov)
    d = cov.shape[0]
    diff = mean_q - mean_p
    kl = 0.5 * (
        np.exp(2 * log_std_q) @ np.diag(precision)
        + np.einsum("ni,ij,nj->n", diff, precision, diff)
        - d
        + np.linalg.slogdet(cov)[1]
        - 2 * np.sum(log_std_q, axis=-1)
    )
    best = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    return float(np.mean(kl) - best), float(best)


def encoder_slices(model):
    """The (start, stop) ranges of θ that hold the encoder's parameters."""
    return [
        (start, stop)
        for name, (start, stop, _) in model.layout.blocks.items()
        if name.startswith("encoder")
    ]


def check_trained_encoder(lg, theta, x, points=2, tolerance=0.03):
    """θ from training only the encoder of ``lg.model``: its decoder is still the true one, and
    its exact amortization gap on x (``exact_gaps``) is at most ``tolerance`` nats."""
    name = "trained_encoder"
    expected = np.asarray(lg.theta)
    try:
        theta = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        theta = None
    if theta is None or theta.shape != expected.shape or not np.all(np.isfinite(theta)):
        message = (
            f"  expected θ: an array of shape {expected.shape} with finite values, got "
            f"{show(theta)}\n  hint: return result.theta from iw.train.train"
        )
        return CheckResult(name, False, 0.0, points, message, 0, 2)
    decoder = np.ones(expected.shape, bool)
    for start, stop in encoder_slices(lg.model):
        decoder[start:stop] = False
    if not np.allclose(theta[decoder], expected[decoder]):
        message = (
            "  the decoder part of θ changed\n  hint: train the encoder only "
            '(update="encoder"): the decoder is the true model'
        )
        return CheckResult(name, False, 0.0, points, message, 0, 2)
    gap, _ = exact_gaps(lg, theta, x)
    ok = gap <= tolerance
    message = (
        f"  exact amortization gap of your encoder on x_new: {gap:.4f} nats (at most {tolerance:g})"
    )
    if not ok:
        message += (
            "\n  hint: a linear encoder can reach the best diagonal Gaussian here: train longer, "
            "with the ELBO, on x_train"
        )
    return CheckResult(name, ok, points if ok else 0.0, points, message, 1 + ok, 2)


def best_encoder(lg):
    """θ whose linear encoder gives every x its best diagonal Gaussian: the exact posterior mean
    (linear in x) and the variances 1/diag(Σ⁻¹). Its amortization gap is 0."""
    z_dim = lg.W.shape[0]
    precision = np.eye(z_dim) + lg.W @ lg.W.T / lg.noise_std**2
    to_mean = lg.W.T @ np.linalg.inv(precision) / lg.noise_std**2  # m = (x − b) A
    weights = np.zeros((lg.W.shape[1], 2 * z_dim))
    weights[:, :z_dim] = to_mean
    bias = np.concatenate([-lg.b @ to_mean, -0.5 * np.log(np.diag(precision))])
    theta = np.array(lg.theta, dtype=float)
    theta[lg.model.layout.slice("encoder.0.W")] = weights.ravel()
    theta[lg.model.layout.slice("encoder.0.b")] = bias
    return theta


def probe(lg, seed, scale=0.1):
    """An encoder to measure gaps on, with exact answers: (label, θ), the best encoder
    (``best_encoder``) with its weights moved by N(0, scale²) noise drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    theta = best_encoder(lg)
    for start, stop in encoder_slices(lg.model):
        theta[start:stop] += rng.normal(scale=scale, size=stop - start)
    return f"an encoder with perturbed weights (seed {seed})", theta


def check_gaps(measure, lg, x, encoders, which, points=1, tolerance=0.05, hidden=False):
    """measure(lg, theta, x) = (amortization gap, approximation gap) measured for the encoder in θ,
    checked against ``exact_gaps`` for each (label, θ) in ``encoders`` (see ``probe``).

    which: "amortization" or "approximation", the number this check grades. Each call is
    remembered (``checks.Memo``), so the two checks of one encoder share one measurement. The
    tolerance is ``tolerance`` nats plus 3% of the exact gap (the measurement is Monte Carlo)."""
    index = {"amortization": 0, "approximation": 1}[which]
    hints = {
        "amortization": (
            "amortization gap = mean over points of ELBO[q*] − ELBO[encoder]: run classic VI "
            "(iw.vi.fit_local) from the encoder's λ to get q*, and estimate both ELBOs with "
            "iw.evaluate.expected_bound"
        ),
        "approximation": (
            "approximation gap = mean over points of log p(x) − ELBO[q*]; use lg.log_marginal "
            "for log p(x)"
        ),
    }

    def attempt(item):
        label, theta = item
        key = ("gaps", label, hash(np.asarray(theta).tobytes()), hash(np.asarray(x).tobytes()))
        try:
            result = Memo.call(measure, key, lg, theta, x)
        except Exception as error:
            return f"  encoder: {label}\n  your function {describe_error(error)}"
        try:
            values = np.asarray(result, dtype=float).ravel()
        except (TypeError, ValueError):
            values = np.zeros(0)
        if values.shape != (2,):
            return (
                f"  encoder: {label}\n  got: {show(result)}\n  hint: return two numbers, "
                "(amortization_gap, approximation_gap)"
            )
        exact = exact_gaps(lg, theta, x)[index]
        allowed = tolerance + 0.03 * abs(exact)
        if np.isfinite(values[index]) and abs(values[index] - exact) <= allowed:
            return None
        hint = hints[which]
        if abs(values[index] + exact) <= allowed and abs(exact) > allowed:
            hint = SIGN_HINT
        elif abs(values[1 - index] - exact) <= allowed:
            hint = (
                "this is the other gap: return (amortization_gap, approximation_gap) in that order"
            )
        return (
            f"  encoder: {label}\n  expected {which} gap: {exact:.4f} ± {allowed:.3f}\n"
            f"  got:      {values[index]:.4f}\n  hint: {hint}"
        )

    name = f"{which}_gap" + (HIDDEN if hidden else "")
    result = verdict(
        name,
        points,
        encoders,
        attempt,
        f"  within tolerance of the exact gap for {len(encoders)} encoders",
    )
    if hidden:
        safe = [
            hints[which],
            SIGN_HINT,
            "this is the other gap: return (amortization_gap, approximation_gap) in that order",
            "return two numbers, (amortization_gap, approximation_gap)",
        ]
        result = conceal(result, safe, hints[which])
    return result
