"""The README's contract for bad input, as properties over every public function.

    Every generated call ends EITHER in a finite result (−inf only where it is the exact answer,
    e.g. a bound of all −inf log-weights; ±inf also where the exact answer lies beyond the
    largest float of the output's dtype, i.e. correct rounding) that matches an independent
    reference (mpmath at 50 digits on float64 copies of the inputs), OR in a ValueError whose
    message starts with "name:" (or "a, b:") naming parameters of the function.

Each case is also classified before the call: input the README says is refused (NaN, +inf data,
a dtype that is not real, ragged lists, a bad axis/seed/alpha/beta/k/m, ...) must be refused;
ordinary input (any real dtype, lists, empty arrays where the math is defined, values near the
largest float) must be accepted and be right; a few edge cases (an empty reduction, a σ that
overflows, a gradient whose square overflows) may go either way, and if accepted must be right.

Failures are collected rather than raised per example, so the tally of cases tried / held is
exact (no shrinking replays) and a failing test lists its shortest reproducers. The totals per
function are printed by ``test_zz_summary`` at the end of the module (run with ``-s`` or see
the captured output).

Second order: Hessian-vector products from autograd equal central differences of autograd's
gradient (relative error < 1e-5, float64) for the numerics, the bounds and ``VAE.log_weights``.
"""

import collections
import math
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import iwae_np as iw

pytestmark = pytest.mark.slow

# function -> [cases tried, cases held]
TALLY = collections.defaultdict(lambda: [0, 0])


def examples(n):
    """Hypothesis settings: a fixed set of n examples (derandomized), no deadline."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module", autouse=True)
def mp_50_digits():
    with mpmath.workdps(50):
        yield


# ---------------------------------------------------------------- judging one call

NAMED = re.compile(r"^([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*): ")
REFUSE, ACCEPT, EITHER = "refuse", "accept", "either"


def names_a_parameter(message, params):
    match = NAMED.match(message)
    return bool(match) and all(name in params for name in match.group(1).split(", "))


def judge(function, params, call, expect, check, describe, failures):
    """Run ``call()`` once and record whether the contract held.

    expect: REFUSE (a ValueError naming a parameter is required), ACCEPT (a result is required
    and ``check(result)`` must pass) or EITHER. describe(): the inputs, for the failure report.
    """
    TALLY[function][0] += 1
    problem = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except ValueError as error:
        if not names_a_parameter(str(error), params):
            problem = f"ValueError not naming one of {params}: {str(error)[:160]!r}"
        elif expect == ACCEPT:
            problem = f"refused valid input: {str(error)[:160]!r}"
    except Exception as error:  # any other exception breaks the contract
        problem = f"{type(error).__name__} escaped: {str(error)[:160]!r}"
    else:
        if expect == REFUSE:
            problem = f"accepted input it must refuse, returned {_short(result)}"
        else:
            try:
                check(result)
            except AssertionError as error:
                problem = f"wrong result: {str(error)[:300]}"
            except Exception as error:  # a result the reference cannot read
                problem = f"unreadable result {_short(result)} ({type(error).__name__}: {error})"
    if problem is None:
        TALLY[function][1] += 1
    else:
        failures.append(f"{function}({describe()}) -> {problem}")


def report(failures, shown=8):
    """Fail, listing the shortest reproducer of each kind of failure (function, the words
    before the first colon of what happened, and a model case's defect)."""
    if failures:
        by_kind = {}
        for failure in sorted(set(failures), key=len):
            kind = re.sub(r"\(.*?\) -> ", " ", failure, count=1).split(":")[0][:60]
            kind += " ".join(re.findall(r"case '[^']*'", failure))  # the model defect, if any
            by_kind.setdefault(kind, failure)
        chosen = list(by_kind.values())[:shown]
        pytest.fail(
            f"{len(failures)} case(s) broke the contract; the shortest of each kind:\n  "
            + "\n  ".join(chosen),
            pytrace=False,
        )


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------- array-like arguments


@dataclass
class Arg:
    """One array-like argument: ``value`` is passed; ``f64`` is the float64 copy of the numbers
    the package should compute with (None for a non-numeric value); ``dtype`` the floating dtype
    the package should convert it to; ``bad`` why it is not a real array (None if it is)."""

    value: object
    f64: np.ndarray = None
    dtype: np.dtype = None
    bad: str = None

    def __repr__(self):
        kind = self.bad or str(self.dtype)
        shape = "" if self.f64 is None else f" shape {self.f64.shape}"
        return f"<{kind}{shape}> {_short(self.value, 160)}"

    @property
    def shape(self):
        return self.f64.shape

    def has(self, what):
        if self.f64 is None:
            return False
        test = {"nan": np.isnan, "posinf": np.isposinf, "neginf": np.isneginf}[what]
        return bool(test(self.f64).any())


MODERATE = st.floats(-30, 30)
EXTREMES = st.sampled_from(
    [
        1e308,
        -1e308,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        1e-308,
        -1e-308,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        1e38,
        -1e38,
        3.4e38,
        -3.4e38,
        1e-45,
        800.0,
        -800.0,
        710.0,
        -745.0,
        40.0,
        -40.0,
        88.0,
        -104.0,
        0.0,
        -0.0,
        1e154,
        -1e154,
        1e-154,
        1e-160,
        1e16,
    ]
)
SPECIALS = st.sampled_from([math.inf, -math.inf, math.nan])
REGIMES = [MODERATE, st.one_of(MODERATE, EXTREMES), st.one_of(MODERATE, EXTREMES, SPECIALS)]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FORMS = (
    ["float64"] * 5
    + ["float32"] * 3
    + ["float16", "longdouble", "int", "bool", "list", "object", "complex", "str", "ragged"]
)
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
# large leading dimensions, kept small in size (no output of a last-axis sum is large either)
HUGE_EMPTY = st.sampled_from([(10**6, 0, 3), (0, 10**6), (10**9, 0, 2)])
SHAPES = st.one_of(*[SMALL_SHAPES] * 7, HUGE_EMPTY)


@st.composite
def array_arg(draw, shape=None, values=None, forms=FORMS):
    """An array-like of ``shape`` (drawn if None) in one of many forms."""
    shape = draw(SHAPES) if shape is None else tuple(shape)
    size = math.prod(shape)
    form = draw(st.sampled_from(forms))
    if max(shape, default=0) > 8 and form in ("list", "ragged", "object", "str"):
        form = "float64"  # no Python list of a million empty lists
    if form == "ragged":
        return Arg([[0.0, 1.0], [1.0]], bad="ragged list")
    if form == "int":
        dtype = draw(st.sampled_from(INT_DTYPES))
        info = np.iinfo(dtype)
        ints = draw(
            st.lists(
                st.one_of(
                    st.integers(int(info.min), int(info.max)),
                    st.sampled_from([int(info.min), int(info.max), 0, 1]),
                ),
                min_size=size,
                max_size=size,
            )
        )
        array = np.array(ints, dtype=dtype).reshape(shape)
        return Arg(array, array.astype(np.float64), np.dtype(np.float64))
    if form == "bool":
        array = np.array(
            draw(st.lists(st.booleans(), min_size=size, max_size=size)), dtype=bool
        ).reshape(shape)
        return Arg(array, array.astype(np.float64), np.dtype(np.float64))
    if values is None:
        values = REGIMES[draw(st.sampled_from([0, 0, 0, 1, 1, 2]))]
    base = np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype=np.float64).reshape(
        shape
    )
    if form == "list":  # (an empty list keeps no shape beyond its first 0)
        value = base.tolist()
        return Arg(value, np.asarray(value, dtype=np.float64), np.dtype(np.float64))
    if form in ("object", "complex", "str"):
        return Arg(
            base.astype({"object": object, "complex": complex, "str": str}[form]),
            bad=f"dtype {form}",
        )
    dtype = {
        "float64": np.float64,
        "float32": np.float32,
        "float16": np.float16,
        "longdouble": np.longdouble,
    }[form]
    with np.errstate(over="ignore", under="ignore"):
        array = base.astype(dtype)
    converted = np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)
    return Arg(array, array.astype(np.float64), converted)


def bad_arrays(args, allow_posinf=False, allow_neginf=False):
    """The names of array arguments the README says must be refused: not real, NaN, or an
    infinity the function does not take."""
    refused = []
    for name, arg in args.items():
        if (
            arg.bad
            or arg.has("nan")
            or (arg.has("posinf") and not allow_posinf)
            or (arg.has("neginf") and not allow_neginf)
        ):
            refused.append(name)
    return refused


def out_dtype(*args):
    """The floating dtype a result should have: the inputs' converted dtypes (float32 at
    least); Python-number scalars do not upcast."""
    return np.result_type(*[arg.dtype for arg in args], np.float32)


