"""The check framework behind the assignments: results, reports, and comparing a student's
function with the package's reference.

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

The checks of each assignment are in ``a1`` … ``a4``; the two generic checks, a hand-derived
gradient (``check_gradient``) and a measured number (``check_value``), are here. Each check
returns a CheckResult; ``result.require()`` raises AssertionError with the message, which is how
a graded notebook cell fails.
"""

import json
import math
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from ..gradcheck import gradcheck as _gradcheck

SIGN_HINT = "your result is exactly the negative of the expected one: a sign error"


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
        self.passed, self.points = bool(self.passed), float(self.points)
        self.max_points = float(self.max_points)
        self.cases_passed, self.cases = int(self.cases_passed), int(self.cases)

    def __str__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"[{verdict}] {self.name}: {self.points:g}/{self.max_points:g} points "
            f"({self.cases_passed}/{self.cases} cases)\n{self.message}"
        )

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
        first = np.array2string(array.ravel()[:4], precision=6)
        return f"array of shape {array.shape}, first values {first}"
    return np.array2string(array, precision=8) if array.ndim else f"{float(array):.10g}"


def _verdict(name, points, items, attempt, success):
    """The CheckResult of calling ``attempt`` on each item in turn: failed with the first
    message it returns (and the number of items passed before it), or passed with ``success``
    if it returns None for every item."""
    for passed, item in enumerate(items):
        message = attempt(item)
        if message is not None:
            return CheckResult(name, False, 0.0, points, message, passed, len(items))
    return CheckResult(name, True, float(points), points, success, len(items), len(items))


def run_cases(name, points, cases, student, rtol=1e-7, atol=1e-9):
    """The CheckResult of running ``student`` on (label, args, expected, diagnose) cases,
    stopping at the first case that raises or differs from ``expected``. ``diagnose(expected,
    actual, args)`` names a known mistake, or returns None."""

    def attempt(case):
        label, args, expected, diagnose = case
        try:
            actual = student(*args)
        except Exception as error:  # the student's code raised: report it as this case's failure
            where = traceback.extract_tb(error.__traceback__)[-1]
            return (
                f"  input: {label}\n  your function raised {type(error).__name__}: {error}\n"
                f"  (at line {where.lineno}: {where.line})"
            )
        try:
            _compare(label, expected, actual, diagnose, args, rtol, atol)
        except _Failure as failure:
            return (
                f"  input: {failure.case}\n  expected: {_show(failure.expected)}\n"
                f"  got:      {_show(failure.actual)}\n  hint: {failure.hint}"
            )
        return None

    return _verdict(name, points, cases, attempt, f"  all {len(cases)} cases match the reference")


def _compare(label, expected, actual, diagnose, args, rtol=1e-7, atol=1e-9):
    expected = np.asarray(expected, dtype=float)
    try:
        actual_array = np.asarray(actual, dtype=float)
    except (TypeError, ValueError):
        raise _Failure(label, expected, actual, "return a NumPy array of numbers") from None
    if actual_array.shape != expected.shape:
        raise _Failure(
            label,
            expected,
            actual_array,
            diagnose(expected, actual_array, args)
            or f"expected shape {expected.shape}, got {actual_array.shape}: check which "
            "axes you reduce over and how you broadcast",
        )
    same_inf = np.isinf(expected) & (expected == actual_array)
    close = np.isclose(actual_array, expected, rtol=rtol, atol=atol) | same_inf
    if not np.all(close):
        hint = diagnose(expected, actual_array, args)
        if hint is None and not np.all(np.isfinite(actual_array[~close])):
            hint = (
                "your result is inf or NaN where the expected value is finite: a numerically "
                "unstable formula?"
            )
        raise _Failure(
            label,
            expected,
            actual_array,
            hint or "the values differ; recompute the formula term by term",
        )


def constant_offset(expected, actual):
    """The constant c with actual = expected + c elementwise (over the finite entries), or None."""
    finite = np.isfinite(expected) & np.isfinite(actual)
    if not finite.any():
        return None
    difference = (actual - expected)[finite]
    mean = difference.mean()
    return float(mean) if np.allclose(difference, mean, atol=1e-7) else None


def is_negated(expected, actual):
    """Whether actual = −expected over the finite entries, with expected not all zero."""
    finite = np.isfinite(expected) & np.isfinite(actual)
    return bool(
        finite.any()
        and np.allclose(actual[finite], -expected[finite], rtol=1e-7)
        and not np.allclose(expected[finite], 0)
    )


def check_gradient(name, student_grad, f, inputs, points=4):
    """A hand-derived gradient, against finite differences of f at each input in ``inputs``
    (label, x) pairs. Names the coordinate that disagrees."""

    def attempt(item):
        label, x = item
        try:
            report = _gradcheck(f, x, grad=student_grad)
        except Exception as error:  # the student's gradient raised: report it, do not propagate
            return f"  input: {label}\n  your gradient raised {type(error).__name__}: {error}"
        if report.passed:
            return None
        hint = (
            "your gradient is exactly the negative at that coordinate: a sign error"
            if math.isclose(report.analytic, -report.numeric, rel_tol=1e-5)
            else "recheck that component of the derivation (the chain rule through exp(log σ)?)"
        )
        return (
            f"  input: {label}\n  {report.worst}: finite differences {report.numeric:.10g}, "
            f"your gradient {report.analytic:.10g}\n  hint: {hint}\n{report}"
        )

    return _verdict(
        name, points, inputs, attempt, f"  matches finite differences at all {len(inputs)} inputs"
    )


def check_value(name, value, expected, tolerance, points, what, hint):
    """A measured number (e.g. a gap) within ``tolerance`` of ``expected``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return CheckResult(
            name, False, 0.0, points, f"  expected a number for {what}, got {value!r}", 0, 1
        )
    ok = math.isfinite(value) and abs(value - expected) <= tolerance
    message = f"  {what}: expected {expected:.4f} ± {tolerance:g}, got {value:.4f}" + (
        "" if ok else f"\n  hint: {hint}"
    )
    return CheckResult(name, ok, float(points) if ok else 0.0, points, message, int(ok), 1)


@dataclass
class Report:
    """A grade report for one assignment: the results of its checks, in JSON and in text."""

    assignment: str
    results: list = field(default_factory=list)

    def add(self, result):
        """Append a CheckResult; return it, so a cell can write ``report.add(check).require()``."""
        self.results.append(result)
        return result

    @property
    def score(self):
        """(points earned, points possible) over the results."""
        return sum(r.points for r in self.results), sum(r.max_points for r in self.results)

    def to_dict(self):
        """The report as plain JSON-ready types: assignment, score, max_score, checks."""
        earned, total = self.score
        return {
            "assignment": self.assignment,
            "score": earned,
            "max_score": total,
            "checks": [asdict(r) for r in self.results],
        }

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
