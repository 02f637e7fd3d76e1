"""Checks that students call inside assignment notebooks, and the reports they produce.

A check runs the student's function on random and adversarial cases: extreme values, −inf,
k = 1, broadcast shapes. It compares each result with the package's reference and, for
gradients, with finite differences. On the first failing case it says which input broke, the
expected and the actual values, and a hint. Where the numbers match a known mistake, the hint
names it. The catalogue of mistakes and the numbers that give each away:

    sign error                     the result is exactly −expected
    naive logsumexp                inf or NaN on large inputs, right on small ones
    missing log k                  off by exactly log k
    mean over the wrong axis       the wrong shape, or the values of the other reduction
    dropped log σ term             off by exactly Σ log σ
    density of ε used for q(z|x)   off by exactly Σ log σ (in log-weights or the ELBO)
    encoder run k times            k identical ε that give different log-weights

Each check returns a CheckResult; ``result.require()`` raises AssertionError with the message,
which is how a graded notebook cell fails.
"""

import json
import math
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from ..bounds import elbo as _ref_elbo
from ..bounds import iwae_bound as _ref_iwae_bound
from ..distributions import bernoulli_logpmf as _ref_bernoulli
from ..distributions import normal_logpdf as _ref_normal
from ..gradcheck import gradcheck as _gradcheck
from ..numerics import logsumexp as _ref_logsumexp


@dataclass
class CheckResult:
    """The outcome of one check: passed, the points earned out of ``max_points``, and
    ``message``: what was checked, or which input broke with expected/actual and a hint."""

    name: str
    passed: bool
    points: float
    max_points: float
    message: str
    cases_passed: int = 0
    cases: int = 0

    def __post_init__(self):  # plain Python types, so the report is valid JSON
        self.passed, self.points, self.max_points = bool(self.passed), float(self.points), float(self.max_points)
        self.cases_passed, self.cases = int(self.cases_passed), int(self.cases)

    def __str__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"[{verdict}] {self.name}: {self.points:g}/{self.max_points:g} points "
                f"({self.cases_passed}/{self.cases} cases)\n{self.message}")

    def require(self):
        """Raise AssertionError carrying the message if the check failed (fails a graded cell)."""
        if not self.passed:
            raise AssertionError(str(self))
        print(self)
        return self


class _Failure(Exception):
    def __init__(self, case, expected, actual, hint):
        super().__init__(case)
        self.case, self.expected, self.actual, self.hint = case, expected, actual, hint


def _show(value):
    array = np.asarray(value)
    if array.size > 6:
        return f"array of shape {array.shape}, first values {np.array2string(array.ravel()[:4], precision=6)}"
    return np.array2string(array, precision=8) if array.ndim else f"{float(array):.10g}"


def _run(name, points, cases, student, rtol=1e-7, atol=1e-9):
    """Run (label, args, expected, diagnose) cases; stop at the first failure."""
    passed = 0
    for label, args, expected, diagnose in cases:
        try:
            actual = student(*args)
        except Exception as error:  # the student's code raised: report it as this case's failure
            where = traceback.extract_tb(error.__traceback__)[-1]
            return CheckResult(name, False, 0.0, points, (
                f"  input: {label}\n  your function raised {type(error).__name__}: {error}\n"
                f"  (at line {where.lineno}: {where.line})"), passed, len(cases))
        try:
            _compare(label, expected, actual, diagnose, args, rtol, atol)
        except _Failure as failure:
            return CheckResult(name, False, 0.0, points, (
                f"  input: {failure.case}\n  expected: {_show(failure.expected)}\n"
                f"  got:      {_show(failure.actual)}\n  hint: {failure.hint}"), passed, len(cases))
        passed += 1
    return CheckResult(name, True, float(points), points,
                       f"  all {len(cases)} cases match the reference", passed, len(cases))