def broadcast(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


# ---------------------------------------------------------------- comparing with mpmath

MP_INF = mpmath.inf


def mpf(value):
    return mpmath.mpf(float(value))


def cells(shape):
    """The indices of an array of ``shape``; none for an empty one (np.ndindex would build
    range tuples of a 1e9-long axis even when another axis is 0)."""
    return iter(()) if math.prod(shape) == 0 else np.ndindex(shape)


def mp_array(shape):
    return np.empty(shape, dtype=object)


def show(value, digits=17):
    """An mpf as text, also one too large for Python's int-to-text limit."""
    try:
        return mpmath.nstr(value, digits)
    except (OverflowError, ValueError):
        return f"{'-' if value < 0 else ''}2^{mpmath.nstr(mpmath.log(abs(value), 2), 5)}"


def to_mp(value):
    """A NumPy float as mpf, exactly (a long double through its shortest round-trip digits)."""
    if isinstance(value, np.longdouble) and np.finfo(np.longdouble).eps < np.finfo(float).eps:
        return mpmath.mpf(np.format_float_scientific(value, unique=True))
    return mpf(value)


def assert_close(out, ref, scale, dtype, ulps=16, inputs=()):
    """out (ndarray of ``dtype``) against ref (object array of mpf), entry by entry:

    ref ±inf: out must be the same infinity. |ref| beyond the dtype's largest float: out must be
    the infinity of its sign, or within the tolerance. Else out finite with
    |out − ref| <= ulps · eps · scale + a few subnormals (scale: what rounding errors scale with,
    e.g. Σ|terms| for a sum). eps is that of the least precise of ``inputs`` (Args) and the
    output, and at least float64's: a float32 argument makes the arithmetic float32's even
    where NumPy promotes the result to float64."""
    out = np.asarray(out)
    assert out.shape == ref.shape, f"shape {out.shape}, expected {ref.shape}"
    assert out.dtype == dtype, f"dtype {out.dtype}, expected {dtype}"
    info = np.finfo(dtype)
    eps = max(float(np.finfo(d).eps) for d in [dtype, np.float64, *(a.dtype for a in inputs)])
    largest = to_mp(info.max)
    atol = 4 * mpf(np.finfo(np.result_type(*[a.dtype for a in inputs], dtype)).smallest_subnormal)
    for index in cells(out.shape):
        got, want = out[index], ref[index]
        assert not np.isnan(got), f"NaN at {index}, expected {show(want)}"
        if mpmath.isinf(want):
            assert np.isinf(got) and (got > 0) == (want > 0), f"{got} at {index}, expected {want}"
            continue
        tolerance = ulps * eps * (scale[index] if scale is not None else abs(want)) + atol
        if abs(want) > largest and np.isinf(got) and (got > 0) == (want > 0):
            continue  # the correctly rounded value of a number beyond the float range
        assert np.isfinite(got), f"{got} at {index}, expected {show(want)}"
        error = abs(to_mp(got) - want)
        assert error <= tolerance, (
            f"{got!r} at {index}, expected {show(want)} "
            f"(error {show(error, 3)} > {show(tolerance, 3)})"
        )


def mp_logsumexp(values):
    """log Σ exp(v) exactly enough: −inf entries are zero weights; terms more than 1e4 below
    the largest are below 50 digits."""
    finite = [mpf(v) for v in values if not np.isneginf(v)]
    if not finite:
        return -MP_INF
    top = max(finite)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in finite if v - top > -1e4))


def reduce_last(array, function, out_shape=None):
    """Apply ``function(values) -> (ref, scale)`` to every slice along the last axis."""
    shape = array.shape[:-1] if out_shape is None else out_shape
    ref, scale = mp_array(shape), mp_array(shape)
    for index in cells(shape):
        ref[index], scale[index] = function(array[index])
    return ref, scale


def normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    return tuple(int(a) % ndim for a in items)


def valid_axis(axis, ndim):
    if axis is None:
        return True
    items = axis if isinstance(axis, tuple) else (axis,)
    if not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in items
    ):
        return False
    if not all(-ndim <= a < ndim for a in items):
        return False
    return len({int(a) % ndim for a in items}) == len(items)


# ---------------------------------------------------------------- numerics

AXES = st.one_of(
    st.none(),
    st.integers(-4, 4),
    st.lists(st.integers(-3, 3), max_size=3).map(tuple),
    st.sampled_from(
        [1.0, True, "0", [0], np.int64(1), np.int32(-1), 10**20, np.bool_(False), (0, 0), math.nan]
    ),
)
KEEPDIMS = st.one_of(
    st.booleans(), st.sampled_from([np.bool_(True), 1, 0, "yes", None, np.array([1, 2])])
)


def reduction_reference(a64, axis, keepdims, mean):
    nd = a64.ndim
    axes = normalize_axes(axis, nd)
    moved = np.moveaxis(a64, axes, tuple(range(nd - len(axes), nd)))
    rest = moved.shape[: nd - len(axes)]
    k = math.prod(a64.shape[ax] for ax in axes)
    flat = moved.reshape(rest + (k,))

    def one(values):
        value = mp_logsumexp(values) - (mpmath.log(k) if mean else 0)
        finite = [abs(mpf(v)) for v in values if np.isfinite(v)]
        scale = max(finite, default=mpf(0)) + (abs(value) if mpmath.isfinite(value) else 0) + 1
        return value, scale

    ref, scale = reduce_last(flat, one, rest)
    if keepdims:
        ref, scale = np.expand_dims(ref, axes), np.expand_dims(scale, axes)
    return ref, scale


def test_logsumexp_contract():
    failures = []

    @examples(250)
    @given(array_arg(), AXES, KEEPDIMS)
    def prop(a, axis, keepdims):
        must = bad_arrays({"a": a}, allow_neginf=True)
        if a.f64 is not None and not valid_axis(axis, a.f64.ndim):
            must.append("axis")
        if not isinstance(keepdims, (bool, np.bool_)):
            must.append("keepdims")
        expect = REFUSE if must else EITHER if 0 in a.shape else ACCEPT

        def check(result):
            ref, scale = reduction_reference(a.f64, axis, bool(keepdims), mean=False)
            assert_close(result, ref, scale, out_dtype(a))

        judge(
            "logsumexp",
            ("a", "axis", "keepdims"),
            lambda: iw.logsumexp(a.value, axis=axis, keepdims=keepdims),
            expect,
            check,
            lambda: f"{a!r}, axis={axis!r}, keepdims={keepdims!r}",
            failures,
        )

    prop()
    report(failures)


def test_log_mean_exp_contract():
    failures = []

    @examples(200)
    @given(array_arg(), st.one_of(st.just(0), AXES))
    def prop(a, axis):
        must = bad_arrays({"a": a}, allow_neginf=True)
        if a.f64 is not None and not valid_axis(axis, a.f64.ndim):
            must.append("axis")
        expect = REFUSE if must else EITHER if 0 in a.shape else ACCEPT

        def check(result):
            ref, scale = reduction_reference(a.f64, axis, False, mean=True)
            assert_close(result, ref, scale, out_dtype(a))

        judge(
            "log_mean_exp",
            ("a", "axis"),
            lambda: iw.log_mean_exp(a.value, axis=axis),
            expect,
            check,
            lambda: f"{a!r}, axis={axis!r}",
            failures,
        )

    prop()
    report(failures)


def mp_softplus(x):
    x = mpf(x)
    if mpmath.isinf(x):
        return x if x > 0 else mpf(0)
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


