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
    a missing ``return``           None instead of an array
    a list, a scalar, a wrong shape  named with the shape that was expected

The same checks run in two places. In the student's notebook they call the student's function
directly. In the trusted grader (``judge``) the student's function is a proxy: every call goes
to an isolated worker process, and only plain data (arrays, numbers) come back, so the
comparison happens where the submission cannot reach it.

Hidden tests are written in the instructor's notebook with ``hidden_test``: the same comparison,
labelled "(hidden test)" in the report and given a hint.

The checks of each assignment are in ``a1`` … ``a4``; the generic checks (``check_gradient``,
``check_value``, ``hidden_test``) are here. Each check returns a CheckResult; a Report collects
them, and ``report.require_passed()`` fails a graded cell when a check in it failed.
"""

import contextlib
import contextvars
import json
import math
import os
import re
import sys
import traceback
import warnings
import weakref
from dataclasses import asdict, dataclass, field

import numpy as np

from ..gradcheck import gradcheck as reference_gradcheck

SIGN_HINT = "your result is exactly the negative of the expected one: a sign error"
HIDDEN = " (hidden test)"

# True while the trusted grader runs a notebook's tests: verdicts are collected, not printed
QUIET = contextvars.ContextVar("iwae_np_classroom_quiet", default=False)


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
    status: str = ""

    def __post_init__(self):  # plain Python types, so the report is valid JSON
        self.passed, self.points = bool(self.passed), float(self.points)
        self.max_points = float(self.max_points)
        self.cases_passed, self.cases = int(self.cases_passed), int(self.cases)
        if not self.status:
            self.status = "passed" if self.passed else "failed"

    def __str__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"[{verdict}] {self.name}: {self.points:g}/{self.max_points:g} points "
            f"({self.cases_passed}/{self.cases} cases)\n{self.message}"
        )

    def require(self):
        """Raise AssertionError carrying the message if the check failed (fails a graded cell).

        Returns None, so a cell that ends with it shows no value: nbgrader reads a cell's value
        as a partial score and reports anything that is not a number as an error."""
        if not self.passed:
            raise AssertionError(str(self))


class Call:
    """The arguments of one call of the student's function, when a case needs keywords:
    ``Call(a, axis=2)`` calls ``student(a, axis=2)``."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"


def arguments_of(args):
    """(positional, keyword) arguments of a case: a tuple, or a Call."""
    if isinstance(args, Call):
        return args.args, args.kwargs
    return tuple(args), {}


@contextlib.contextmanager
def student_code(student):
    """Run the student's code quietly on stderr: NumPy warnings are silenced and anything the code
    writes to stderr goes to stdout, so a passing check never prints to stderr (nbgrader scores
    a graded cell with stderr output as failed). A proxy of the trusted grader runs the code in
    another process and needs none of it (and process-wide switches are not safe in its
    threads)."""
    if getattr(student, "isolated", False):
        with np.errstate(all="ignore"):
            yield
        return
    with (
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
        contextlib.redirect_stderr(sys.stdout),
    ):
        warnings.simplefilter("ignore")
        yield


def call_student(student, args):
    """student(*args) for a case's arguments (a tuple or a Call), quietly (``student_code``)."""
    positional, keywords = arguments_of(args)
    with student_code(student):
        return student(*positional, **keywords)


def describe_error(error):
    """'raised TypeError: …' with the line of the student's code where it happened."""
    kind = getattr(error, "kind", None) or type(error).__name__
    text = getattr(error, "text", None)
    text = str(error) if text is None else text
    line, lineno = getattr(error, "line", None), getattr(error, "lineno", None)
    if lineno is None:
        frames = traceback.extract_tb(error.__traceback__)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
        theirs = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
        if theirs:
            line, lineno = theirs[-1].line, theirs[-1].lineno
    where = f"\n  (at line {lineno}: {line})" if lineno is not None else ""
    return f"raised {kind}: {text}{where}"


class Failure(Exception):
    """A case that failed: its input label, expected and actual values, and a hint."""

    def __init__(self, case, expected, actual, hint):
        super().__init__(case)
        self.case, self.expected, self.actual, self.hint = case, expected, actual, hint


def show(value):
    """A short readable form of a value for a message: small arrays in full, large ones by shape
    and first entries, anything else by its type."""
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)) and not is_numeric(value):
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}: {str(value)[:80]}"
    if array.size > 6:
        first = np.array2string(array.ravel()[:4], precision=6)
        return f"array of shape {array.shape}, first values {first}"
    return np.array2string(array, precision=8) if array.ndim else f"{float(array):.10g}"