def _compare(label, expected, actual, diagnose, args, rtol=1e-7, atol=1e-9):
    expected = np.asarray(expected, dtype=float)
    try:
        actual_array = np.asarray(actual, dtype=float)
    except (TypeError, ValueError):
        raise _Failure(label, expected, actual, "return a NumPy array of numbers") from None
    if actual_array.shape != expected.shape:
        raise _Failure(label, expected, actual_array,
                       diagnose(expected, actual_array, args) or
                       f"expected shape {expected.shape}, got {actual_array.shape}: check which axes "
                       "you reduce over and how you broadcast")
    same_inf = np.isinf(expected) & (expected == actual_array)
    close = np.isclose(actual_array, expected, rtol=rtol, atol=atol) | same_inf
    if not np.all(close):
        hint = diagnose(expected, actual_array, args)
        if hint is None and not np.all(np.isfinite(actual_array[~close])):
            hint = "your result is inf or NaN where the expected value is finite: a numerically unstable formula?"
        raise _Failure(label, expected, actual_array,
                       hint or "the values differ; recompute the formula term by term")


def _offset(expected, actual):
    """The constant c with actual = expected + c elementwise, or None."""
    finite = np.isfinite(expected) & np.isfinite(actual)
    if not finite.any():
        return None
    difference = (actual - expected)[finite]
    return float(difference.mean()) if np.allclose(difference, difference.mean(), atol=1e-7) else None


def _is_negated(expected, actual):
    finite = np.isfinite(expected) & np.isfinite(actual)
    return bool(finite.any() and np.allclose(actual[finite], -expected[finite], rtol=1e-7)
                and not np.allclose(expected[finite], 0))


SIGN_HINT = "your result is exactly the negative of the expected one: a sign error"


# ------------------------------------------------------------------ A1: densities, logsumexp


def check_normal_logpdf(student, points=3):
    """student(x, mean, log_std) = Σ_d log N(x_d; mean_d, exp(log_std_d)²), broadcasting."""
    rng = np.random.default_rng(0)

    def diagnose(expected, actual, args):
        if actual.shape == expected.shape and _is_negated(expected, actual):
            return SIGN_HINT
        log_std_sum = np.sum(np.broadcast_to(args[2], np.broadcast_shapes(*(np.shape(a) for a in args))), -1)
        if actual.shape == expected.shape and np.allclose(actual - expected, log_std_sum, atol=1e-7):
            return ("off by exactly +Σ log σ: the −log σ term is missing (the density of x = μ + σε is "
                    "the density of ε divided by σ)")
        if actual.shape == expected.shape and np.allclose(actual - expected, 0.5 * math.log(2 * math.pi)
                                                          * args[0].shape[-1], atol=1e-7):
            return "off by exactly (d/2) log 2π: the normalizing constant −½ log 2π per dimension is missing"
        if actual.shape == expected.shape[:-1] or actual.shape == expected.shape + (args[0].shape[-1],):
            return "sum over the last axis (the event dimensions) and only that axis"
        return None

    cases = []
    x, mean, log_std = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    cases.append(("x, mean, log_std of shape (4, 3)", (x, mean, log_std), _ref_normal(x, mean, log_std), diagnose))
    mean_k = rng.normal(size=(5, 4, 3))
    cases.append(("broadcast: x (4, 3) against mean (5, 4, 3) -> (5, 4)", (x, mean_k, log_std),
                  _ref_normal(x, mean_k, log_std), diagnose))
    scale = np.full((4, 3), 1.5)
    cases.append(("log_std = 1.5 everywhere", (x, mean, scale), _ref_normal(x, mean, scale), diagnose))
    for extreme in (-50.0, 50.0):
        ls = np.full((1, 2), extreme)
        xs, ms = np.array([[0.3, -1.0]]), np.array([[0.3, -1.0 + 1e-22]])
        cases.append((f"extreme log_std = {extreme}", (xs, ms, ls), _ref_normal(xs, ms, ls), diagnose))
    return _run("normal_logpdf", points, cases, student)