ELEMENTWISE = {
    "softplus": (iw.softplus, mp_softplus),
    "log_sigmoid": (iw.log_sigmoid, lambda x: -mp_softplus(-x)),
    "sigmoid": (iw.sigmoid, lambda x: 1 / (1 + mpmath.exp(-mpf(x)))),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_contract(name):
    function, exact = ELEMENTWISE[name]
    failures = []

    @examples(150)
    @given(array_arg())
    def prop(x):
        must = bad_arrays({"x": x}, allow_posinf=True, allow_neginf=True)

        def check(result):
            ref = mp_array(x.shape)
            for index in cells(x.shape):
                ref[index] = exact(x.f64[index])
            assert_close(result, ref, None, out_dtype(x))

        judge(
            name,
            ("x",),
            lambda: function(x.value),
            REFUSE if must else ACCEPT,
            check,
            lambda: repr(x),
            failures,
        )

    prop()
    report(failures)


# ---------------------------------------------------------------- distributions

HALF_LOG_2PI = mpmath.log(2 * mpmath.pi) / 2


@st.composite
def broadcast_args(draw, names, values=None):
    """Array arguments whose shapes mostly broadcast together (sometimes not)."""
    if draw(st.integers(0, 4)):
        shapes = draw(
            hnp.mutually_broadcastable_shapes(
                num_shapes=len(names), min_dims=0, max_dims=3, max_side=3
            )
        ).input_shapes
    else:
        shapes = [draw(SHAPES) for _ in names]
    values = values or {}
    return {
        name: draw(array_arg(shape, values.get(name)))
        for name, shape in zip(names, shapes, strict=True)
    }


def density_reference(shape, term):
    """Σ over the last axis of term(index) -> (value, |value| for the scale)."""
    if shape == ():
        shape = (1,)
        squeeze = True
    else:
        squeeze = False
    ref, scale = mp_array(shape[:-1]), mp_array(shape[:-1])
    if shape[-1] == 0:  # an empty sum (a density of no variables): 0, for a million rows fast
        ref.fill(mpf(0))
        scale.fill(mpf(1))
    for index in cells(shape[:-1] if shape[-1] else (0,)):
        terms = [term(index + (d,)) for d in range(shape[-1])]
        ref[index] = mpmath.fsum(terms)
        scale[index] = mpmath.fsum(abs(t) for t in terms) + 1
    if squeeze:
        return ref.reshape(()), scale.reshape(())
    return ref, scale


def test_normal_logpdf_contract():
    failures = []

    @examples(250)
    @given(broadcast_args(("x", "mean", "log_std")))
    def prop(args):
        must = bad_arrays(args)
        shape = None if must else broadcast(*(a.shape for a in args.values()))
        if not must and shape is None:
            must.append("log_std")

        def check(result):
            x, mean, log_std = (
                np.broadcast_to(args[n].f64, shape or (1,)) for n in ("x", "mean", "log_std")
            )

            def term(i):
                s = mpf(log_std[i])
                u = (mpf(x[i]) - mpf(mean[i])) * mpmath.exp(-s)
                return -HALF_LOG_2PI - s - u * u / 2

            ref, scale = density_reference(shape, term)
            assert_close(result, ref, scale, out_dtype(*args.values()), inputs=args.values())

        judge(
            "normal_logpdf",
            ("x", "mean", "log_std"),
            lambda: iw.normal_logpdf(args["x"].value, args["mean"].value, args["log_std"].value),
            REFUSE if must else ACCEPT,
            check,
            lambda: repr(args),
            failures,
        )

    prop()
    report(failures)


def test_std_normal_logpdf_contract():
    failures = []

    @examples(150)
    @given(array_arg())
    def prop(z):
        must = bad_arrays({"z": z})

        def check(result):
            zs = z.f64.reshape(z.shape or (1,))
            ref, scale = density_reference(z.shape, lambda i: -HALF_LOG_2PI - mpf(zs[i]) ** 2 / 2)
            assert_close(result, ref, scale, out_dtype(z))

        judge(
            "std_normal_logpdf",
            ("z",),
            lambda: iw.std_normal_logpdf(z.value),
            REFUSE if must else ACCEPT,
            check,
            lambda: repr(z),
            failures,
        )

    prop()
    report(failures)


BINARY = st.one_of(
    *[st.sampled_from([0.0, 1.0])] * 6,
    st.sampled_from([0.5, -1.0, 2.0, 1e308, math.inf, math.nan, 1 + 2**-52]),
)


def test_bernoulli_logpmf_contract():
    failures = []

    @examples(250)
    @given(broadcast_args(("x", "logits"), values={"x": BINARY}))
    def prop(args):
        x, logits = args["x"], args["logits"]
        must = bad_arrays(args)
        if x.f64 is not None and not np.isin(x.f64, (0.0, 1.0)).all() and "x" not in must:
            must.append("x")
        shape = None if must else broadcast(x.shape, logits.shape)
        if not must and shape is None:
            must.append("logits")

        def check(result):
            xs, ls = (np.broadcast_to(a.f64, shape or (1,)) for a in (x, logits))

            def term(i):
                return mpf(xs[i]) * mpf(ls[i]) - mp_softplus(ls[i])

            ref, scale = density_reference(shape, term)
            assert_close(result, ref, scale, out_dtype(x, logits), inputs=(x, logits))

        judge(
            "bernoulli_logpmf",
            ("x", "logits"),
            lambda: iw.bernoulli_logpmf(x.value, logits.value),
            REFUSE if must else ACCEPT,
            check,
            lambda: repr(args),
            failures,
        )

    prop()
    report(failures)


def sigma_overflows(log_std):
    """exp(log_std) is not finite in log_std's dtype: a refusal is allowed."""
    if log_std.f64 is None:
        return False
    # np.log, not math.log: a long double's largest value is no Python float (math.log gives inf)
    return bool((log_std.f64 > float(np.log(np.finfo(log_std.dtype).max))).any())


def reparameterize_reference(mean, log_std, eps, shape):
    m, s, e = (np.broadcast_to(a, shape) for a in (mean, log_std, eps))
    ref, scale = mp_array(shape), mp_array(shape)
    for i in cells(shape):
        step = mpmath.exp(mpf(s[i])) * mpf(e[i])
        ref[i] = mpf(m[i]) + step
        scale[i] = abs(mpf(m[i])) + abs(step)
    return ref, scale


def test_reparameterize_contract():
    failures = []

    @examples(200)
    @given(broadcast_args(("mean", "log_std", "eps")))
    def prop(args):
        must = bad_arrays(args)
        shape = None if must else broadcast(*(a.shape for a in args.values()))
        if not must and shape is None:
            must.append("eps")
        expect = REFUSE if must else EITHER if sigma_overflows(args["log_std"]) else ACCEPT

        def check(result):
            ref, scale = reparameterize_reference(
                args["mean"].f64, args["log_std"].f64, args["eps"].f64, shape
            )
            assert_close(
                result, ref, scale, out_dtype(*args.values()), ulps=8, inputs=args.values()
            )

        judge(
            "reparameterize",
            ("mean", "log_std", "eps"),
            lambda: iw.reparameterize(*(args[n].value for n in ("mean", "log_std", "eps"))),
            expect,
            check,
            lambda: repr(args),
            failures,
        )

    prop()
    report(failures)


HUGE_COUNTS = [10**13, 10**15, 2**62, 10**19, 10**30]
COUNTS = st.one_of(
    st.integers(1, 4),
    st.integers(1, 4).map(np.int64),
    st.sampled_from([0, -1, True, 2.0, math.nan, math.inf, "3", None, np.float64(2), *HUGE_COUNTS]),
)


def bad_count(k, minimum=1):
    """A count that must be refused (not an int, a bool, below minimum)."""
    return isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < minimum


class NotAGenerator:
    pass


RNGS = st.one_of(
    *[st.integers(0, 2**32).map(lambda s: ("seed", s))] * 4,
    st.sampled_from(
        [("bad", 0), ("bad", None), ("bad", "seed"), ("legacy", 0), ("bad", NotAGenerator())]
    ),
)


def make_rng(spec):
    kind, value = spec
    if kind == "seed":
        return np.random.default_rng(value)
    if kind == "legacy":
        return np.random.RandomState(value)
    return value


def test_sample_normal_contract():
    failures = []

    @examples(200)
    @given(RNGS, broadcast_args(("mean", "log_std")), COUNTS)
    def prop(rng, args, k):
        mean, log_std = args["mean"], args["log_std"]
        must = [] if rng[0] == "seed" else ["rng"]
        must += bad_arrays(args)
        shape = (
            None
            if any(a.f64 is None for a in (mean, log_std))
            else broadcast(mean.shape, log_std.shape)
        )
        if shape is None and not bad_arrays(args):
            must.append("log_std")
        if bad_count(k):
            must.append("k")
        elif shape is not None and k > 10**6 and math.prod(shape) > 0:
            must.append("k")  # an array of >= 1e13 numbers cannot be allocated
        # an empty (k, ...) array is fine, but NumPy has no axis of length >= 2^63
        either = sigma_overflows(log_std) or (not bad_count(k) and k >= 2**63)
        expect = REFUSE if must else EITHER if either else ACCEPT

        def check(result):
            z, eps = result
            dtype = np.result_type(mean.dtype, np.float32)
            drawn = dtype if dtype in (np.float32, np.float64) else np.float64
            twin = np.random.default_rng(rng[1])
            want = twin.standard_normal((k,) + shape, dtype=drawn).astype(dtype)
            assert isinstance(eps, np.ndarray) and eps.dtype == dtype, (
                f"eps dtype {getattr(eps, 'dtype', None)}, expected {dtype}"
            )
            np.testing.assert_array_equal(eps, want)
            ref, scale = reparameterize_reference(mean.f64, log_std.f64, want, (k,) + shape)
            assert_close(z, ref, scale, out_dtype(mean, log_std), ulps=8, inputs=(mean, log_std))

        judge(
            "sample_normal",
            ("rng", "mean", "log_std", "k"),
            lambda: iw.sample_normal(make_rng(rng), mean.value, log_std.value, k=k),
            expect,
            check,
            lambda: f"{rng}, {mean!r}, {log_std!r}, k={k!r}",
            failures,
        )

    prop()
    report(failures)


# ---------------------------------------------------------------- bounds

LOG_W_VALUES = st.one_of(
    MODERATE, MODERATE, EXTREMES, st.just(-math.inf), st.sampled_from([math.inf, math.nan])
)


def log_w_arg():
    return array_arg(values=st.one_of(*[LOG_W_VALUES] * 5, MODERATE))


def bound_refusals(log_w):
    must = bad_arrays({"log_w": log_w}, allow_neginf=True)
    if log_w.f64 is not None and (log_w.f64.ndim == 0 or log_w.f64.shape[0] == 0):
        must.append("log_w")
    return must


def columns(log_w, function):
    """function(values (k,)) -> (ref, scale) for every column of log_w (k, ...)."""
    moved = np.moveaxis(log_w, 0, -1)
    return reduce_last(moved, function)


def spread(values, value):
    finite = [abs(mpf(v)) for v in values if np.isfinite(v)]
    return max(finite, default=mpf(0)) + (abs(value) if mpmath.isfinite(value) else 0) + 1


def mp_elbo(values):
    if any(np.isneginf(values)):
        value = -MP_INF
    else:
        value = mpmath.fsum(mpf(v) for v in values) / len(values)
    return value, spread(values, value)


def mp_iwae(values):
    value = mp_logsumexp(values) - mpmath.log(len(values))
    return value, spread(values, value)


def mp_logsumexp_mp(terms):
    """log Σ exp(t) of mpf terms (−inf: a zero weight)."""
    finite = [t for t in terms if not mpmath.isinf(t)]
    if not finite:
        return -MP_INF
    top = max(finite)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(t - top) for t in finite if t - top > -1e4))