def is_numeric(value):
    """Whether ``value`` converts to a rectangular array of real numbers."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return array.dtype.kind in "biuf"


def as_result_array(value, expected_shape):
    """The student's result as a float array, or Failure-ready (hint, shown value) saying why not:
    None (a missing return), a list that is not rectangular, something that is not numbers."""
    if value is None:
        return None, (
            "your function returned None: a `return` is missing (or it returns before the end)"
        )
    if isinstance(value, (list, tuple)):
        what = f"a {type(value).__name__} of {len(value)} items"
        if not is_numeric(value):
            return None, (
                f"you returned {what}, not an array of numbers: build one NumPy array of shape "
                f"{expected_shape} (np.stack, or vectorized operations)"
            )
        array = np.asarray(value, dtype=float)
        if array.shape != expected_shape:
            return None, (
                f"you returned {what} (shape {array.shape}); return a NumPy array of shape "
                f"{expected_shape}"
            )
        return array, None
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raw = np.asarray(None, dtype=object)
    if raw.dtype.kind == "c":
        return None, "your result is complex: return real numbers"
    if raw.dtype.kind not in "biuf":
        return None, f"return a NumPy array of numbers, got {show(value)}"
    return raw, None


def tolerances(actual, rtol, atol, expected):
    """rtol, atol widened for a result computed in a lower precision (float32 gives about 1e-7
    relative error per operation, so a correct float32 solution passes). Never wider than for
    float32: a result cast to float16 (eps 1e-3) must not buy a tolerance of several percent."""
    dtype = getattr(actual, "dtype", np.dtype(float))
    if dtype.kind == "f" and dtype.itemsize < 8:
        eps = min(float(np.finfo(dtype).eps), float(np.finfo(np.float32).eps))
        finite = np.abs(expected[np.isfinite(expected)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        return max(rtol, 64 * eps), max(atol, 64 * eps * scale)
    return rtol, atol


def safe_diagnose(diagnose, expected, actual, args):
    """The named mistake, or None; a diagnosis that cannot handle this result says nothing."""
    if diagnose is None:
        return None
    try:
        with np.errstate(all="ignore"):
            return diagnose(expected, actual, arguments_of(args)[0])
    except Exception:  # a diagnosis is a hint: never let it replace the verdict
        return None


def compare(label, expected, actual, diagnose, args, rtol=1e-5, atol=1e-8):
    """Raise Failure unless ``actual`` matches ``expected`` (shape, then values)."""
    expected = np.asarray(expected, dtype=float)
    array, problem = as_result_array(actual, expected.shape)
    if problem is not None:
        raise Failure(label, expected, actual, problem)
    if array.shape != expected.shape:
        shown = np.asarray(array, dtype=float)
        hint = safe_diagnose(diagnose, expected, shown, args)
        what = "a single number" if array.ndim == 0 else f"shape {array.shape}"
        raise Failure(
            label,
            expected,
            shown,
            hint
            or f"expected shape {expected.shape}, got {what}: check which axes you reduce over "
            "and how you broadcast",
        )
    rtol, atol = tolerances(array, rtol, atol, expected)
    values = array.astype(float)
    with np.errstate(all="ignore"):
        same_inf = np.isinf(expected) & (expected == values)
        close = np.isclose(values, expected, rtol=rtol, atol=atol) | same_inf
    if not np.all(close):
        hint = safe_diagnose(diagnose, expected, values, args)
        if hint is None and not np.all(np.isfinite(values[~close])):
            hint = (
                "your result is inf or NaN where the expected value is finite: a numerically "
                "unstable formula?"
            )
        raise Failure(label, expected, values, hint or "the values differ; recompute the formula")


def verdict(name, points, items, attempt, success):
    """The CheckResult of calling ``attempt`` on each item in turn: failed with the first
    message it returns (and the number of items passed before it), or passed with ``success``
    if it returns None for every item."""
    for passed, item in enumerate(items):
        message = attempt(item)
        if message is not None:
            return CheckResult(name, False, 0.0, points, message, passed, len(items))
    return CheckResult(name, True, float(points), points, success, len(items), len(items))


def run_cases(name, points, cases, student, rtol=1e-5, atol=1e-8):
    """The CheckResult of running ``student`` on (label, args, expected, diagnose) cases,
    stopping at the first case that raises or differs from ``expected``. args is a tuple or a
    Call; ``diagnose(expected, actual, args)`` names a known mistake, or returns None.

    The default tolerance (rtol 1e-5) accepts a solution computed in float32 and returned in
    float64 (about 1e-6 relative error); every mistake in the catalogue above is off by far more."""

    def attempt(case):
        label, args, expected, diagnose = case
        try:
            actual = call_student(student, args)
        except Exception as error:  # the student's code raised: report it as this case's failure
            return f"  input: {label}\n  your function {describe_error(error)}"
        try:
            compare(label, expected, actual, diagnose, args, rtol, atol)
        except Failure as failure:
            return (
                f"  input: {failure.case}\n  expected: {show(failure.expected)}\n"
                f"  got:      {show(failure.actual)}\n  hint: {failure.hint}"
            )
        return None

    return verdict(name, points, cases, attempt, f"  all {len(cases)} cases match the reference")


def hidden_test(name, student, cases, points=1, hint=None, rtol=1e-5, atol=1e-8):
    """A hidden test: ``student`` on (label, args, expected[, hint]) cases, labelled
    "name (hidden test)" in the report. Each failure names the input and gives the case's hint
    (or ``hint``): a student who fails a hidden test learns what kind of input broke it.

    The cases live in the instructor's notebook, between BEGIN/END HIDDEN TESTS, so students
    never see the inputs before grading."""
    full = []
    for case in cases:
        label, args, expected = case[:3]
        case_hint = case[3] if len(case) > 3 else hint

        def diagnose(expected, actual, arguments, case_hint=case_hint):
            if actual.shape == expected.shape and is_negated(expected, actual):
                return SIGN_HINT
            return case_hint

        full.append((label, args, expected, diagnose))
    result = run_cases(name + HIDDEN, points, full, student, rtol=rtol, atol=atol)
    hints = [case[3] if len(case) > 3 else hint for case in cases]
    failing = hints[result.cases_passed] if result.cases_passed < len(hints) else hint
    return conceal(result, [h for h in hints if h] + [SIGN_HINT], failing)


CONCEALED = "  a hidden test failed (its inputs and expected values stay hidden)"


def conceal(result, safe_hints=(), fallback=None):
    """A failed hidden test's result, made safe to show the student: its message becomes "a hidden
    test failed" and a hint, with no input label, seed, expected or received value (a student
    could otherwise turn the feedback into a lookup table). The hint is the one the check gave
    when it is among ``safe_hints`` (the instructor's hints, written without the inputs), else
    ``fallback`` (or none). The full message stays on the result as ``detail`` (for the
    instructor's log; not part of the report's JSON). A passed result is returned unchanged."""
    if result.passed or getattr(result, "detail", None) is not None:
        return result
    given = None
    for line in result.message.splitlines():
        if line.strip().startswith("hint:"):
            given = line.strip()[len("hint:") :].strip()
    raised = " raised " in result.message and given is None
    hint = given if given in [h for h in safe_hints if h] else fallback
    result.detail = result.message
    lines = [CONCEALED]
    if raised:
        lines.append("  your function raised an exception on this hidden input")
    if hint:
        lines.append(f"  hint: {hint}")
    result.message = "\n".join(lines)
    return result


def constant_offset(expected, actual):
    """The constant c with actual = expected + c elementwise (over the finite entries), or None."""
    if np.shape(actual) != np.shape(expected):
        return None
    finite = np.isfinite(expected) & np.isfinite(actual)
    if not finite.any():
        return None
    difference = (actual - expected)[finite]
    mean = difference.mean()
    return float(mean) if np.allclose(difference, mean, atol=1e-7) else None


def is_negated(expected, actual):
    """Whether actual = −expected over the finite entries, with expected not all zero."""
    if np.shape(actual) != np.shape(expected):
        return False
    finite = np.isfinite(expected) & np.isfinite(actual)
    return bool(
        finite.any()
        and np.allclose(actual[finite], -expected[finite], rtol=1e-7)
        and not np.allclose(expected[finite], 0)
    )


def check_gradient(name, student_grad, f, inputs, points=4, parts=None):
    """A hand-derived gradient, against finite differences of f at each input in ``inputs``
    (label, x) pairs. Names the coordinate that disagrees.

    parts: optional (label, indices, hint) triples that say what each coordinate is, e.g.
    ("μ", slice(0, 2), "∂/∂μ = …"): the hint for a wrong coordinate is the one of its part."""

    def part_of(index):
        for label, where, hint in parts or ():
            if index in np.arange(np.size(inputs[0][1]))[where]:
                return label, hint
        return None, "recheck that component of the derivation"

    def attempt(item):
        label, x = item
        x = np.asarray(x, dtype=float)
        try:
            gradient = call_student(student_grad, (x.copy(),))
        except Exception as error:  # the student's gradient raised: report it, do not propagate
            return f"  input: {label}\n  your gradient {describe_error(error)}"
        array, problem = as_result_array(gradient, x.shape)
        if problem is None and array.shape != x.shape:
            problem = (
                f"return one partial derivative per parameter: shape {x.shape}, got {array.shape}"
            )
        if problem is None and not np.all(np.isfinite(array)):
            problem = "your gradient has inf or NaN entries"
        if problem is not None:
            return f"  input: {label}\n  got: {show(gradient)}\n  hint: {problem}"
        array = array.astype(float)
        with np.errstate(all="ignore"):
            report = reference_gradcheck(f, x, grad=lambda *_: array)
        if report.passed:
            return None
        match = re.search(r"\((\d+)", report.worst)
        part, hint = part_of(int(match.group(1))) if match else (None, "")
        if math.isclose(report.analytic, -report.numeric, rel_tol=1e-5):
            hint = "your gradient is exactly the negative at that coordinate: a sign error"
        where = f" (a {part} coordinate)" if part else ""
        return (
            f"  input: {label}\n  {report.worst}{where}: finite differences "
            f"{report.numeric:.10g}, your gradient {report.analytic:.10g}\n  hint: {hint}\n{report}"
        )

    result = verdict(
        name, points, inputs, attempt, f"  matches finite differences at all {len(inputs)} inputs"
    )
    if name.endswith(HIDDEN):
        sign = "your gradient is exactly the negative at that coordinate: a sign error"
        hints = [hint for _, _, hint in parts or ()]
        safe = hints + [sign, "recheck that component of the derivation"]
        result = conceal(result, safe, "recheck your derivation, coordinate by coordinate")
    return result


def check_value(name, value, expected, tolerance, points, what, hint):
    """A measured number (e.g. a gap) within ``tolerance`` of ``expected``."""
    if isinstance(value, (np.ndarray, list, tuple)) and np.size(value) == 1:
        value = np.ravel(value)[0]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return CheckResult(
            name, False, 0.0, points, f"  expected a number for {what}, got {show(value)}", 0, 1
        )
    ok = math.isfinite(value) and abs(value - expected) <= tolerance
    message = f"  {what}: expected {expected:.4f} ± {tolerance:g}, got {value:.4f}" + (
        "" if ok else f"\n  hint: {hint}"
    )
    return CheckResult(name, ok, float(points) if ok else 0.0, points, message, int(ok), 1)


def substituted(student, **names):
    """``student`` run with some of the names it uses replaced by correct versions, e.g.
    ``substituted(fit_diagonal, elbo_gradient=true_gradient)``: a mistake in one exercise then
    costs no points in the next one that uses it. In the trusted grader the replacement happens
    in the worker; here it replaces the function's globals for the duration of each call."""
    if hasattr(student, "substitute"):
        return student.substitute(**names)
    scope = getattr(student, "__globals__", None)
    if scope is None:
        return student

    def run(*args, **kwargs):
        saved = {name: scope[name] for name in names if name in scope}
        scope.update(names)
        try:
            return student(*args, **kwargs)
        finally:
            for name in names:
                if name in saved:
                    scope[name] = saved[name]
                else:
                    scope.pop(name, None)

    run.__name__ = getattr(student, "__name__", "student")
    return run


class Memo:
    """Results of slow student calls kept per student function, so two graded cells can check
    two numbers of one call without running it twice (``Memo.call``)."""

    store = weakref.WeakKeyDictionary()

    @classmethod
    def call(cls, student, key, *args):
        """student(*args), remembered under ``key`` for this student function (an exception is
        remembered too and raised again)."""
        try:
            results = cls.store.setdefault(student, {})
        except TypeError:  # not weakly referenceable: no memory
            results = {}
        if key not in results:
            try:
                results[key] = (True, call_student(student, args))
            except Exception as error:
                results[key] = (False, error)
        ok, value = results[key]
        if not ok:
            raise value
        return value


@dataclass
class Report:
    """The checks of one notebook, in order: each cell adds its checks' results, then
    ``require_passed()`` fails the cell if one of them failed."""

    assignment: str
    results: list = field(default_factory=list)
    required: int = 0

    def add(self, result):
        """Append a CheckResult and print it (the student sees each verdict as it comes).
        Returns the result."""
        self.results.append(result)
        if not QUIET.get():
            print(result)
        return result

    def require_passed(self):
        """Raise AssertionError if a check added since the last call failed; returns None, so a
        graded cell can end with it (nbgrader then scores the cell by whether it raised)."""
        new, self.required = self.results[self.required :], len(self.results)
        failed = [r.name for r in new if not r.passed]
        if failed:
            raise AssertionError(f"failed: {', '.join(failed)} (see the messages above)")

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

    def summary(self):
        """The student's self-check: which checks passed, without a score. The grade comes from
        the instructor's grader, which runs hidden tests too and can differ."""
        passed = sum(r.passed for r in self.results)
        lines = [
            f"Self-check: {self.assignment}: {passed} of {len(self.results)} checks passed in "
            "this notebook.",
            "Your grade comes from your instructor's grader, which also runs hidden tests.",
        ]
        lines += [f"  [{'PASSED' if r.passed else 'FAILED'}] {r.name}" for r in self.results]
        return "\n".join(lines)

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


@contextlib.contextmanager
def quietly():
    """A context in which Report.add collects verdicts without printing them (the grader)."""
    token = QUIET.set(True)
    try:
        yield
    finally:
        QUIET.reset(token)