def check_bernoulli_logpmf(student, points=3):
    """student(x, logits) = Σ_d log Bern(x_d; sigmoid(logits_d)), stable for |logits| up to 1e4."""
    rng = np.random.default_rng(1)

    def diagnose(expected, actual, args):
        if actual.shape == expected.shape and _is_negated(expected, actual):
            return SIGN_HINT
        if np.any(~np.isfinite(actual)) and np.max(np.abs(args[1])) > 700:
            return ("inf or NaN at large |logits|: log(sigmoid(l)) overflows in exp; use "
                    "log σ(t) = min(t, 0) − log1p(exp(−|t|))")
        return None

    x = (rng.random((4, 6)) < 0.5) * 1.0
    logits = rng.normal(scale=3, size=(4, 6))
    cases = [("x (4, 6) binary, logits ~ N(0, 9)", (x, logits), _ref_bernoulli(x, logits), diagnose)]
    logits_k = rng.normal(size=(3, 4, 6))
    cases.append(("broadcast: x (4, 6) against logits (3, 4, 6) -> (3, 4)", (x, logits_k),
                  _ref_bernoulli(x, logits_k), diagnose))
    extreme = np.array([[-1e4, 1e4, -1e4, 1e4, -40.0, 40.0]])
    xe = np.array([[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]])
    cases.append(("extreme logits ±1e4 and ±40", (xe, extreme), _ref_bernoulli(xe, extreme), diagnose))
    return _run("bernoulli_logpmf", points, cases, student)


def check_logsumexp(student, points=4):
    """student(a, axis) = log Σ exp(a) over ``axis``, stable, −inf for an all −inf slice."""
    rng = np.random.default_rng(2)

    def diagnose(expected, actual, args):
        a, axis = args
        if np.any(~np.isfinite(actual) & np.isfinite(expected)) and np.max(np.abs(a[np.isfinite(a)])) > 700:
            return ("inf or NaN for inputs around ±1000: exp overflows or underflows; subtract the "
                    "maximum first: log Σ exp(a) = m + log Σ exp(a − m)")
        if np.any(np.isnan(actual)) and np.any(np.isneginf(a)):
            return ("NaN for a slice that is all −inf: shifting by m = −inf gives −inf − (−inf); "
                    "shift such slices by 0 instead")
        other = 1 - axis if a.ndim == 2 else None
        if other is not None and actual.shape == np.shape(_ref_logsumexp(a, axis=other)):
            if np.allclose(actual, _ref_logsumexp(a, axis=other)):
                return f"you reduced over axis {other}; reduce over axis {axis}"
        return None

    a = rng.normal(size=(5, 3))
    cases = [("a of shape (5, 3), axis 0", (a, 0), _ref_logsumexp(a, axis=0), diagnose),
             ("a of shape (5, 3), axis 1", (a, 1), _ref_logsumexp(a, axis=1), diagnose)]
    big = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1001.0]]).T
    cases.append(("large values ±1000 (overflow / underflow), axis 0", (big, 0), _ref_logsumexp(big, axis=0), diagnose))
    neg = np.array([[-np.inf, -np.inf], [-np.inf, 0.5], [-np.inf, 2.0]])
    cases.append(("−inf entries and an all −inf column, axis 0", (neg, 0), _ref_logsumexp(neg, axis=0), diagnose))
    one = rng.normal(size=(1, 4))
    cases.append(("a single row (k = 1), axis 0", (one, 0), _ref_logsumexp(one, axis=0), diagnose))
    return _run("logsumexp", points, cases, student)


# ------------------------------------------------------------------ A3: the IWAE bound