def mp_vr(values, alpha):
    """(1/t) log (1/k) Σ w_i^t, t = 1 − α (α as the float the bound computes with)."""
    t = 1 - mpf(alpha)
    if t == 0:
        return mp_elbo(values)
    if t < 0 and any(np.isneginf(values)):  # w_i = 0 to a negative power: L_α = −inf
        return -MP_INF, spread(values, 0)
    terms = [t * mpf(v) if np.isfinite(v) else -MP_INF for v in values]
    value = (mp_logsumexp_mp(terms) - mpmath.log(len(values))) / t
    return value, spread(values, value)


def mp_miwae(values, m):
    groups = np.reshape(values, (m, len(values) // m))
    parts = [mp_iwae(group)[0] for group in groups]
    value = -MP_INF if any(mpmath.isinf(p) for p in parts) else mpmath.fsum(parts) / m
    return value, spread(values, value)


def mp_ciwae(values, beta):
    beta = mpmath.mpf(beta)
    elbo, iwae = mp_elbo(values)[0], mp_iwae(values)[0]
    if beta == 0:
        value = iwae
    elif beta == 1:
        value = elbo
    else:
        value = -MP_INF if mpmath.isinf(elbo) else beta * elbo + (1 - beta) * iwae
    return value, spread(values, value)


REALS = st.one_of(
    st.floats(-4, 4),
    st.sampled_from(
        [
            0.0,
            1.0,
            1 - 2**-53,
            1 + 2**-52,
            0.5,
            1 - 1e-9,
            1 + 1e-7,
            1e20,
            -1e20,
            1e308,
            -1e308,
            5e-324,
            -3.0,
        ]
    ),
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            True,
            "0.5",
            None,
            10**400,
            -(10**400),
            Fraction(1, 3),
            np.float32(0.25),
            np.int64(2),
            np.longdouble("1e400"),
            [0.5],
        ]
    ),
)


def real_number(value, low=-math.inf, high=math.inf):
    """Is ``value`` a real number the contract accepts (finite as a float, in [low, high])?"""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, Fraction, np.integer, np.floating)
    ):
        return False
    try:
        as_float = float(value)
    except OverflowError:
        return False
    return math.isfinite(as_float) and low <= as_float <= high


BOUNDS = {
    "elbo": (lambda lw, p: iw.elbo(lw), lambda v, p: mp_elbo(v), None),
    "iwae_bound": (lambda lw, p: iw.iwae_bound(lw), lambda v, p: mp_iwae(v), None),
    "vr_bound": (lambda lw, p: iw.vr_bound(lw, p), lambda v, p: mp_vr(v, p), "alpha"),
    "miwae_bound": (lambda lw, p: iw.miwae_bound(lw, p), lambda v, p: mp_miwae(v, int(p)), "m"),
    "ciwae_bound": (
        lambda lw, p: iw.ciwae_bound(lw, p),
        lambda v, p: mp_ciwae(v, float(p)),
        "beta",
    ),
}
BOUND_PARAMETERS = {
    None: st.none(),
    "alpha": REALS,
    "m": st.one_of(
        st.integers(1, 4), st.sampled_from([0, -2, True, 2.0, 10**30, np.int64(2), math.nan, "2"])
    ),
    "beta": st.one_of(st.floats(0, 1), REALS),
}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bound_contract(name):
    call, exact, parameter = BOUNDS[name]
    failures = []

    @examples(200)
    @given(log_w_arg(), BOUND_PARAMETERS[parameter])
    def prop(log_w, p):
        must = bound_refusals(log_w)
        if parameter == "alpha" and not real_number(p):
            must.append("alpha")
        if parameter == "beta" and not real_number(p, 0, 1):
            must.append("beta")
        if parameter == "m":
            if bad_count(p):
                must.append("m")
            elif not must and log_w.shape[0] % p:
                must.append("m")

        def check(result):
            ref, scale = columns(log_w.f64, lambda v: exact(v, p))
            assert_close(result, ref, scale, out_dtype(log_w), ulps=64)

        judge(
            name,
            ("log_w",) + ((parameter,) if parameter else ()),
            lambda: call(log_w.value, p),
            REFUSE if must else ACCEPT,
            check,
            lambda: f"{log_w!r}" + (f", {parameter}={p!r}" if parameter else ""),
            failures,
        )

    prop()
    report(failures)


# ---------------------------------------------------------------- optimizers

BETAS = st.one_of(
    st.floats(0, 0.999999),
    st.sampled_from([0.0, 0.9, 0.999, 1 - 2**-40]),
    st.sampled_from([1.0, -0.1, math.nan, True, 1.5, "0.9", None]),
)
LRS = st.one_of(
    st.floats(1e-6, 10),
    st.sampled_from([1e308, 5e-324, 1e-3]),
    st.sampled_from([0.0, -1e-3, math.nan, math.inf, True, "0.1", 10**400]),
)
EPSILONS = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0.0, 1e-4, 1e-300, 1e308]),
    st.sampled_from([-1e-8, math.nan, math.inf, True]),
)


def test_adam_constructor_contract():
    failures = []

    @examples(150)
    @given(LRS, BETAS, BETAS, EPSILONS)
    def prop(lr, beta1, beta2, eps):
        must = [
            name
            for name, ok in (
                ("lr", real_number(lr) and float(lr) > 0),
                ("beta1", real_number(beta1, 0, 1) and beta1 < 1),
                ("beta2", real_number(beta2, 0, 1) and beta2 < 1),
                ("eps", real_number(eps, 0)),
            )
            if not ok
        ]

        def check(adam):
            assert (adam.lr, adam.beta1, adam.beta2, adam.eps) == (lr, beta1, beta2, eps)

        judge(
            "optim.Adam",
            ("lr", "beta1", "beta2", "eps"),
            lambda: iw.optim.Adam(lr, beta1, beta2, eps),
            REFUSE if must else ACCEPT,
            check,
            lambda: f"lr={lr!r}, beta1={beta1!r}, beta2={beta2!r}, eps={eps!r}",
            failures,
        )

    prop()
    report(failures)


GRAD_VALUES = st.one_of(
    MODERATE,
    MODERATE,
    st.sampled_from([0.0, 1e-300, 1e-160, 1e-3, 1e150, 1e160, 1e200, -1e308, 5e-324]),
    SPECIALS,
)


FLOAT64_TINY = float(np.finfo(np.float64).tiny)


def mp_adam(params, grads, lrs, lr, beta1, beta2, eps, tiny=FLOAT64_TINY):
    """The last of Adam's steps in mpmath: the moments over every gradient so far, and the
    change applied to ``params`` -> (params + change, scale |params| + |change| + the change's
    rounding from subnormal moments, with ``tiny`` the smallest normal float of the dtype)."""
    b1, b2, e = mpf(beta1), mpf(beta2), mpf(eps)
    size = mpf(lr if lrs[-1] is None else lrs[-1])
    ref, scale = mp_array(params.shape), mp_array(params.shape)
    for index in cells(params.shape):
        m = v = mpf(0)
        for g in grads:
            gi = mpf(g[index])
            m = b1 * m + (1 - b1) * gi
            v = b2 * v + (1 - b2) * gi * gi
        t = len(grads)
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        denominator = mpmath.sqrt(v_hat) + e
        change = size * m_hat / denominator if denominator else mpf(0)
        ref[index] = mpf(params[index]) + change
        # (1 − β₁)·g of a subnormal g rounds in absolute steps of the smallest subnormal, about
        # ε·tiny: the change is then known only to about lr·ε·tiny / (√v̂ + ε), which this term
        # of the scale (multiplied by ulps·ε in assert_close) allows
        subnormal = 2 * size * mpf(float(tiny)) / denominator if denominator else mpf(0)
        scale[index] = abs(mpf(params[index])) + abs(change) + subnormal
    return ref, scale


def adam_grad_either(grad, beta2, eps):
    """Adam may refuse a gradient whose square is not a float: |g| > √max / 2 overflows, and
    0 < |g| < √(tiny / (1 − β₂)) underflows, which matters when ε is below that / eps."""
    info = np.finfo(grad.dtype)
    g = np.abs(grad.f64)
    smallest = math.sqrt(float(info.tiny) / (1 - beta2)) * 1.01
    tiny_matters = eps < smallest / float(info.eps) * 1.01
    return bool(
        (g > math.sqrt(float(info.max)) / 2 * 0.99).any()
        or (tiny_matters and ((g > 0) & (g < smallest)).any())
    )


@st.composite
def adam_run(draw):
    """An Adam and 1-3 steps of (params, grad, lr) (some with mismatched shapes)."""
    beta1 = draw(st.one_of(st.floats(0, 0.99), st.sampled_from([0.0, 0.9])))
    beta2 = draw(st.one_of(st.floats(0, 0.9999), st.sampled_from([0.0, 0.999])))
    eps = draw(st.sampled_from([1e-4, 0.0, 1e-8, 1e-300, 1.0]))
    lr = draw(st.one_of(st.floats(1e-6, 1), st.sampled_from([1e-3, 1e308])))
    shape = draw(SMALL_SHAPES)
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        p_shape = shape if draw(st.integers(0, 7)) else draw(SMALL_SHAPES)
        g_shape = p_shape if draw(st.integers(0, 7)) else draw(SMALL_SHAPES)
        params = draw(array_arg(p_shape, st.one_of(MODERATE, EXTREMES, SPECIALS)))
        grad = draw(array_arg(g_shape, GRAD_VALUES))
        step_lr = draw(st.one_of(st.none(), st.none(), LRS))
        steps.append((params, grad, step_lr))
    return lr, beta1, beta2, eps, steps


def test_adam_step_contract():
    failures = []

    @examples(200)
    @given(adam_run())
    def prop(run):
        lr, beta1, beta2, eps, steps = run
        adam = iw.optim.Adam(lr, beta1, beta2, eps)
        history = []  # the accepted steps' (grad, lr, dtypes)
        for params, grad, step_lr in steps:
            must = bad_arrays({"params": params, "grad": grad})
            if not must and params.shape != grad.shape:
                must.append("grad")
            if not must and history and params.shape != history[0][0].shape:
                must.append("params")
            if step_lr is not None and not (real_number(step_lr) and float(step_lr) > 0):
                must.append("lr")
            either = not must and adam_grad_either(grad, beta2, eps)
            if not must and not either:  # an update beyond the float range may be refused
                exact, _ = mp_adam(
                    params.f64,
                    [g.f64 for g, _ in history] + [grad.f64],
                    [r for _, r in history] + [step_lr],
                    lr,
                    beta1,
                    beta2,
                    eps,
                )
                largest = to_mp(np.finfo(out_dtype(params, grad)).max)
                either = any(abs(value) > largest for value in exact.flat)
            expect = REFUSE if must else EITHER if either else ACCEPT

            def check(result, params=params, grad=grad, step_lr=step_lr):
                grads = [g.f64 for g, _ in history] + [grad.f64]
                lrs = [r for _, r in history] + [step_lr]
                dtype = out_dtype(params, grad, *(g for g, _ in history))
                ref, scale = mp_adam(
                    params.f64, grads, lrs, lr, beta1, beta2, eps, np.finfo(dtype).tiny
                )
                assert_close(
                    result,
                    ref,
                    scale,
                    dtype,
                    ulps=64,
                    inputs=[params, grad, *(g for g, _ in history)],
                )

            judge(
                "optim.Adam.step",
                ("params", "grad", "lr"),
                lambda params=params, grad=grad, step_lr=step_lr: adam.step(
                    params.value, grad.value, step_lr
                ),
                expect,
                check,
                lambda params=params, grad=grad, step_lr=step_lr: (
                    f"Adam({lr!r}, {beta1!r}, {beta2!r}, {eps!r}) after {len(history)} "
                    f"steps: {params!r}, {grad!r}, lr={step_lr!r}"
                ),
                failures,
            )
            if adam.state is not None and adam.state["t"] > len(history):
                history.append((grad, step_lr))  # the optimizer took this step

    prop()
    report(failures)


def test_clip_by_norm_contract():
    failures = []

    @examples(200)
    @given(array_arg(values=GRAD_VALUES), LRS)
    def prop(grad, max_norm):
        must = bad_arrays({"grad": grad})
        if not (real_number(max_norm) and float(max_norm) > 0):
            must.append("max_norm")

        def check(result):
            g = [mpf(v) for v in grad.f64.ravel()]
            norm = mpmath.sqrt(mpmath.fsum(v * v for v in g))
            factor = min(mpf(1), mpf(max_norm) / norm) if norm else mpf(1)
            ref = np.array([v * factor for v in g], dtype=object).reshape(grad.shape)
            assert_close(result, ref, None, out_dtype(grad), ulps=16)

        judge(
            "optim.clip_by_norm",
            ("grad", "max_norm"),
            lambda: iw.optim.clip_by_norm(grad.value, max_norm),
            REFUSE if must else ACCEPT,
            check,
            lambda: f"{grad!r}, max_norm={max_norm!r}",
            failures,
        )

    prop()
    report(failures)


# ---------------------------------------------------------------- the VAE

SIZES = st.one_of(
    st.integers(1, 3), st.sampled_from([0, -1, 2.0, True, "3", None, np.int64(2), math.nan])
)
HIDDEN = st.one_of(
    st.lists(st.integers(1, 3), max_size=2).map(tuple),
    st.lists(st.integers(1, 3), max_size=2),
    st.sampled_from([5, "ab", (0,), (2.5,), [True], None, (np.int64(2),), ((2,),)]),
)
VAE_DTYPES = st.sampled_from(
    [
        "float64",
        "float32",
        np.float32,
        np.dtype("float64"),
        "float16",
        "int64",
        "f8",
        None,
        {},
        3,
        "bogus",
        np.float16,
    ]
)
VAE_FAST = st.sampled_from([True, False, np.bool_(True), "no", 1, np.array([1, 2])])


def valid_sizes(value):
    return isinstance(value, (tuple, list)) and all(
        not isinstance(h, bool) and isinstance(h, (int, np.integer)) and h >= 1 for h in value
    )


def layout_size(x_dim, z_dim, hidden, decoder_hidden, likelihood):
    enc = (x_dim, *hidden, 2 * z_dim)
    dec = (z_dim, *decoder_hidden, x_dim)
    size = sum(
        (a + 1) * b for sizes in (enc, dec) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )
    return size + (x_dim if likelihood == "gaussian" else 0)