def check_iwae_bound(student, points=4):
    """student(log_w) = log (1/k) Σ_i exp(log_w_i) over axis 0 (k first): (k, ...) -> (...)."""
    rng = np.random.default_rng(3)

    def diagnose(expected, actual, args):
        log_w = args[0]
        k = log_w.shape[0]
        if actual.shape != expected.shape:
            return ("reduce over axis 0, the k samples; the remaining axes are data points "
                    f"(log_w has shape {log_w.shape}, so the result has shape {expected.shape})")
        offset = _offset(expected, actual)
        if offset is not None and k > 1 and abs(offset - math.log(k)) < 1e-7:
            return ("off by exactly log k: you computed log Σ w_i; the bound averages the weights, "
                    "log (1/k) Σ w_i = logsumexp − log k")
        if _is_negated(expected, actual):
            return SIGN_HINT
        if np.allclose(actual, np.mean(log_w, axis=0)) and k > 1:
            return "this is the ELBO (the mean of log w), not the IWAE bound (the log of the mean of w)"
        if np.any(~np.isfinite(actual) & np.isfinite(expected)):
            return ("inf or NaN for large or very negative log-weights: exponentiate after "
                    "subtracting the maximum over k (a stable logsumexp)")
        return None

    cases = []
    for shape, label in (((7, 4), "log_w (7, 4): k = 7 samples, 4 points"),
                         ((1, 5), "k = 1: the bound equals the ELBO"),
                         ((6, 2, 3), "log_w (6, 2, 3): extra data axes")):
        log_w = rng.normal(scale=2, size=shape)
        cases.append((label, (log_w,), _ref_iwae_bound(log_w), diagnose))
    low = rng.normal(size=(50, 3)) - 1000  # every exp(log w) underflows to 0
    cases.append(("log-weights around −1000 (exp underflows)", (low,), _ref_iwae_bound(low), diagnose))
    high = rng.normal(size=(50, 3)) + 800  # every exp(log w) overflows to inf
    cases.append(("log-weights around +800 (exp overflows)", (high,), _ref_iwae_bound(high), diagnose))
    with_inf = np.array([[-np.inf, 0.3], [1.0, -np.inf], [-np.inf, 2.0]])
    cases.append(("some weights exactly 0 (log_w = −inf)", (with_inf,), _ref_iwae_bound(with_inf), diagnose))
    return _run("iwae_bound", points, cases, student)


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
    for label, log_w in (("log_w (5, 3)", rng.normal(size=(5, 3))),
                         ("log_w around +800", rng.normal(size=(4, 2)) + 800),
                         ("k = 1", rng.normal(size=(1, 3)))):
        cases.append((label, (log_w,), reference(log_w), diagnose))
    return _run("normalized_weights", points, cases, student)


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
            if actual.shape == expected.shape and _is_negated(expected, actual):
                return SIGN_HINT
            if actual.shape == expected.shape and np.allclose(actual, args[0].mean(axis=0)):
                return ("you averaged the gradients with weight 1/k (the ELBO's gradient); the IWAE "
                        "weights each ∇ log w_i by its normalized weight w̃_i")
            if actual.shape != expected.shape:
                return f"return one gradient of shape ({args[0].shape[1]},): Σ_i w̃_i ∇ log w_i"
            return ("differs from finite differences of L_k: check that w̃ is the softmax of log_w over "
                    "the k samples and that you weight the rows of the Jacobian")

        cases.append((f"k = {k}, log-weights of scale {scale}, jacobian ({k}, 4)", (jacobian, log_w),
                      numeric, diagnose))
    # the expected values are finite differences, accurate to about 1e-9: compare at 1e-5
    return _run("iwae_gradient", points, cases, student, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ A2: the ELBO and its gradient


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
        if _is_negated(expected, actual):
            return SIGN_HINT
        if np.allclose(actual - expected, -np.sum(np.broadcast_to(log_std, mean.shape), -1), atol=1e-7):
            return ("off by exactly −Σ log σ: you used the density of ε, log N(ε; 0, I), where log q(z|x) "
                    "belongs; log q(z|x) = log N(ε; 0, I) − Σ log σ")
        return None

    cases = []
    for label, k, shift in (("k = 10 samples, 4 points", 10, 0.0), ("k = 1", 1, 0.0),
                            ("log_std = −2 (a narrow q)", 5, -2.0)):
        mean = rng.normal(size=(4, 2))
        log_std = rng.normal(scale=0.3, size=(4, 2)) + shift
        eps = rng.standard_normal((k, 4, 2))
        cases.append((label, (log_joint, lg.x, mean, log_std, eps), reference(lg.x, mean, log_std, eps), diagnose))
    return _run("elbo_estimate", points, cases, student)


def check_gradient(name, student_grad, f, inputs, points=4):
    """A hand-derived gradient, against finite differences of f at each input in ``inputs``
    (label, x) pairs. Names the coordinate that disagrees."""
    passed = 0
    for label, x in inputs:
        try:
            report = _gradcheck(f, x, grad=student_grad)
        except Exception as error:
            return CheckResult(name, False, 0.0, points, f"  input: {label}\n  your gradient raised "
                               f"{type(error).__name__}: {error}", passed, len(inputs))
        if not report.passed:
            hint = ("your gradient is exactly the negative at that coordinate: a sign error"
                    if math.isclose(report.analytic, -report.numeric, rel_tol=1e-5) else
                    "recheck that component of the derivation (the chain rule through exp(log σ)?)")
            return CheckResult(name, False, 0.0, points, (
                f"  input: {label}\n  {report.worst}: finite differences {report.numeric:.10g}, "
                f"your gradient {report.analytic:.10g}\n  hint: {hint}\n{report}"), passed, len(inputs))
        passed += 1
    return CheckResult(name, True, float(points), points,
                       f"  matches finite differences at all {len(inputs)} inputs", passed, len(inputs))


# ------------------------------------------------------------------ A4: log-weights of a VAE


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
        if _is_negated(expected, actual):
            return SIGN_HINT
        _, log_std = model.encode(theta, x)
        if np.allclose(actual - expected, -np.sum(log_std, -1), atol=1e-7):
            return ("off by exactly −Σ log σ: you used the density of ε where log q(z|x) belongs; "
                    "log q(z|x) = log N(ε; 0, I) − Σ log σ")
        eps = args[3]
        if np.allclose(eps, eps[:1]) and not np.allclose(actual, actual[:1]):
            return ("the k samples use the same ε but got different log-weights: q(z|x) must be the same "
                    "for every sample. Encode x once, shape (n, z_dim), and broadcast it against ε "
                    "(k, n, z_dim); if you repeat x k times, the reshape order must match")
        return None

    eps = model.draw_eps(rng, 4, 3)
    same = np.repeat(eps[:1], 5, axis=0)
    # identical ε first: it tells a q that differs between samples apart from other mistakes
    cases = [("k = 5 identical samples ε_1 = … = ε_5, 3 points", (model, theta, x, same),
              model.log_weights(theta, x, same), diagnose),
             ("k = 4 samples, 3 points", (model, theta, x, eps), model.log_weights(theta, x, eps), diagnose),
             ("k = 1", (model, theta, x, eps[:1]), model.log_weights(theta, x, eps[:1]), diagnose)]
    return _run("log_weights", points, cases, student)


def check_value(name, value, expected, tolerance, points, what, hint):
    """A measured number (e.g. a gap) within ``tolerance`` of ``expected``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return CheckResult(name, False, 0.0, points, f"  expected a number for {what}, got {value!r}", 0, 1)
    ok = math.isfinite(value) and abs(value - expected) <= tolerance
    message = (f"  {what}: expected {expected:.4f} ± {tolerance:g}, got {value:.4f}"
               + ("" if ok else f"\n  hint: {hint}"))
    return CheckResult(name, ok, float(points) if ok else 0.0, points, message, int(ok), 1)


# ------------------------------------------------------------------ reports


@dataclass
class Report:
    """A grade report for one assignment: the results of its checks, in JSON and in text."""

    assignment: str
    results: list = field(default_factory=list)

    def add(self, result):
        self.results.append(result)
        return result

    @property
    def score(self):
        return sum(r.points for r in self.results), sum(r.max_points for r in self.results)

    def to_dict(self):
        earned, total = self.score
        return {"assignment": self.assignment, "score": earned, "max_score": total,
                "checks": [asdict(r) for r in self.results]}

    def __str__(self):
        earned, total = self.score
        lines = [f"Grade report: {self.assignment}: {earned:g}/{total:g} points"]
        lines += [str(r) for r in self.results]
        return "\n".join(lines)

    def save(self, stem):
        """Write ``stem``.json and ``stem``.txt; return their paths."""
        with open(f"{stem}.json", "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        with open(f"{stem}.txt", "w") as f:
            f.write(str(self) + "\n")
        return f"{stem}.json", f"{stem}.txt"