def test_vae_constructor_contract():
    failures = []

    @examples(200)
    @given(
        SIZES,
        SIZES,
        HIDDEN,
        st.one_of(st.none(), HIDDEN),
        st.sampled_from(["bernoulli", "gaussian", "Bernoulli", None, ["gaussian"]]),
        st.sampled_from(["tanh", "relu", "sigmoid", None]),
        VAE_DTYPES,
        VAE_FAST,
        st.sampled_from([{}, {}, {}, {"bogus": 1}]),
    )
    def prop(x_dim, z_dim, hidden, decoder_hidden, likelihood, activation, dtype, fast, extra):
        must = [name for name, value in (("x_dim", x_dim), ("z_dim", z_dim)) if bad_count(value)]
        if not valid_sizes(hidden):
            must.append("hidden")
        if decoder_hidden is not None and not valid_sizes(decoder_hidden):
            must.append("decoder_hidden")
        if likelihood not in ("bernoulli", "gaussian") or not isinstance(likelihood, str):
            must.append("likelihood")
        if activation not in ("tanh", "relu"):
            must.append("activation")
        known = {"float64", "float32"}
        try:
            dtype_name = np.dtype(dtype).name if dtype is not None else None
        except TypeError:
            dtype_name = "?"
        either = (
            dtype is None
            or dtype == "f8"
            or (not isinstance(fast, (bool, np.bool_)) and not isinstance(fast, np.ndarray))
        )
        if dtype is not None and dtype_name not in known:
            must.append("dtype")
        if isinstance(fast, np.ndarray):
            must.append("fast")
        if extra:
            must.append("bogus")
        expect = REFUSE if must else EITHER if either else ACCEPT

        def check(model):
            assert model.layout.size == layout_size(
                int(x_dim),
                int(z_dim),
                tuple(hidden),
                tuple(hidden)[::-1] if decoder_hidden is None else tuple(decoder_hidden),
                likelihood,
            ), f"layout size {model.layout.size}"
            assert model.dtype.name in known

        judge(
            "VAE",
            (
                "x_dim",
                "z_dim",
                "hidden",
                "likelihood",
                "activation",
                "dtype",
                "decoder_hidden",
                "fast",
                "bogus",
            ),
            lambda: iw.VAE(
                x_dim,
                z_dim,
                hidden=hidden,
                likelihood=likelihood,
                activation=activation,
                dtype=dtype,
                decoder_hidden=decoder_hidden,
                fast=fast,
                **extra,
            ),
            expect,
            check,
            lambda: (
                f"{x_dim!r}, {z_dim!r}, hidden={hidden!r}, "
                f"decoder_hidden={decoder_hidden!r}, likelihood={likelihood!r}, "
                f"activation={activation!r}, dtype={dtype!r}, fast={fast!r}, {extra}"
            ),
            failures,
        )

    prop()
    report(failures)


# A tiny model and an independent mpmath forward pass of it.

X_DIM, Z_DIM, HIDDEN_UNITS = 3, 2, 4


def tiny(likelihood="bernoulli", dtype="float64", fast=True):
    return iw.VAE(
        X_DIM, Z_DIM, hidden=(HIDDEN_UNITS,), likelihood=likelihood, dtype=dtype, fast=fast
    )


def mp_blocks(model, theta):
    """θ's blocks as mpmath matrices, by the layout's documented names."""
    blocks = {}
    for name, (start, stop, shape) in model.layout.blocks.items():
        values = [mpf(v) for v in np.asarray(theta, dtype=np.float64)[start:stop]]
        blocks[name] = np.array(values, dtype=object).reshape(shape)
    return blocks


def mp_tanh(x):
    """tanh in mpmath; beyond |x| = 200 it is ±1 to 170 digits (mpmath's own tanh overflows
    Python ints for |x| near 1e300)."""
    return mpmath.sign(x) if abs(x) > 200 else mpmath.tanh(x)


def mp_mlp(blocks, prefix, layers, h):
    """h (rows, d) object array -> tanh MLP output."""
    for layer in range(layers):
        W, b = blocks[f"{prefix}.{layer}.W"], blocks[f"{prefix}.{layer}.b"]
        h = np.array(
            [
                [
                    mpmath.fsum(h[r, i] * W[i, j] for i in range(W.shape[0])) + b[j]
                    for j in range(W.shape[1])
                ]
                for r in range(h.shape[0])
            ],
            dtype=object,
        )
        if layer < layers - 1:
            h = np.vectorize(mp_tanh, otypes=[object])(h)
    return h


def mp_log_weights(model, theta, x, eps):
    """log w (k, n) = log p(x|z) + log p(z) − log q(z|x) in mpmath, with (z − μ)/σ = ε exactly.
    -> (ref, scale) with scale Σ|terms|."""
    blocks = mp_blocks(model, theta)
    xs = np.array([[mpf(v) for v in row] for row in np.asarray(x, np.float64)], dtype=object)
    enc = mp_mlp(blocks, "encoder", model.encoder.n_layers, xs)
    k, n = eps.shape[:2]
    ref, scale = mp_array((k, n)), mp_array((k, n))
    for s in range(k):
        e = np.array([[mpf(v) for v in row] for row in eps[s]], dtype=object)
        z = np.array(
            [
                [enc[r, j] + mpmath.exp(enc[r, Z_DIM + j]) * e[r, j] for j in range(Z_DIM)]
                for r in range(n)
            ],
            dtype=object,
        )
        out = mp_mlp(blocks, "decoder", model.decoder.n_layers, z)
        for r in range(n):
            if model.likelihood == "bernoulli":
                lik = [xs[r, d] * out[r, d] - mp_softplus_mp(out[r, d]) for d in range(X_DIM)]
            else:
                lik = []
                for d in range(X_DIM):
                    ls = blocks["decoder.log_std"][d]
                    u = (xs[r, d] - out[r, d]) * mpmath.exp(-ls)
                    lik.append(-HALF_LOG_2PI - ls - u * u / 2)
            # log p(z) − log q(z) = Σ_j [log σ_j − ½ (z_j² − ε_j²)], with z² − ε² = d (d + 2ε),
            # d = z − ε = μ + (σ − 1) ε: exact even where z² and ε² agree to 300 digits
            ratio = []
            for j in range(Z_DIM):
                log_sigma = enc[r, Z_DIM + j]
                d = enc[r, j] + mpmath.expm1(log_sigma) * e[r, j]
                ratio.append(log_sigma - d * (d + 2 * e[r, j]) / 2)
            # the float code adds log p(z) and −log q(z) term by term: its errors scale with
            # ½ z² + ½ ε² + |log σ|
            sizes = [
                z[r, j] ** 2 / 2 + e[r, j] ** 2 / 2 + abs(enc[r, Z_DIM + j]) + 2
                for j in range(Z_DIM)
            ]
            ref[s, r] = mpmath.fsum(lik + ratio)
            scale[s, r] = mpmath.fsum(abs(t) for t in lik) + mpmath.fsum(sizes) + 1
    return ref, scale


def mp_softplus_mp(x):
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


MODELS = {
    (lik, dt): tiny(lik, dt) for lik in ("bernoulli", "gaussian") for dt in ("float64", "float32")
}
X_OK = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


DEFECTS = [
    "theta nan", "theta short", "theta long", "theta float32", "theta float64", "theta int",
    "theta list", "theta 2d", "theta str", "x nonbinary", "x list", "x ragged", "x 1d",
    "x bool", "x uint8", "x inf", "x rows", "eps shape", "eps 2d", "eps list", "eps k0",
    "eps nan", "theta 1e3", "theta 1e300", "eps 1e155", "eps 1e300", "x 1e300", "theta -1e3",
]  # fmt: skip


@st.composite
def model_case(draw):
    """A model and (theta, x, eps): valid ones with random values, and the bad kinds the brief
    lists (NaN in θ, θ too short, wrong dtype, x not binary, eps of the wrong shape, lists) and
    extreme but finite values."""
    return build_case(
        draw(st.sampled_from(sorted(MODELS))),
        draw(st.integers(0, 2**16)),
        draw(st.sampled_from([0.0, 0.3, 1.0])),
        draw(st.integers(1, 3)),
        draw(st.sampled_from(["none"] * 8 + DEFECTS)),
    )


def every_defect():
    """One case of every defect for every model (the sweep after the random cases)."""
    return [build_case(key, 0, 0.3, 2, bad) for key in sorted(MODELS)
            for bad in ["none"] + DEFECTS]  # fmt: skip


def build_case(key, seed, noise, k, bad):
    model = MODELS[key]
    dtype = model.dtype
    rng = np.random.default_rng(seed)
    theta = model.init(0, X_OK) + rng.normal(scale=noise, size=model.layout.size).astype(dtype)
    x = X_OK.astype(dtype)
    if model.likelihood == "gaussian":
        x = x + rng.normal(size=x.shape).astype(dtype)
    eps = rng.standard_normal((k, 2, Z_DIM)).astype(dtype)
    what, _, how = bad.partition(" ")
    if what == "theta":
        theta = {
            "nan": lambda t: np.where(np.arange(t.size) == 3, np.nan, t),
            "short": lambda t: t[:-1],
            "long": lambda t: np.append(t, 0),
            "float32": lambda t: t.astype(np.float32),
            "float64": lambda t: t.astype(np.float64),
            "int": lambda t: t.astype(int),
            "list": lambda t: t.tolist(),
            "2d": lambda t: t[None],
            "str": lambda t: t.astype(str),
            "1e3": lambda t: np.full_like(t, 1e3),
            "1e300": lambda t: np.full_like(t, 1e300 if t.dtype == np.float64 else 1e38),
            "-1e3": lambda t: np.full_like(t, -1e3),
        }[how](theta)
    elif what == "x":
        x = {
            "nonbinary": lambda v: v + 0.5,
            "list": lambda v: v.tolist(),
            "ragged": lambda v: [[0.0, 1.0, 1.0], [1.0]],
            "1d": lambda v: v[0],
            "bool": lambda v: v.astype(bool) if model.likelihood == "bernoulli" else v,
            "uint8": lambda v: v.astype(np.uint8) if model.likelihood == "bernoulli" else v,
            "inf": lambda v: np.where(np.arange(v.size).reshape(v.shape) == 1, np.inf, v),
            "rows": lambda v: v[:1],
            "1e300": lambda v: v * (1e300 if v.dtype == np.float64 else 1e38),
        }[how](x)
    elif what == "eps":
        eps = {
            "shape": lambda e: e[:, :, :1],
            "2d": lambda e: e[0],
            "list": lambda e: e.tolist(),
            "k0": lambda e: e[:0],
            "nan": lambda e: e * np.nan,
            "1e155": lambda e: np.full_like(e, 1e155 if e.dtype == np.float64 else 1e19),
            "1e300": lambda e: np.full_like(e, 1e300 if e.dtype == np.float64 else 1e38),
        }[how](eps)
    return model, theta, x, eps, bad


def refused_parts(model, bad):
    """Which of theta, x, eps a model_case's defect makes invalid (each must be refused)."""
    theta = {"theta nan", "theta short", "theta long", "theta 2d", "theta str"}
    theta.add("theta float32" if model.dtype == np.float64 else "theta float64")
    x = {"x ragged", "x 1d", "x inf"}
    if model.likelihood == "bernoulli":
        x |= {"x nonbinary", "x 1e300"}
    eps = {"eps shape", "eps 2d", "eps k0", "eps nan", "x rows"}  # x rows: eps has 2 rows
    return {
        part for part, bad_ones in (("theta", theta), ("x", x), ("eps", eps)) if bad in bad_ones
    }


def model_expect(model, bad, parts=("theta", "x", "eps")):
    """REFUSE if the defect is in one of ``parts``; EITHER for an int or list θ given to a
    float32 model (it converts to float64, which is not the model's dtype: refusing it as a
    dtype mismatch is fair); else ACCEPT."""
    if refused_parts(model, bad) & set(parts):
        return REFUSE
    if model.dtype == np.float32 and bad in ("theta int", "theta list") and "theta" in parts:
        return EITHER
    # finite but extreme: σ = exp(log σ), z or z² overflows on the way. The reliability issue
    # allows either an exact answer or a refusal at the door that names the argument and why
    if bad in ("theta 1e3", "theta 1e300", "theta -1e3", "eps 1e155", "eps 1e300"):
        return EITHER
    return ACCEPT


def judge_log_weights(case, failures):
    model, theta, x, eps, bad = case

    def check(result):
        ref, scale = mp_log_weights(model, theta, x, np.asarray(eps, np.float64))
        assert_close(result, ref, scale, model.dtype, ulps=2**14)

    judge(
        "VAE.log_weights",
        ("theta", "x", "eps"),
        lambda: model.log_weights(theta, x, eps),
        model_expect(model, bad),
        check,
        lambda: f"{model!r}, case {bad!r}",
        failures,
    )


def test_vae_log_weights_contract():
    failures = []

    @examples(100)
    @given(model_case())
    def prop(case):
        judge_log_weights(case, failures)

    prop()
    for case in every_defect():
        judge_log_weights(case, failures)
    # stop_q is a switch: True/False; an array has no truth value and must be refused by name
    model, theta, x, eps, _ = build_case(("bernoulli", "float64"), 0, 0.3, 2, "none")
    plain = model.log_weights(theta, x, eps)
    for stop_q in (True, False, np.bool_(True), 1, "no", None, np.array([1, 2])):
        judge(
            "VAE.log_weights",
            ("theta", "x", "eps", "stop_q"),
            lambda stop_q=stop_q: model.log_weights(theta, x, eps, stop_q=stop_q),
            REFUSE
            if isinstance(stop_q, np.ndarray)
            else ACCEPT
            if isinstance(stop_q, (bool, np.bool_))
            else EITHER,
            lambda result: np.testing.assert_array_equal(result, plain),  # same values
            lambda stop_q=stop_q: f"{model!r}, stop_q={stop_q!r}",
            failures,
        )
    report(failures)


def mp_scale(array):
    return np.vectorize(lambda v: abs(v) + 1, otypes=[object])(array)


def mp_rows(array):
    return np.array([[mpf(v) for v in row] for row in np.asarray(array, np.float64)], dtype=object)


def judge_encode_decode(case, failures):
    model, theta, x, z, bad = case  # eps serves as z: (k, n, z_dim) for decode
    ulps = 2**10 if model.dtype == np.float32 else 64

    def check_encode(result):
        enc = mp_mlp(mp_blocks(model, theta), "encoder", model.encoder.n_layers, mp_rows(x))
        for got, part in zip(result, (enc[:, :Z_DIM], enc[:, Z_DIM:]), strict=True):
            assert_close(got, part, mp_scale(part), model.dtype, ulps=ulps)

    if not bad.startswith("eps"):
        judge(
            "VAE.encode",
            ("theta", "x"),
            lambda: model.encode(theta, x),
            model_expect(model, bad, ("theta", "x")),
            check_encode,
            lambda: f"{model!r}, case {bad!r}",
            failures,
        )

    def check_decode(result):
        flat = np.asarray(z, np.float64).reshape(-1, Z_DIM)
        out = mp_mlp(mp_blocks(model, theta), "decoder", model.decoder.n_layers, mp_rows(flat))
        out = out.reshape(np.shape(z)[:-1] + (X_DIM,))
        assert_close(result, out, mp_scale(out), model.dtype, ulps=ulps)

    if not bad.startswith("x"):  # z of any leading shape, even empty, is fine
        z_bad = bad in ("eps shape", "eps nan")
        judge(
            "VAE.decode",
            ("theta", "z"),
            lambda: model.decode(theta, z),
            REFUSE if z_bad else model_expect(model, bad, ("theta",)),
            check_decode,
            lambda: f"{model!r}, z from case {bad!r}",
            failures,
        )


def test_vae_encode_decode_contract():
    failures = []

    @examples(60)
    @given(model_case())
    def prop(case):
        judge_encode_decode(case, failures)

    prop()
    for case in every_defect():
        judge_encode_decode(case, failures)
    report(failures)


def test_vae_init_contract():
    failures = []
    model = MODELS["bernoulli", "float64"]

    @examples(80)
    @given(
        st.one_of(
            st.integers(0, 2**70),
            st.sampled_from(
                [-1, 1.0, True, math.nan, "0", None, np.int64(3), np.uint8(7), np.array(3)]
            ),
        ),
        st.sampled_from(["none", "ok", "nonbinary", "list", "wrong width", "nan", "empty"]),
    )
    def prop(seed, data):
        x = {
            "none": None,
            "ok": X_OK,
            "nonbinary": X_OK + 0.5,
            "list": X_OK.tolist(),
            "wrong width": X_OK[:, :2],
            "nan": X_OK * np.nan,
            "empty": X_OK[:0],
        }[data]
        must = ["seed"] if bad_count(seed, minimum=0) else []
        if data in ("nonbinary", "wrong width", "nan", "empty"):
            must.append("x")

        def check(theta):
            assert theta.shape == (model.layout.size,) and theta.dtype == model.dtype
            assert np.isfinite(theta).all()
            np.testing.assert_array_equal(theta, model.init(seed, x))  # deterministic
            _, log_std = model.encode(theta, X_OK)
            np.testing.assert_array_equal(log_std, 0.0)  # q starts at σ = 1

        judge(
            "VAE.init",
            ("seed", "x"),
            lambda: model.init(seed, x),
            REFUSE if must else ACCEPT,
            check,
            lambda: f"seed={seed!r}, x={data}",
            failures,
        )

    prop()
    # a θ too large for memory: a ValueError naming a size (at construction) or the call's
    # argument, not a MemoryError
    judge(
        "VAE.init",
        ("seed", "x", "x_dim", "z_dim", "hidden", "decoder_hidden"),
        lambda: iw.VAE(10**12, 2, hidden=()).init(0),
        EITHER,
        lambda theta: None,
        lambda: "VAE(10**12, 2, hidden=()).init(0)",
        failures,
    )
    judge(
        "VAE.init",
        ("seed", "x", "x_dim", "z_dim", "hidden", "decoder_hidden"),
        lambda: iw.VAE(2, 1, hidden=(10**13,)).init(0),
        EITHER,
        lambda theta: None,
        lambda: "VAE(2, 1, hidden=(10**13,)).init(0)",
        failures,
    )
    report(failures)


def judge_sampling(key, rng, k, n, method, theta_kind, failures):
    model = MODELS[key]
    theta = model.init(0, X_OK)
    theta = {
        "ok": theta,
        "nan": theta * np.nan,
        "short": theta[:-1],
        "1e300": np.full_like(theta, 1e300 if theta.dtype == np.float64 else 1e38),
    }[theta_kind]
    must = [] if rng[0] == "seed" else ["rng"]
    for name, value in (("k", k), ("n", n)):
        if name == "k" and method != "draw_eps":
            continue
        if bad_count(value):
            must.append(name)
        elif value > 10**6:
            must.append(name)  # >= 1e13 numbers: cannot be allocated
    if method == "sample" and theta_kind in ("nan", "short"):
        must.append("theta")
    expect = REFUSE if must else ACCEPT
    if expect == ACCEPT and method == "sample" and theta_kind == "1e300":
        expect = EITHER  # σ_x or the decoder's output may overflow: a named refusal is allowed

    def check(result):
        twin = np.random.default_rng(rng[1])
        if method == "draw_eps":
            want = twin.standard_normal((k, n, Z_DIM), dtype=model.dtype)
            assert result.dtype == model.dtype
            np.testing.assert_array_equal(result, want)
        elif method == "sample_prior":
            want = twin.standard_normal((n, Z_DIM), dtype=model.dtype)
            assert result.dtype == model.dtype
            np.testing.assert_array_equal(result, want)
        else:
            x, z = result
            want = twin.standard_normal((n, Z_DIM), dtype=model.dtype)
            np.testing.assert_array_equal(z, want)
            assert x.shape == (n, X_DIM) and x.dtype == model.dtype
            assert not np.isnan(x).any(), f"NaN in x: {x}"
            if model.likelihood == "bernoulli":
                assert np.isin(x, (0, 1)).all()
            elif theta_kind == "ok":
                assert np.isfinite(x).all(), f"non-finite x: {x}"

    call = {
        "draw_eps": lambda: model.draw_eps(make_rng(rng), k, n),
        "sample_prior": lambda: model.sample_prior(make_rng(rng), n),
        "sample": lambda: model.sample(theta, make_rng(rng), n),
    }[method]
    params = {
        "draw_eps": ("rng", "k", "n"),
        "sample_prior": ("rng", "n"),
        "sample": ("theta", "rng", "n"),
    }[method]
    judge(
        f"VAE.{method}",
        params,
        call,
        expect,
        check,
        lambda: f"{model!r}, {rng}, k={k!r}, n={n!r}, theta {theta_kind}",
        failures,
    )


def test_vae_sampling_contract():
    failures = []

    @examples(120)
    @given(
        st.sampled_from(sorted(MODELS)),
        RNGS,
        COUNTS,
        COUNTS,
        st.sampled_from(["draw_eps", "sample_prior", "sample"]),
        st.sampled_from(["ok", "ok", "nan", "short", "1e300"]),
    )
    def prop(key, rng, k, n, method, theta_kind):
        judge_sampling(key, rng, k, n, method, theta_kind, failures)

    prop()
    # every method with counts too large for memory, and sampling from an extreme θ
    for method in ("draw_eps", "sample_prior", "sample"):
        for k, n in ((10**15, 2), (2, 10**15), (2**62, 2), (2, 2**62), (10**19, 10**19)):
            judge_sampling(("gaussian", "float64"), ("seed", 0), k, n, method, "ok", failures)
    for key in sorted(MODELS):
        judge_sampling(key, ("seed", 0), 1, 2, "sample", "1e300", failures)
    report(failures)


# ---------------------------------------------------------------- second order


def hvp_matches_differences(f, x, v, name, failures, h=1e-5, rtol=1e-5):
    """autograd's H·v against (∇f(x + h v) − ∇f(x − h v)) / 2h, both in float64."""
    TALLY[f"hvp:{name}"][0] += 1
    grad = autograd.grad(f)
    with warnings.catch_warnings():  # a constant gradient (the ELBO's) makes H = 0: fine
        warnings.filterwarnings("ignore", "Output seems independent of input")
        hvp = autograd.grad(lambda y: anp.sum(grad(y) * v))(x)
    differences = (grad(x + h * v) - grad(x - h * v)) / (2 * h)
    finite = np.isfinite(hvp).all() and np.isfinite(differences).all()
    size = max(np.linalg.norm(differences), np.linalg.norm(hvp), 1e-8)
    error = np.linalg.norm(np.where(np.isfinite(hvp), hvp, 0) - differences) / size
    if finite and error < rtol:
        TALLY[f"hvp:{name}"][1] += 1
    else:
        failures.append(
            f"hvp:{name} at {_short(x)} along {_short(v)}: relative error "
            f"{error:.2e}, hvp {_short(hvp)}, differences {_short(differences)}"
        )


def unit(rng, shape):
    v = rng.standard_normal(shape)
    return v / max(np.linalg.norm(v), 1e-12)


SECOND_ORDER = {
    "logsumexp": lambda a, w: anp.sum(w * iw.logsumexp(a, axis=0)),
    "logsumexp(axis=None)": lambda a, w: iw.logsumexp(a) * anp.sum(w),
    "logsumexp(axis=1, keepdims)": lambda a, w: anp.sum(
        w[:, None] * iw.logsumexp(anp.transpose(a), axis=1, keepdims=True)
    ),
    "log_mean_exp": lambda a, w: anp.sum(w * iw.log_mean_exp(a)),
    "softplus": lambda a, w: anp.sum(w * iw.softplus(a)),
    "log_sigmoid": lambda a, w: anp.sum(w * iw.log_sigmoid(a)),
    "sigmoid": lambda a, w: anp.sum(w * iw.sigmoid(a)),
    "elbo": lambda a, w: anp.sum(w * iw.elbo(a)),
    "iwae_bound": lambda a, w: anp.sum(w * iw.iwae_bound(a)),
    "vr_bound(0.5)": lambda a, w: anp.sum(w * iw.vr_bound(a, 0.5)),
    "vr_bound(-1.5)": lambda a, w: anp.sum(w * iw.vr_bound(a, -1.5)),
    "vr_bound(1 - 1e-9)": lambda a, w: anp.sum(w * iw.vr_bound(a, 1 - 1e-9)),
    "vr_bound(2.5)": lambda a, w: anp.sum(w * iw.vr_bound(a, 2.5)),
    "miwae_bound(2)": lambda a, w: anp.sum(w * iw.miwae_bound(a, 2)),
    "ciwae_bound(0.3)": lambda a, w: anp.sum(w * iw.ciwae_bound(a, 0.3)),
}


@pytest.mark.parametrize("name", list(SECOND_ORDER))
def test_second_order(name):
    f = SECOND_ORDER[name]
    failures = []

    @examples(25)
    @given(
        st.integers(0, 2**32),
        st.sampled_from([(2, 3), (4, 1), (6, 2)]),
        st.sampled_from([1.0, 3.0]),
    )
    def prop(seed, shape, spread):
        rng = np.random.default_rng(seed)
        a = rng.normal(scale=spread, size=shape)
        w = rng.normal(size=shape[1])
        # near α = 1 the Hessian is t = 1e-9 times the gradient's size, and so is the third
        # derivative: a wide step keeps the difference above the gradient's rounding
        h = 0.5 if name == "vr_bound(1 - 1e-9)" else 1e-5
        hvp_matches_differences(lambda y: f(y, w), a, unit(rng, shape), name, failures, h=h)

    prop()
    report(failures)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("fast", [True, False])
def test_second_order_log_weights(likelihood, fast):
    model = tiny(likelihood, fast=fast)
    failures = []

    @examples(12)
    @given(st.integers(0, 2**32))
    def prop(seed):
        rng = np.random.default_rng(seed)
        x = X_OK if likelihood == "bernoulli" else rng.normal(size=X_OK.shape)
        theta = model.init(0, x) + 0.3 * rng.normal(size=model.layout.size)
        eps = rng.standard_normal((3, 2, Z_DIM))
        c = rng.normal(size=(3, 2))
        name = f"VAE.log_weights({likelihood}, fast={fast})"
        hvp_matches_differences(
            lambda t: anp.sum(c * model.log_weights(t, x, eps)),
            theta,
            unit(rng, theta.shape),
            name + " wrt theta",
            failures,
        )
        hvp_matches_differences(
            lambda e: anp.sum(c * model.log_weights(theta, x, e)),
            eps,
            unit(rng, eps.shape),
            name + " wrt eps",
            failures,
        )

    prop()
    report(failures)


# ---------------------------------------------------------------- the totals


def test_zz_summary(capsys):
    """Print the cases tried / held per function (for the closing note)."""
    with capsys.disabled():
        print("\n\ncontract cases per function (tried / held):")
        for name in sorted(TALLY):
            tried, held = TALLY[name]
            print(f"  {name:<48} {tried:>6} / {held:<6}")
        tried = sum(t for t, _ in TALLY.values())
        held = sum(h for _, h in TALLY.values())
        print(f"  {'total':<48} {tried:>6} / {held:<6}")
