"""Verify derivatives against finite differences: gradients, Jacobians, VJPs, second derivatives.

Everything here is one comparison. f maps its arguments, flattened into one vector x of n
entries, to outputs flattened into m entries, with Jacobian J (m × n). A check compares

    A = uᵀ J v   (yours or autograd's)   with   N = uᵀ (f(x + h v) − f(x − h v)) / 2h

for unit vectors u = e_i, v = e_j (the entry J_ij, named in the words of the math, e.g.
"∂z[0, 1]/∂`log_std`[0, 1]") or random unit vectors (which see every entry at once). A scalar f
has m = 1, so J is the gradient. Second derivatives are the same comparison applied to the
gradient x ↦ ∇f(x), whose Jacobian is the Hessian. Inputs are always checked in float64,
whatever their dtype, because float32 differences are too coarse (docs/design.md §4, §11).

The step. With φ(t) = uᵀf(x + t v), the central difference D(h) errs by truncation
≈ |φ'''| h²/6 and by round-off ≈ η/h, η the rounding in computed values of φ. Neither is known
in advance (|x| says nothing about how fast f varies: sin at x = 1e4, log at x = 1e-4), so every
direction v is differenced at two steps, h and h/2, starting from h = ε^(1/3) ≈ 6e-6 (at least
1e3·ε·max|x_j|, so that the step survives the rounding of x):

    truncation ≈ 2 |D(h) − D(h/2)|              (D(h) − D(h/2) ≈ ¾ φ''' h²/6)
    noise      ≈ η / h,   η = max(Σ_i |u_i| r(f_i),  |Δ⁴φ| / √70)
    r(f)       = 2ε · max(|f| · max(1, |ln|f||),  min(|f|, 1) · max_j |x_j|)

r(f) is the rounding to expect in a computed value f (at the largest |f| among the values used):
a value computed as e^y carries its exponent's rounding ε|y| as relative rounding, and y is
ln|f| or a combination of entries of x (softmax weights of log-weights at −1e4 carry 1e4·ε).
The fourth difference Δ⁴φ = φ(−h) − 4φ(−h/2) + 6φ(0) − 4φ(h/2) + φ(h) measures the rounding of
the values themselves (each enters it with weight √70). A gap |D(h) − D(h/2)| that stands clear
of the noise also bounds the truncation at every other step tried (∝ h²), so a gap that vanished
by chance does not pass for accuracy.

The step moves when noise + truncation is above min(rtol, 1e-3)/10 of the derivative (of its
largest term u_i J_ij v_j, for a random check; never below atol/10 or 1e-12 of the largest entry
in its row, so that exact zeros do not drive it): down to h·(r / (2·truncation))^(1/3) (between
h/1000 and h/2) when the gap is visible above the rounding r, else up (×2 to ×1000) until the
noise is small enough; at most 4 steps per direction, and each check keeps the step with the
smallest noise + truncation. Where f is not finite or raises (the edge of its domain) the step
is cut by 10. Where D(h/2) ≈ 2 D(h) at the smallest steps, f (or the gradient differenced) jumps
along v: no truncation allowance there, and a note says so. Richardson uses R(h) = (4 D(h/2) −
D(h))/3, truncation 2|R(h) − R(h/2)| ∝ h⁴, noise 3η/h; the complex step uses C(h) = Im f(x +
ihv)/h, truncation 2|C(h) − C(h/2)|, noise 2ε|C(h)|, cross-checked against central differences
(where they disagree f is not complex-analytic, and central differences are used).

The rule. A check passes when

    |A − N| ≤ atol + rtol · max(|A|, |N|) + noise + truncation,

and its relative error |A − N| / (max(|A|, |N|) + (atol + noise + truncation) / rtol) is ≤ rtol
exactly then. A correct derivative typically shows 1e-11 to 1e-7, a 1% mistake 1e-2. A check
whose noise + truncation stays above 0.2% of its derivative cannot see a 1% error: the report's
notes list those (an entry 1e-15 of its neighbours, a value rounded to a constant).

Small problems (n and m ≤ ``max_full``) are checked entry by entry. Larger ones get random
directions plus a random sample of single entries. A 1% error in one of n entries moves a random
uᵀJv by only about 1%/√n, below rtol, so a random check is also screened against the
finite-difference error alone: when |A − N| > atol + noise + truncation + 1e-10 Σ|u_i J_ij v_j|,
v's entries (then u's) are halved, the half that still disagrees is kept, down to one entry,
which is checked by the rule above and named.

``check_vjp(primitive, *args)`` checks the VJPs of an autograd primitive (``defvjp``), and with
``order=2`` the VJP of those VJPs, as PyTorch's gradcheck and gradgradcheck do for a function.

``gradcheck(..., sweep=True)`` adds the experiment that shows why the step can be trusted: the
error against h over 13 decades for the worst entry (a V: truncation ∝ h² on the right, round-off
∝ 1/h on the left), with Richardson extrapolation and the complex step beside it.
"""

import inspect
import math
import numbers
import os
import re
import warnings
from collections import namedtuple
from dataclasses import dataclass, field

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.core import primitive_vjps
from autograd.tracer import getval

from .checks import (
    check_array,
    check_output_file,
    checked,
    flag,
    integer,
    number,
    one_of,
    optional,
    outside,
    positive,
)

EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).smallest_subnormal)
DEFAULT_STEP = float(EPS ** (1 / 3))  # ≈ 6.06e-6: central differences, error O(h²) + O(ε/h)
RICHARDSON_STEP = float(EPS ** (1 / 5))  # ≈ 7.4e-4: Richardson, error O(h⁴) + O(ε/h)
COMPLEX_STEP = 1e-20  # the complex step has no cancellation: any tiny h will do
METHODS = ("central", "richardson", "complex")
SWEEP_STEPS = np.logspace(-14, -1, 53)  # relative steps of the sweep, 4 per decade

ROUNDING = 2.0  # rounding of one computed value of f, in units of ε·|f|
RESOLVE = 0.1  # the step moves until noise + truncation ≤ RESOLVE · min(rtol, 1e-3) · |derivative|
MAX_STEPS = 4  # steps tried per direction
SCREEN = 1e-10  # a random check is bisected when it disagrees beyond noise + SCREEN Σ|u J v|
MAX_LOCATED = 3  # culprits located by bisection per report
UNRESOLVED = 2e-3  # noise + truncation above this fraction of a derivative: a 1% error may hide


# ---------------------------------------------------------------- the report


class Check(namedtuple("Check", "label analytic numeric rel_error")):
    """One check: (label, analytic, numeric, rel_error), a tuple as before, with the allowance
    it was judged by as attributes: noise, truncation (estimated), atol, step (h), and
    ``allowance`` = atol + noise + truncation. rel_error = |A − N| / (max(|A|, |N|) + allowance /
    rtol): the check passes when it is ≤ rtol."""

    def __new__(cls, label, analytic, numeric, rel_error, noise=0.0, truncation=0.0, **extra):
        self = super().__new__(cls, label, float(analytic), float(numeric), float(rel_error))
        self.noise, self.truncation = float(noise), float(truncation)
        self.atol = float(extra.get("atol", 0.0))
        self.step = float(extra.get("step", math.nan))
        self.random = bool(extra.get("random", False))
        return self

    @property
    def allowance(self):
        return self.atol + self.noise + self.truncation


@dataclass
class GradcheckReport:
    """The outcome of ``gradcheck`` or ``check_vjp``.

    passed: every check within the rule |A − N| ≤ atol + rtol·max(|A|, |N|) + noise +
    truncation; max_rel_error: the largest relative error seen (≤ rtol iff passed); worst: where
    (e.g. "coordinate (i, j)", "`log_std`[2, 0]", "∂z[1]/∂`mean`[1]", "∂²f/∂`mu`[0]∂`s`[0]", or
    with random unit vectors u_l, v_k in place of an entry), preferring a named entry among the
    failures, with ``analytic`` (yours or autograd's) and ``numeric`` (finite differences) its
    two values; checks: a ``Check`` (label, analytic, numeric, rel_error; .noise, .truncation,
    .step) for every check; failures: those beyond ``rtol``; noise_floor: the largest allowance
    atol + noise + truncation over the checks (each check has its own); step: the step the
    search started from (or the fixed ``step=``); kind: "gradient", "Jacobian", "Hessian" or
    "second derivatives"; of: what was differentiated ("" for one array and a scalar f, the
    original report); notes: warnings, such as a gradient autograd cannot see through, checks
    the finite differences cannot resolve, culprits located by bisection, arguments check_vjp
    skipped; sweep: a StepSweep when asked for; atol: the absolute tolerance used (0 unless
    given); fixed_step: the step was given, not searched; evaluations: how many times f (or the
    gradient differenced) was evaluated for the finite differences.
    """

    passed: bool
    max_rel_error: float
    worst: str
    analytic: float
    numeric: float
    rtol: float
    step: float
    noise_floor: float
    gradient_name: str = "autograd"
    checks: list = field(default_factory=list, repr=False)
    kind: str = "gradient"
    of: str = ""
    method: str = "central"
    notes: list = field(default_factory=list, repr=False)
    sweep: object = field(default=None, repr=False)
    atol: float = 0.0
    fixed_step: bool = False
    evaluations: int = 0

    @property
    def failures(self):
        """The checks beyond the tolerance, worst first."""
        return sorted((c for c in self.checks if c[3] > self.rtol), key=lambda c: -c[3])

    def __repr__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        legacy = not self.of  # one array, a scalar f, first order: the original report
        if legacy:
            source, short = f"{self.gradient_name} gradient", self.gradient_name
        else:
            source = short = {"your": "yours"}.get(self.gradient_name, self.gradient_name)
        what = "" if legacy else f" ({self.kind} of {self.of})"
        lines = [
            f"gradcheck {verdict}{what}: max relative error {self.max_rel_error:.3g} "
            f"(tolerance {self.rtol:.3g}) over {len(self.checks)} checks",
            f"  worst: {self.worst}: {source} {self.analytic:.10g}, "
            f"finite differences {self.numeric:.10g}",
        ]
        how = {
            "central": "central differences",
            "richardson": "Richardson-extrapolated central differences",
            "complex": "complex step Im f(x + ih·v)/h",
        }[self.method]
        steps = [c.step for c in self.checks if math.isfinite(getattr(c, "step", math.nan))]
        if self.fixed_step or not steps:
            chosen = f"step h = {self.step:.3g}"
        elif min(steps) == max(steps):
            chosen = f"step h = {steps[0]:.3g} (checked against h/2)"
        else:
            chosen = (
                f"step h chosen per direction from {min(steps):.2g} to {max(steps):.2g} "
                f"(started at {self.step:.2g}, checked against h/2)"
            )
        lines.append(f"  {how}, {chosen}")
        allowances = [c.noise + c.truncation for c in self.checks if hasattr(c, "noise")]
        mine = {"your": "yours"}.get(short, short)
        lines.append(
            f"  rule: |{mine} − fd| ≤ atol + rtol·max(|{mine}|, |fd|) + noise + truncation, "
            f"atol = {self.atol:.2g}, rtol = {self.rtol:.2g}; "
            f"noise + truncation up to {max(allowances, default=0.0):.2g}"
        )
        if not legacy and any(re.search(r"\b[uv]_\d", c[0]) for c in self.checks):
            lines.append("  u_l, v_k: random unit vectors (over the outputs and the inputs)")
        elif legacy and any(c[0].startswith("direction") for c in self.checks):
            lines.append("  direction k: a random unit vector over the coordinates")
        lines += [f"  note: {note}" for note in self.notes]
        bad = sorted(self.failures, key=lambda c: getattr(c, "random", False))  # entries first
        if bad:
            lines.append(f"  {len(bad)} of {len(self.checks)} checks disagree, e.g.:")
            for check in bad[:5]:
                label, analytic, numeric, rel = check
                lines.append(
                    f"    {label}: {short} {analytic:.8g} vs finite differences {numeric:.8g} "
                    f"(relative error {rel:.2g}; noise + truncation "
                    f"{getattr(check, 'noise', 0.0) + getattr(check, 'truncation', 0.0):.2g})"
                )
        if self.sweep is not None:
            lines += ["  " + line for line in repr(self.sweep).splitlines()]
        return "\n".join(lines)


# ---------------------------------------------------------------- structures of arrays


def _entry_text(name, shape, index, quoted=True):
    """`name`[i, j] (plain name when it is not an identifier or not ``quoted``; no index for a
    0-d array)."""
    text = f"`{name}`" if quoted and name.isidentifier() else name
    return text + (f"[{', '.join(str(int(i)) for i in index)}]" if shape else "")


def _real_array(part, dtype, what, describe):
    """``part`` as an array of ``dtype``; a complex value where real numbers are expected, text
    or a ragged list is a ValueError."""
    try:
        raw = np.asarray(part)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what}: expected {describe} as an array of numbers, got {type(part).__name__} "
            f"({error})"
        ) from None
    if raw.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        raise ValueError(
            f"{what}: expected {describe} with real values, got complex values ({raw.dtype}); "
            "gradcheck checks real functions: take anp.real or anp.abs yourself if that is meant"
        )
    try:
        return np.asarray(raw, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what}: expected {describe} as an array of numbers, got {type(part).__name__} "
            f"({error})"
        ) from None


class _Structure:
    """One array, a tuple of arrays or a dict of arrays, seen as one flat vector.

    kind: "array", "tuple" or "dict"; names, shapes: of the parts; keys: the dict's keys."""

    def __init__(self, kind, names, shapes, keys=None, quoted=True):
        self.kind, self.names, self.shapes = kind, list(names), [tuple(s) for s in shapes]
        self.keys, self.quoted = keys, quoted
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.size = int(self.offsets[-1])

    def parts(self, value):
        """The parts of a value of this structure, in order (a list)."""
        if self.kind == "array":
            return [value]
        if self.kind == "dict":
            return [value[key] for key in self.keys]
        return list(value)

    def call(self, function, value):
        """function(x), function(*x) or function(**x)."""
        if self.kind == "array":
            return function(value)
        if self.kind == "dict":
            return function(**value)
        return function(*value)

    def unflatten(self, vector):
        """The flat vector as this structure (traceable: a box gives boxes)."""
        parts = [
            anp.reshape(vector[a:b], shape)
            for a, b, shape in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        ]
        if self.kind == "array":
            return parts[0]
        if self.kind == "dict":
            return dict(zip(self.keys, parts, strict=True))
        return tuple(parts)

    def flatten_traceable(self, value):
        """A value of this structure as one vector, with autograd.numpy (a box stays a box; a
        nested list of boxes becomes one array)."""
        parts = [
            anp.array(part) if isinstance(part, (list, tuple)) else part
            for part in self.parts(value)
        ]
        if len(parts) == 1:
            return anp.ravel(parts[0])
        return anp.concatenate([anp.ravel(part) for part in parts])

    def flatten(self, value, what, describe, dtype=np.float64):
        """A value of this structure (checked part by part) as one vector of ``dtype``."""
        if self.kind == "array":
            parts = [value]
        elif self.kind == "dict":
            if not isinstance(value, dict) or set(value) != set(self.keys):
                got = (
                    f"keys {sorted(map(str, value))}"
                    if isinstance(value, dict)
                    else type(value).__name__
                )
                raise ValueError(f"{what}: expected a dict with keys {self.keys}, got {got}")
            parts = [value[key] for key in self.keys]
        else:
            if not isinstance(value, (tuple, list)) or len(value) != len(self.shapes):
                got = (
                    f"{len(value)} of them"
                    if isinstance(value, (tuple, list))
                    else type(value).__name__
                )
                raise ValueError(
                    f"{what}: expected a tuple of {len(self.shapes)} arrays "
                    f"({', '.join(self.names)}), got {got}"
                )
            parts = list(value)
        flat = []
        for name, shape, part in zip(self.names, self.shapes, parts, strict=True):
            if isinstance(part, dict):
                raise ValueError(
                    f"{what}: expected {describe}{self.whose(name)} as an array of numbers, "
                    "got a dict"
                )
            array = _real_array(part, dtype, what, describe + self.whose(name))
            if array.shape != shape:
                raise ValueError(
                    f"{what}: expected {describe}{self.whose(name)} of shape {shape}, "
                    f"got {array.shape}"
                )
            flat.append(array.ravel())
        return np.concatenate(flat) if len(flat) > 1 else flat[0].copy()

    def whose(self, name):
        return "" if self.kind == "array" else f" for {_entry_text(name, (), ())}"

    def entry(self, flat):
        """The name of entry ``flat`` of the vector, e.g. "`log_std`[2, 0]"."""
        part = int(np.searchsorted(self.offsets, flat, side="right") - 1)
        shape = self.shapes[part]
        index = np.unravel_index(flat - self.offsets[part], shape) if shape else ()
        return _entry_text(self.names[part], shape, index, self.quoted)

    def with_part(self, name, shape):
        """This structure with one more array appended (a tuple of all the parts)."""
        return _Structure("tuple", self.names + [name], self.shapes + [shape])


def _parameter_names(function, count):
    """The first ``count`` positional parameter names of ``function``, or None. Looks through
    wrappers (``checked``) and autograd primitives (whose own signature is (*args, **kwargs))."""
    candidates, seen = [function], function
    while getattr(seen, "__wrapped__", None) is not None:
        seen = seen.__wrapped__
        candidates.append(seen)
    candidates += [c.fun for c in candidates if callable(getattr(c, "fun", None))]
    for candidate in candidates:
        try:
            parameters = inspect.signature(candidate).parameters.values()
        except (TypeError, ValueError):
            continue
        positional = [
            p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(positional) >= count:
            return positional[:count]
    return None


def _inputs(f, x):
    """The structure of the arguments x (one array, a tuple or a dict) and their float64 copy."""
    if isinstance(x, tuple):
        names = _parameter_names(f, len(x)) or [f"x[{i}]" for i in range(len(x))]
        values = tuple(np.array(v, dtype=np.float64) for v in x)
        return _Structure("tuple", names, [v.shape for v in values]), values
    if isinstance(x, dict):
        values = {key: np.array(v, dtype=np.float64) for key, v in x.items()}
        keys = list(values)
        return _Structure("dict", keys, [v.shape for v in values.values()], keys), values
    value = np.array(x, dtype=np.float64)
    names = _parameter_names(f, 1) or ["x"]
    return _Structure("array", names, [value.shape]), value


def _output_shape(part, name, what):
    """The shape of one output part (an array, a number or a rectangular nested list of them)."""
    if part is None or isinstance(part, (dict, str, bytes)):
        raise ValueError(
            f"{what}: expected an array or a number for {name}, got {type(part).__name__}"
        )
    try:
        return np.shape(np.asarray(part))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what}: expected an array (or a rectangular nested list) for {name}, got a "
            f"ragged {type(part).__name__} ({error})"
        ) from None


def _outputs(value, fname, what="f"):
    """The structure of f's output: one array (named as f, e.g. "f"), a tuple ("f[0]", …; a
    nested list inside counts as one array) or a dict (its keys)."""
    if isinstance(value, (tuple, list)):
        names = [f"{fname}[{i}]" for i in range(len(value))]
        shapes = [_output_shape(v, name, what) for v, name in zip(value, names, strict=True)]
        structure = _Structure("tuple", names, shapes, quoted=False)
    elif isinstance(value, dict):
        keys = list(value)
        shapes = [_output_shape(v, str(k), what) for k, v in value.items()]
        structure = _Structure("dict", [str(k) for k in keys], shapes, keys, quoted=False)
    else:
        structure = _Structure("array", [fname], [_output_shape(value, fname, what)], quoted=False)
    if structure.size == 0:
        shapes = ", ".join(str(s) for s in structure.shapes) or "nothing"
        raise ValueError(
            f"{what}: expected at least one output value to differentiate, got an empty output "
            f"(shape {shapes})"
        )
    return structure


def _name_of(function):
    """The function's name for the report ("f" for a lambda or a callable object)."""
    name = getattr(function, "__name__", "f")
    return name if isinstance(name, str) and name.isidentifier() else "f"


def _split(value, structure, what, side):
    """The blocks of ``value`` along ``structure`` (the outputs or the arguments): a dict with
    exactly its keys, or a tuple or list of one block per part."""
    if structure.kind == "array":
        return [value]
    if structure.kind == "dict":
        if not isinstance(value, dict) or set(value) != set(structure.keys):
            got = (
                f"a dict with keys {sorted(map(str, value))}"
                if isinstance(value, dict)
                else f"a {type(value).__name__}"
            )
            raise ValueError(
                f"{what}: expected the blocks for the {side} as a dict with keys "
                f"{structure.keys}, got {got}"
            )
        return [value[key] for key in structure.keys]
    if not isinstance(value, (tuple, list)) or len(value) != len(structure.shapes):
        got = (
            f"{len(value)} blocks"
            if isinstance(value, (tuple, list))
            else f"a {type(value).__name__}"
        )
        raise ValueError(
            f"{what}: expected the blocks for the {side} ({', '.join(structure.names)}) as a "
            f"tuple of {len(structure.shapes)}, got {got}"
        )
    return list(value)


def _matrix(value, rows, cols, what):
    """A Jacobian given as an (m, n) matrix or as blocks ∂row/∂col (nested tuples or dicts:
    outputs, then arguments; each block of shape row.shape + col.shape), as one (m, n) float64
    matrix. A block structure that does not match is a ValueError naming the block."""
    single = rows.kind == "array" and cols.kind == "array"
    if single or not isinstance(value, (tuple, list, dict)):
        array = _real_array(value, np.float64, what, "a Jacobian")
        if array.shape == (rows.size, cols.size):
            return array.copy()
        if single and array.shape == rows.shapes[0] + cols.shapes[0]:
            return array.reshape(rows.size, cols.size).copy()
        if single:
            blocks = (
                f"the block ∂{_entry_text(rows.names[0], (), ())}/"
                f"∂{_entry_text(cols.names[0], (), ())} of shape {rows.shapes[0] + cols.shapes[0]}"
            )
        else:
            blocks = "blocks ∂output/∂argument (nested tuples or dicts: outputs, then arguments)"
        raise ValueError(
            f"{what}: expected a ({rows.size}, {cols.size}) matrix or {blocks}, "
            f"got an array of shape {array.shape}"
        )
    matrix = np.empty((rows.size, cols.size))
    for r, row in enumerate(_split(value, rows, what, "outputs")):
        for c, part in enumerate(_split(row, cols, what, "arguments")):
            want = rows.shapes[r] + cols.shapes[c]
            block = f"∂{_entry_text(rows.names[r], (), ())}/∂{_entry_text(cols.names[c], (), ())}"
            array = _real_array(part, np.float64, what, f"the block {block}")
            if array.shape != want:
                raise ValueError(
                    f"{what}: expected a ({rows.size}, {cols.size}) matrix or the block "
                    f"{block} of shape {want}, got {array.shape}"
                )
            matrix[rows.offsets[r] : rows.offsets[r + 1], cols.offsets[c] : cols.offsets[c + 1]] = (
                array.reshape(rows.sizes[r], cols.sizes[c])
            )
    return matrix


# ---------------------------------------------------------------- evaluating f


def _hint(error):
    """A hint for an error raised while autograd traced the user's code."""
    if isinstance(error, NotImplementedError):
        return " (autograd has no derivative for an operation the function uses)"
    if "Box" in str(error):
        return (
            " (autograd passes boxes through the function: write it with autograd.numpy, "
            "without float(), .item(), np.asarray or in-place assignment)"
        )
    return ""


def _unwritten(error):
    """Whether ``error`` is the user's own ``raise NotImplementedError`` (an exercise not solved
    yet), not autograd's missing derivative: the innermost frame is outside autograd."""
    if not isinstance(error, NotImplementedError):
        return False
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is None or f"{os.sep}autograd{os.sep}" not in frame.tb_frame.f_code.co_filename


def _user_error(name, error, where="", what=None):
    """A ValueError blaming the argument ``name`` for an exception its code raised (``what``:
    the function that ran, e.g. "f's gradient", when it is not ``name`` itself). A function that
    raises NotImplementedError itself is not written yet: that stays a NotImplementedError, so a
    lesson's unsolved exercise is reported as unsolved, not as a wrong function."""
    at = f" at {where}" if where else ""
    ran = f" ({what})" if what and what != name else ""
    if _unwritten(error):
        return NotImplementedError(f"{name}{ran}: not written yet (it raises NotImplementedError)")
    return ValueError(
        f"{name}: expected a function that can be evaluated{at}{ran}, got "
        f"{type(error).__name__}: {error}{_hint(error)}"
    )


class _Function:
    """f as a map from one flat vector to one flat vector, evaluated as the user wrote it."""

    def __init__(self, call, inputs, what="f", fname="f", name=None):
        self.call, self.inputs, self.what, self.fname = call, inputs, what, fname
        self.name = name or what  # the argument blamed in messages
        self.outputs, self.failure, self.low_precision, self.eps = None, None, False, EPS

    def _value(self, vector):
        with outside():  # the user's code: its calls into the package are checked again
            return self.call(self.inputs.unflatten(vector))

    def _flat(self, value, vector):
        dtype = np.complex128 if np.iscomplexobj(vector) else np.float64
        return self.outputs.flatten(value, self.name, "an output", dtype=dtype)

    def __call__(self, vector, where="x"):
        """F(vector); an exception or a value that is not finite is a ValueError."""
        try:
            value = self._value(vector)
        except Exception as error:
            raise _user_error(self.name, error, where, self.what) from error
        if self.outputs is None:
            self.outputs = _outputs(value, self.fname, self.name)
            dtypes = [
                np.asarray(getval(part)).dtype
                for part in self.outputs.parts(value)
                if not isinstance(part, (list, tuple))
            ]
            self.low_precision = any(d in (np.float32, np.float16) for d in dtypes)
            self.eps = max([EPS] + [float(np.finfo(d).eps) for d in dtypes if d.kind == "f"])
        flat = self._flat(value, vector)
        if not np.iscomplexobj(vector) and not np.all(np.isfinite(flat)):
            bad = int(np.flatnonzero(~np.isfinite(flat))[0])
            whose = "" if self.what == self.name else f" of {self.what}"
            raise ValueError(
                f"{self.name}: expected a finite value{whose} at {where}, got {flat[bad]} "
                f"at {self.outputs.entry(bad)}"
            )
        return flat

    def attempt(self, vector):
        """F(vector), or None where f raises or is not finite (the edge of its domain: the
        reason is kept in ``failure``)."""
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flat = self._flat(self._value(vector), vector)
        except Exception as error:
            self.failure = f"{type(error).__name__}: {error}"
            return None
        if not np.all(np.isfinite(flat)):
            self.failure = "a value that is not finite"
            return None
        return flat


def _central(F, x0, v, h):
    """(F(x + h v) − F(x − h v)) / 2h, divided by the step actually taken: x ± h v is rounded,
    so (x+) − (x−) ≠ 2h v exactly."""
    x_plus, x_minus = x0 + h * v, x0 - h * v
    span = np.vdot(x_plus - x_minus, v) / np.vdot(v, v)
    return (F(x_plus, "x + h·v") - F(x_minus, "x − h·v")) / span


def _richardson(F, x0, v, h):
    """(4 D(h/2) − D(h)) / 3: the h² terms of the two central differences cancel, O(h⁴)."""
    return (4 * _central(F, x0, v, h / 2) - _central(F, x0, v, h)) / 3


def _complex_step(F, x0, v, h):
    """Im F(x + i h v) / h: no difference of nearly equal numbers, so no round-off growth."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        return np.imag(F(x0 + 1j * h * v)) / h


# ------------------------------------------------------------ finite differences and their error


def _rounding(values, x_size, eps=EPS):
    """The rounding to expect in computed values f of f at a point whose largest entry has size
    ``x_size``: 2ε·max(|f|·max(1, |ln|f||), min(|f|, 1)·x_size). A value computed as e^y
    carries its exponent's absolute rounding ε|y| as relative rounding, and y is ln|f| or a
    combination of entries of x (softmax weights of log-weights at −1e4 carry 1e4·ε); never
    below 4 times the smallest float."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.where(values > 0, np.maximum(1.0, np.abs(np.log(values))), 1.0)
    size = np.maximum(values * exponent, np.minimum(values, 1.0) * x_size)
    return np.maximum(ROUNDING * eps * size, 4 * TINY)


class _Level:
    """Central differences of F along v at one step h: D(h), D(h/2) (and D(h/4) for
    Richardson), with the largest |F| among the values used, the fourth difference Δ⁴F of
    F(x − h v), F(x − h v/2), F(x), F(x + h v/2), F(x + h v) (rounding: each value's enters
    with weight √70), and how far F moved from F(x) at all."""

    def __init__(self, h, differences, rounding, fourth, moved):
        self.h, self.D = h, differences
        self.rounding, self.fourth, self.moved = rounding, fourth, moved
        self.projected = {}

    def project(self, U, size, method):
        """For each row u of U (m, q): the estimate N of uᵀJv; its noise η/h, η = max(2ε Σ|u_i
        f_i|, |uᵀΔ⁴F|/√70) (Richardson: 3η/h); the gap |D(h) − D(h/2)| (Richardson: |R(h) −
        R(h/2)|) whose size gives the truncation; whether that gap is visible above the
        rounding of f's values (``visible``) and above the noise measured too (``clear``);
        whether the step sees a jump (D(h/2) ≈ 2 D(h): uᵀF's change does not shrink with h);
        whether uᵀF did not move at all. size: |U|. (Kept per U: the step search asks again.)"""
        if id(U) in self.projected:
            return self.projected[id(U)]
        *d, fourth = (U.T @ np.stack(self.D + [self.fourth], axis=1)).T
        rounding, moved = (size.T @ np.stack([self.rounding, self.moved], axis=1)).T
        eta = np.maximum(rounding, np.abs(fourth) / math.sqrt(70))
        h = self.h
        if method == "richardson":  # R(h) = (4 D(h/2) − D(h))/3, R(h/2): rounding ≤ 3η/h, 6η/h
            r1, r2 = (4 * d[1] - d[0]) / 3, (4 * d[2] - d[1]) / 3
            value, gap, spread = r1, np.abs(r1 - r2), 9
        else:  # D(h), D(h/2): rounding ≤ η/h, 2η/h
            value, gap, spread = d[0], np.abs(d[0] - d[1]), 3
        noise = spread / 3 * eta / h
        visible = gap > 1.5 * spread * rounding / h
        clear = gap > 1.5 * spread * eta / h
        jump = visible & (np.abs(d[1] - 2 * d[0]) <= 0.1 * np.abs(d[1]))
        constant = moved == 0
        result = value, noise, gap, visible, clear, jump, constant, spread / 3 * rounding / h
        self.projected[id(U)] = result
        return result


class _Differences:
    """Finite differences of F at x0 along unit directions, each with its own step and error
    estimate (the module docstring says how)."""

    def __init__(self, F, x0, F0, method, step, fixed, rtol, atol):
        self.F, self.x0, self.F0, self.method = F, x0, F0, method
        self.fixed, self.rtol, self.atol = fixed, rtol, atol
        self.x_size = float(np.max(np.abs(x0)))
        self.complex_step = step if method == "complex" else None
        if method == "complex":
            self.start, self.fixed = DEFAULT_STEP, False  # the cross-check's central step
        else:
            self.start = step
        self.order = 4 if method == "richardson" else 2  # truncation ∝ h^order
        self.target = RESOLVE * min(rtol, 1e-3)
        self.evaluations = 0
        self.last_complex = []  # (complex step, central) per row of the last column
        self.jumps = []  # rows of the last column where uᵀF jumps along v

    def level(self, v, h):
        """The _Level at step h, or None when f is not finite or raises at one of the points
        (or the step is lost in the rounding of x)."""
        fractions = (1.0, 0.5, 0.25) if self.method == "richardson" else (1.0, 0.5)
        support = np.flatnonzero(v)  # one entry for a unit vector: keep the work to it
        direction = v[support]
        values = {}
        for t in fractions:
            for sign in (1.0, -1.0):
                point = self.x0.copy()
                point[support] += (sign * t * h) * direction
                self.evaluations += 1
                value = self.F.attempt(point)
                if value is None:
                    return None
                values[sign * t] = (point[support], value)
        differences = []
        for t in fractions:
            (x_plus, f_plus), (x_minus, f_minus) = values[t], values[-t]
            # the step actually taken: x ± h v is rounded, so (x+) − (x−) ≠ 2h v exactly
            span = np.dot(x_plus - x_minus, direction) / np.dot(direction, direction)
            if not span > 0:
                self.F.failure = "a step lost in the rounding of x"
                return None
            differences.append((f_plus - f_minus) / span)
        magnitude, moved = np.abs(self.F0), np.zeros_like(self.F0)
        for _, value in values.values():
            magnitude = np.maximum(magnitude, np.abs(value))
            moved = np.maximum(moved, np.abs(value - self.F0))
        fourth = (
            values[-1.0][1]
            - 4 * values[-0.5][1]
            + 6 * self.F0
            - 4 * values[0.5][1]
            + values[1.0][1]
        )
        rounding = _rounding(magnitude, self.x_size, self.F.eps)
        return _Level(h, differences, rounding, fourth, moved)

    def estimates(self, levels, U):
        """Per level and row (each (L, q)): N, noise, truncation, visible, jump, constant.
        Truncation is 2·gap, and at least what any level whose gap is clear of the noise
        implies at this step through truncation ∝ h^order: a gap that vanished by chance, or a
        step so large that D(h) and D(h/2) agree only because both lost the derivative, does
        not pass for accuracy."""
        size = np.abs(U)
        parts = [level.project(U, size, self.method) for level in levels]
        value, noise, gap, visible, clear, jump, constant, rounding = (
            np.array(p) for p in zip(*parts, strict=True)
        )
        h = np.array([level.h for level in levels])
        ratio = (h[:, None] / h[None, :]) ** self.order  # (h_i / h_j)^order
        implied = np.where(clear[None, :, :], 2 * gap[None, :, :] * ratio[:, :, None], 0.0)
        truncation = np.maximum(2 * gap, np.max(implied, axis=1))
        return value, noise, truncation, visible, jump, constant, rounding

    def column(self, v, U, scale, weight, floor, where):
        """Estimates of uᵀJv for every row u of U (m, q) along the unit vector v, the step
        searched so that noise + truncation ≤ target · max(scale, weight·|N|) (or ≤ floor):
        -> N, noise, truncation, steps (each (q,)), the levels tried, and for the complex step a
        mask of the rows where f turned out not to be complex-analytic."""
        support = np.abs(self.x0[v != 0])
        h_min = 1e3 * EPS * float(np.max(support, initial=0.0))
        h = max(self.start, h_min)
        q = U.shape[1]
        levels = []
        for _ in range(3 * MAX_STEPS):
            level = self.level(v, h)
            if level is None:
                if levels and h > levels[-1].h:  # grew into the edge of f's domain
                    break
                h /= 10
                if h < h_min:
                    break
                continue
            levels.append(level)
            if self.fixed or len(levels) == MAX_STEPS:
                break
            value, noise, truncation, visible, jump, constant, rounding = (
                a[-1] for a in self.estimates(levels, U)
            )
            goal = np.maximum(self.target * np.maximum(scale, weight * np.abs(value)), floor)
            bad = (noise + truncation > goal) & ~(constant & (scale == 0))
            if not bad.any():
                break
            shrink = bad & visible
            if shrink.any():  # truncation dominates: toward the balance h (noise / 2 trunc)^⅓
                ratio = rounding[shrink] / (2 * truncation[shrink])
                factor = float(np.clip(np.min(ratio) ** (1 / 3), 1e-3, 0.5))
            else:  # noise dominates (∝ 1/h): a step large enough to reach the goal
                with np.errstate(divide="ignore", invalid="ignore"):
                    needed = np.max(2 * (noise + truncation)[bad] / goal[bad])
                factor = float(np.clip(np.nan_to_num(needed, nan=1e3), 2, 1e3))
            new = max(h * factor, h_min)
            if any(abs(math.log(new / level.h)) < math.log(1.5) for level in levels):
                break
            h = new
        if not levels:
            raise ValueError(
                f"{self.F.name}: expected finite values of {self.F.what} near x, got "
                f"{self.F.failure} at x ± h·v along {where} for every step h down to {h:.2g}"
            )
        value, noise, truncation, steps, jumps = self.pick(levels, U)
        self.jumps = np.flatnonzero(jumps).tolist()
        fallback = np.zeros(q, dtype=bool)
        if self.method == "complex":
            value, noise, truncation, steps, fallback = self.complex(
                v, U, value, noise, truncation, steps
            )
        return value, noise, truncation, steps, levels, fallback

    def pick(self, levels, U):
        """Per row, the level with the smallest noise + truncation. A row whose smallest steps
        all see a jump (f, or the gradient being differenced, is discontinuous along v) gets
        no truncation allowance: its finite differences grow like 1/h and check nothing."""
        value, noise, truncation, visible, jump, _, _ = self.estimates(levels, U)
        order = np.argsort([level.h for level in levels])
        smallest = order[0]
        jumps = (jump[order].sum(axis=0) >= 2) & jump[smallest]
        truncation = np.where(jumps[None, :], 0.0, truncation)
        error = noise + truncation
        error[:, jumps] = np.inf  # a jump: judge at the smallest step, without truncation
        error[smallest, jumps] = 0.0
        best = np.argmin(error, axis=0)
        rows = np.arange(value.shape[1])
        steps = np.array([levels[b].h for b in best])
        return value[best, rows], noise[best, rows], truncation[best, rows], steps, jumps

    def complex(self, v, U, central, central_noise, central_truncation, central_steps):
        """The complex step Im F(x + ihv)/h at h and h/2 (its truncation 2·|difference|, its
        rounding 2ε|value|), kept where it agrees with the central differences and replaced by
        them where it does not (f not complex-analytic: abs, maximum, comparisons)."""
        h = self.complex_step
        estimates = []
        for t in (h, h / 2):
            self.evaluations += 1
            estimates.append(U.T @ _complex_step(self.F, self.x0, v, t))
        value = estimates[0]
        noise = ROUNDING * EPS * np.abs(value)
        truncation = 2 * np.abs(estimates[0] - estimates[1])
        allowed = (
            self.atol
            + self.rtol * np.maximum(np.abs(value), np.abs(central))
            + central_noise
            + central_truncation
            + noise
            + truncation
        )
        fallback = np.abs(value - central) > allowed
        value = np.where(fallback, central, value)
        noise = np.where(fallback, central_noise, noise)
        truncation = np.where(fallback, central_truncation, truncation)
        steps = np.where(fallback, central_steps, h)
        self.last_complex = list(zip(estimates[0].tolist(), central.tolist(), strict=True))
        return value, noise, truncation, steps, fallback


# ---------------------------------------------------------------- the derivative being checked


class _Analytic:
    """uᵀJv from the derivative being verified: ("matrix", J), ("vjp", u ↦ uᵀJ) or
    ("jvp", v ↦ J v). Also the sum S and the largest T of the terms |u_i J_ij v_j| that make
    it up (summed over the side the derivative gives whole)."""

    def __init__(self, provider):
        self.kind, self.value = provider
        self.cache = {}

    def row(self, u):
        key = ("row", u.tobytes())
        if key not in self.cache:
            with outside():
                if self.kind == "matrix":
                    self.cache[key] = u @ self.value
                else:
                    self.cache[key] = np.asarray(self.value(u), dtype=np.float64)
        return self.cache[key]

    def col(self, v):
        key = ("col", v.tobytes())
        if key not in self.cache:
            with outside():
                self.cache[key] = np.asarray(self.value(v), dtype=np.float64)
        return self.cache[key]

    def single(self, u, v):
        """(uᵀJv, S, T) for one pair of vectors."""
        if self.kind == "jvp":
            column = self.col(v)
            value, terms = float(u @ column), np.abs(u) * np.abs(column)
        else:
            row = self.row(u)
            value, terms = float(row @ v), np.abs(row) * np.abs(v)
        return value, float(np.sum(terms)), float(np.max(terms, initial=0.0))

    def grid(self, U, P):
        """(A, S, T), each (q, p), for every row u of U and column v of P."""
        if self.kind == "jvp":
            C = np.stack([self.col(P[:, k]) for k in range(P.shape[1])], axis=1)
            A, S = U.T @ C, np.abs(U).T @ np.abs(C)
            T = np.stack(
                [np.max(np.abs(U) * np.abs(C[:, [k]]), axis=0) for k in range(P.shape[1])], 1
            )
        else:
            R = np.stack([self.row(U[:, l]) for l in range(U.shape[1])])
            A, S = R @ P, np.abs(R) @ np.abs(P)
            T = np.stack(
                [np.max(np.abs(R) * np.abs(P[:, k]), axis=1) for k in range(P.shape[1])], 1
            )
        return A, S, T


# ---------------------------------------------------------------- the comparison


def _probes(size, full, n_units, n_random, rng):
    """Unit vectors e_j (all of them when ``full``, else a sample) and random unit vectors:
    -> matrix (size, p), descriptions [("unit", j) | ("random", k)]."""
    units = range(size) if full else rng.choice(size, size=min(n_units, size), replace=False)
    units = [int(j) for j in units]
    randoms = []
    for _ in range(0 if full else n_random):
        v = rng.standard_normal(size)
        randoms.append(v / np.linalg.norm(v))
    matrix = np.zeros((size, len(units) + len(randoms)))
    matrix[units, range(len(units))] = 1.0
    for k, v in enumerate(randoms):
        matrix[:, len(units) + k] = v
    described = [("unit", j) for j in units] + [("random", k) for k in range(len(randoms))]
    return matrix, described


def _relative(analytic, numeric, allowance, rtol):
    """|A − N| / (max(|A|, |N|) + allowance / rtol): ≤ rtol exactly when |A − N| ≤ allowance +
    rtol·max(|A|, |N|). A NaN (nothing to compare) counts as infinitely wrong."""
    with np.errstate(invalid="ignore", divide="ignore"):
        difference = np.abs(analytic - numeric)
        rel = difference / (np.maximum(np.abs(analytic), np.abs(numeric)) + allowance / rtol)
        rel = np.where(difference == 0, 0.0, rel)
    return np.where(np.isnan(rel), np.inf, rel)


class _Comparison:
    """Every check of one problem: the grid of probes, then culprits located by bisection."""

    def __init__(self, F, x0, F0, provider, label, *, method, step, fixed, atol, rtol):
        self.F, self.x0, self.F0, self.label = F, x0, F0, label
        self.atol, self.rtol = atol, rtol
        self.analytic = _Analytic(provider)
        self.fd = _Differences(F, x0, F0, method, step, fixed, rtol, atol)
        self.checks, self.vectors = [], []
        self.nonanalytic = []  # (label, complex step, central) where f is not complex-analytic
        self.located = []  # labels of the culprits bisection found
        self.jumps = []  # labels of checks where f jumps along v

    def check(self, u, v, row, col, random):
        """One check (u, v), its step searched: -> Check."""
        a, _, t = self.analytic.single(u, v)
        scale = np.array([t if random else abs(a)])
        value, noise, truncation, steps, _, _ = self.fd.column(
            v, u[:, None], scale, np.array([0.0 if random else 1.0]), np.zeros(1), "a check"
        )
        rel = _relative(a, value[0], self.atol + noise[0] + truncation[0], self.rtol)
        return Check(
            self.label(row, col),
            a,
            value[0],
            rel,
            noise[0],
            truncation[0],
            atol=self.atol,
            step=steps[0],
            random=random,
        )

    def grid(self, U, rows, P, cols, describe_col):
        A, S, T = self.analytic.grid(U, P)
        random = np.array([r[0] == "random" for r in rows])[:, None] | np.array(
            [c[0] == "random" for c in cols]
        )
        floors = np.maximum(1e-12 * np.max(np.abs(A), axis=1), self.atol / 10)
        q, p = A.shape
        N, noise, truncation, steps = (np.zeros((q, p)) for _ in range(4))
        for k in range(p):
            scale = np.where(random[:, k], T[:, k], np.abs(A[:, k]))
            weight = np.where(random[:, k], 0.0, 1.0)
            N[:, k], noise[:, k], truncation[:, k], steps[:, k], _, fallback = self.fd.column(
                P[:, k], U, scale, weight, floors, describe_col(cols[k])
            )
            for l in np.flatnonzero(fallback):
                self.nonanalytic.append((self.label(rows[l], cols[k]), *self.fd.last_complex[l]))
            self.jumps += [self.label(rows[l], cols[k]) for l in self.fd.jumps]
        allowance = self.atol + noise + truncation
        rel = _relative(A, N, allowance, self.rtol)
        for l in range(q):
            for k in range(p):
                self.checks.append(
                    Check(
                        self.label(rows[l], cols[k]),
                        A[l, k],
                        N[l, k],
                        rel[l, k],
                        noise[l, k],
                        truncation[l, k],
                        atol=self.atol,
                        step=steps[l, k],
                        random=bool(random[l, k]),
                    )
                )
                self.vectors.append((U[:, l], P[:, k]))
        return A, N, allowance, S, random

    def locate(self, U, rows, P, cols, A, N, allowance, S, random):
        """For random checks that disagree beyond the finite-difference error, bisect v's
        entries (then u's) down to one entry and check it: a culprit found is a named check."""
        excess = (np.abs(A - N) - allowance - SCREEN * S) / (allowance + SCREEN * S + 1e-300)
        suspects = np.argwhere(random & (excess > 0))
        suspects = sorted(suspects.tolist(), key=lambda lk: -excess[lk[0], lk[1]])
        culprits = []  # (u index or None, row l, j, mismatch)
        for l, k in suspects:
            if len(culprits) >= MAX_LOCATED:
                break
            explained = 0.0
            for i, row, j, mismatch in culprits:
                if i is not None:
                    explained += mismatch * U[i, l] * P[j, k]
                elif row == l:
                    explained += mismatch * P[j, k]
            residual = (A[l, k] - N[l, k]) - explained
            if abs(residual) <= allowance[l, k] + SCREEN * S[l, k]:
                continue
            found = self.bisect(U[:, l], P[:, k], rows[l], cols[k])
            if found is None:
                continue
            i, j, check, u = found
            if check[3] > self.rtol:
                culprits.append((i, l, j, check[1] - check[2]))
                self.located.append(check[0])
                self.checks.append(check)
                self.vectors.append((u, np.eye(1, P.shape[0], j)[0]))

    def _screen(self, u, v, random_u, random_v):
        """Does the check (u, v) disagree beyond its finite-difference error?"""
        a, s, t = self.analytic.single(u, v)
        random = random_u or random_v
        scale = np.array([t if random else abs(a)])
        value, noise, truncation, _, _, _ = self.fd.column(
            v, u[:, None], scale, np.array([0.0 if random else 1.0]), np.array([0.0]), "a half"
        )
        return abs(a - value[0]) > self.atol + noise[0] + truncation[0] + SCREEN * s

    def bisect(self, u, v, row, col):
        """Halve the support of v, keeping a half that still disagrees, down to one input
        entry j; then the same over u's entries (if u is random) down to one output entry i.
        -> (i or None, j, the Check of that entry, its u), or None when no half disagrees."""
        random_u = row[0] == "random"
        if col[0] == "random":
            support = np.flatnonzero(v)
            while support.size > 1:
                for half in np.array_split(support, 2):
                    w = np.zeros_like(v)
                    w[half] = v[half]
                    w /= np.linalg.norm(w)
                    if self._screen(u, w, random_u, True):
                        support = half
                        break
                else:
                    return None
            j = int(support[0])
        else:
            j = col[1]
        e_j = np.zeros_like(v)
        e_j[j] = 1.0
        i, row_desc, u_final = (row[1] if row[0] == "unit" else None), row, u
        if random_u:
            support = np.flatnonzero(u)
            while support.size > 1:
                for half in np.array_split(support, 2):
                    w = np.zeros_like(u)
                    w[half] = u[half]
                    w /= np.linalg.norm(w)
                    if self._screen(w, e_j, True, False):
                        support = half
                        break
                else:
                    support = None
                    break
            if support is not None:
                i = int(support[0])
                u_final = np.zeros_like(u)
                u_final[i] = 1.0
                row_desc = ("unit", i)
        check = self.check(u_final, e_j, row_desc, ("unit", j), row_desc[0] == "random")
        return i, j, check, u_final


def _describe(structure, after="", random="v"):
    """Names a probe: an entry of ``structure`` for a unit vector, ``random``_k``after`` for a
    random one (e.g. "v_3", or "(u_2ᵀf)" for a random cotangent)."""

    def describe(item):
        kind, index = item
        return structure.entry(index) if kind == "unit" else f"{random}_{index}{after}"

    return describe


# ---------------------------------------------------------------- rules for the door


def _function(what):
    """Rule: a callable (``what`` says what it should be)."""

    def rule(name, value, arguments):
        if not callable(value):
            raise ValueError(f"{name}: expected {what}, got {type(value).__name__}")
        return value

    return rule


def _arguments(name, value, arguments):
    """Rule for x: one real array, a tuple of them (f(*x)) or a dict of them (f(**x)); each
    non-empty, with no NaN or inf."""
    if isinstance(value, (tuple, dict)):
        if not value:
            raise ValueError(f"{name}: expected at least one array, got an empty {type(value)}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, part in items:
            if isinstance(value, dict) and not isinstance(key, str):
                raise ValueError(f"{name}: expected argument names as dict keys, got {key!r}")
            try:
                check_array(name, part, nonempty=True)
            except ValueError as error:
                message = str(error).split(": ", 1)[1]
                raise ValueError(f"{name}: {message} (argument {key!r})") from None
        return value
    return check_array(name, value, nonempty=True)


def _sweep_rule(name, value, arguments):
    """Rule: True, False, or the label of a check to sweep (a string)."""
    if isinstance(value, str):
        return value
    return flag()(name, value, arguments)


_OPTION_RULES = dict(
    order=one_of(1, 2),
    method=one_of(*METHODS),
    sweep=_sweep_rule,
    step=optional(positive()),
    rtol=positive(),
    atol=optional(number(low=0.0)),
    n_directions=integer(minimum=0),
    n_coordinates=integer(minimum=0),
    max_full=integer(minimum=0),
    seed=integer(minimum=0),
)


# ---------------------------------------------------------------- calling the user's derivatives


def _call(function, inputs, value, name):
    """function(x) (or (*x), (**x)) for the user's derivative ``name``; an exception it raises
    is a ValueError naming it."""
    try:
        with outside():
            return inputs.call(function, value)
    except Exception as error:
        raise _user_error(name, error, "x") from error


def _product(maker, inputs, value, name, what):
    """The function your ``name`` returns at x (a VJP, JVP or Hessian-vector product)."""
    product = _call(maker, inputs, value, name)
    if not callable(product):
        raise ValueError(
            f"{name}: expected a function x -> ({what}), got a function returning "
            f"{type(product).__name__} (return the function itself, not its value)"
        )

    def apply(argument):
        try:
            with outside():
                return product(argument)
        except Exception as error:
            raise _user_error(name, error, f"the function it returned, {what}") from error

    return apply


def _autograd_vjp(flat_function, point, notes, what, name):
    """autograd's VJP of a flat function at ``point``: u ↦ uᵀJ (one forward pass, kept). An
    error while autograd traces or runs backward is a ValueError naming ``name``."""
    with warnings.catch_warnings(record=True) as caught, outside():
        warnings.simplefilter("always")
        try:
            product, _ = autograd.make_vjp(flat_function)(point)
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(
                f"{name}: expected a function autograd can differentiate, got "
                f"{type(error).__name__} while tracing {what}: {error}{_hint(error)}; or pass "
                "your own derivative (grad=, jacobian=, vjp= or jvp=)"
            ) from error
    if any("independent of input" in str(w.message) for w in caught):
        notes.append(
            f"autograd sees {what} as constant in its input (zero derivative); if it is not, "
            "it was computed with plain numpy where autograd.numpy is needed"
        )

    def vjp(u):
        try:
            with outside():
                return np.asarray(product(u), dtype=np.float64)
        except Exception as error:
            raise ValueError(
                f"{name}: expected a function autograd can differentiate, got "
                f"{type(error).__name__} in the backward pass through {what}: {error}"
            ) from error

    return vjp


# ---------------------------------------------------------------- gradcheck


@checked(
    f=_function("a function of x"),
    x=_arguments,
    grad=optional(_function("a function x -> gradient, or None")),
    jacobian=optional(_function("a function x -> Jacobian, or None")),
    vjp=optional(_function("a function x -> (cotangent -> VJP), or None")),
    jvp=optional(_function("a function x -> (tangent -> JVP), or None")),
    hessian=optional(_function("a function x -> Hessian, or None")),
    hvp=optional(_function("a function x -> (v -> Hessian-vector product), or None")),
    **_OPTION_RULES,
)
def gradcheck(
    f,
    x,
    *,
    grad=None,
    jacobian=None,
    vjp=None,
    jvp=None,
    hessian=None,
    hvp=None,
    order=1,
    method="central",
    sweep=False,
    step=None,
    rtol=1e-4,
    atol=None,
    n_directions=10,
    n_coordinates=20,
    max_full=200,
    seed=0,
):
    """Compare derivatives of ``f`` at ``x`` (yours or autograd's) with finite differences.

    f: the function. x: its argument: one array (f(x)), a tuple of arrays (f(*x), named by f's
      parameters) or a dict of arrays (f(**x), named by the keys); any shapes, checked in
      float64. f returns a real scalar (its gradient is checked), or an array, a tuple or a dict
      of arrays (its Jacobian J, ∂f[i]/∂x[j], is checked); a nested list counts as one array.
    The derivative to verify (default: autograd's), a function of the same arguments as f:
      grad: -> the gradient, structured like x (scalar f);
      jacobian: -> J, as an (m, n) matrix over the flattened outputs and inputs, or as blocks
        ∂out/∂arg of shape out.shape + arg.shape (nested tuples or dicts: outputs, then args);
      vjp: -> a function g ↦ gᵀJ (g structured like f's output, the result like x);
      jvp: -> a function v ↦ J v (v structured like x, the result like f's output).
    order=2 checks second derivatives instead, from the gradient x ↦ ∇f(x) (``grad`` when given,
      else autograd's) against its finite differences: the Hessian ∂²f/∂x_i∂x_j, yours as
      hessian (-> (n, n) or blocks like ``jacobian``) or hvp (-> a function v ↦ H v), else
      autograd's (through your ``grad`` when given). For an array f, the second derivatives of
      gᵀf for a random cotangent g, with respect to x and g, as PyTorch's gradgradcheck does:
      the Jacobian of (x, g) ↦ ∇_x(gᵀf) (your ``vjp`` when given), from autograd through it.
    method: "central" (D(h), truncation estimated from D(h/2)), "richardson" ((4 D(h/2) − D(h))/3,
      error O(h⁴), truncation estimated from the same at h/2) or "complex" (Im f(x + ih·v)/h,
      for an f written with complex-safe autograd.numpy operations; where it disagrees with
      central differences f is not complex-analytic, and those checks use central differences).
    sweep: True (or the label of one check) adds ``report.sweep``, a StepSweep: the error
      against the step h over 13 decades for the worst check, with ``.plot()``.
    step: a fixed step h (absolute, along each unit direction v) instead of searching one per
      direction from ε^(1/3) ≈ 6e-6 (ε^(1/5) ≈ 7e-4 for Richardson; 1e-20 for the complex step).
    rtol, atol: a check passes when |A − N| ≤ atol + rtol·max(|A|, |N|) + noise + truncation,
      noise and truncation being the finite differences' own error, estimated per check (module
      docstring). Defaults rtol = 1e-4 (a correct derivative typically shows 1e-11 to 1e-7, a
      1% mistake 1e-2) and atol = 0.
    n_directions, n_coordinates: how many random unit directions and sampled entries to check
      when x (or the output) has more than ``max_full`` entries; a random direction that
      disagrees is bisected down to the entry responsible, which is then named. seed: for
      choosing them.
    Returns a GradcheckReport (``.passed``, ``.max_rel_error``, ``.worst``, readable repr).
    """
    given = {
        "grad": grad,
        "jacobian": jacobian,
        "vjp": vjp,
        "jvp": jvp,
        "hessian": hessian,
        "hvp": hvp,
    }
    given = {name: fn for name, fn in given.items() if fn is not None}
    first = [name for name in ("grad", "jacobian", "vjp", "jvp") if name in given]
    second = [name for name in ("hessian", "hvp") if name in given]
    if len(first) > 1 or len(second) > 1:
        both = first if len(first) > 1 else second
        raise ValueError(f"{', '.join(both)}: expected at most one of them, got {len(both)}")
    if order == 1 and second:
        raise ValueError(f"{second[0]}: expected order=2 for a second derivative, got order=1")
    if order == 2 and set(first) & {"jacobian", "jvp"}:
        raise ValueError(
            f"{first[0]}: expected grad= or vjp= for order=2 (the first derivative whose "
            f"derivative is checked), got {first[0]}="
        )
    if x is None:
        raise ValueError("x: expected an array, a tuple or a dict of arrays, got None")
    fixed = step is not None
    if step is None:
        step = {"central": DEFAULT_STEP, "richardson": RICHARDSON_STEP}.get(method, COMPLEX_STEP)
    atol = 0.0 if atol is None else float(atol)
    inputs, x64 = _inputs(f, x)
    if inputs.size > max_full and n_directions + n_coordinates == 0:
        raise ValueError(
            "n_directions, n_coordinates: expected at least one check for an x "
            f"larger than max_full={max_full}, got 0 and 0"
        )
    notes = []
    x0 = inputs.flatten(x64, "x", "an argument")
    F = _Function(lambda value: inputs.call(f, value), inputs, "f", _name_of(f))
    F0 = F(x0)
    outputs = F.outputs
    if F.low_precision:
        notes.append(
            "f returns float32 (or float16): its values are rounded near 1e-7, which the noise "
            "estimate sees; compute in float64 for a sharper check"
        )
    scalar = outputs.kind == "array" and outputs.shapes[0] == ()
    if not scalar and ("grad" in given or second):
        name = "grad" if "grad" in given else second[0]
        shape = outputs.shapes[0] if outputs.kind == "array" else f"a {outputs.kind} of arrays"
        raise ValueError(
            f"f: expected a scalar output for {name}= (for an array output pass jacobian=, "
            f"vjp= or jvp=), got shape {shape}"
        )
    rng = np.random.default_rng(seed)
    fname = _name_of(f)
    wrt = "w.r.t. " + ", ".join(inputs.names)

    def flat_f(vector):  # traceable: autograd differentiates through it
        return outputs.flatten_traceable(inputs.call(f, inputs.unflatten(vector)))

    if order == 1:
        target, point, value = F, x0, F0
        provider = _first_order(given, inputs, outputs, x64, flat_f, x0, notes)
        describe_in = _describe(inputs)
        if scalar and inputs.kind == "array":  # the original report: "coordinate (i, j)"
            label, kind, of = _legacy_label(inputs), "gradient", ""
        elif scalar:
            label, kind, of = (lambda row, col: describe_in(col)), "gradient", f"{fname} {wrt}"
        else:
            describe_out = _describe(outputs, f"ᵀ{fname})", "(u")
            label = lambda row, col: f"∂{describe_out(row)}/∂{describe_in(col)}"
            kind, of = "Jacobian", f"{fname} {wrt}"
        source = "your" if first else "autograd"
    elif scalar:  # the Hessian: the Jacobian of x ↦ ∇f(x)
        if "grad" in given:
            inputs.flatten(_call(grad, inputs, x64, "grad"), "grad", "a gradient")  # its shapes

            def gradient(vector):
                return inputs.flatten_traceable(inputs.call(grad, inputs.unflatten(vector)))

            what, name = "grad", "grad"
        else:
            gradient = autograd.grad(lambda vector: flat_f(vector)[0])
            what, name = "f's gradient", "f"
        target = _Function(
            lambda value: gradient(inputs.flatten_traceable(value)), inputs, what, name=name
        )
        point = x0
        value = target(x0)
        if "hessian" in given:
            matrix = _matrix(_call(hessian, inputs, x64, "hessian"), inputs, inputs, "hessian")
            provider = ("matrix", matrix)
        elif "hvp" in given:
            product = _product(hvp, inputs, x64, "hvp", "v -> Hessian-vector product")
            provider = (
                "jvp",
                lambda v: inputs.flatten(
                    product(inputs.unflatten(v)), "hvp", "a Hessian-vector product"
                ),
            )
        else:
            provider = ("vjp", _autograd_vjp(gradient, x0, notes, what, name))
        kind, of = "Hessian", f"{fname} {wrt}"
        describe_row, describe_in = _describe(inputs, random="u"), _describe(inputs)
        label = lambda row, col: f"∂²{fname}/∂{describe_row(row)}∂{describe_in(col)}"
        if second:
            source = "your"
        else:
            source = "autograd (through your grad)" if "grad" in given else "autograd"
    else:  # as gradgradcheck: the Jacobian of (x, g) ↦ ∇_x(gᵀf), g a random cotangent
        g_name = "g" if "g" not in inputs.names else "g_"
        g_shape = outputs.shapes[0] if outputs.kind == "array" else (outputs.size,)
        extended = inputs.with_part(g_name, g_shape)
        n = x0.size
        g0 = rng.standard_normal(outputs.size)
        if "vjp" in given:
            pullback_at_x = _product(vjp, inputs, x64, "vjp", "cotangent -> VJP")
            inputs.flatten(pullback_at_x(outputs.unflatten(g0)), "vjp", "a VJP (structured like x)")

            def pullback(vector):
                product = inputs.call(vjp, inputs.unflatten(vector[:n]))
                return inputs.flatten_traceable(product(outputs.unflatten(vector[n:])))

            what, name = "vjp", "vjp"
        else:

            def pullback(vector):
                product, _ = autograd.make_vjp(flat_f)(vector[:n])
                return product(vector[n:])

            what, name = "f's VJP", "f"
        point = np.concatenate([x0, g0])
        target = _Function(
            lambda value: pullback(extended.flatten_traceable(value)), extended, what, name=name
        )
        value = target(point)
        provider = ("vjp", _autograd_vjp(pullback, point, notes, what, name))
        kind, of = "second derivatives", f"gᵀ{fname} {wrt} and the cotangent {g_name}"
        describe_row, describe_in = _describe(inputs, random="u"), _describe(extended)
        label = lambda row, col: f"∂²(gᵀ{fname})/∂{describe_row(row)}∂{describe_in(col)}"
        source = "autograd (through your vjp)" if "vjp" in given else "autograd"

    if method == "complex":
        try:
            _complex_step(target, point, np.ones(point.size) / math.sqrt(point.size), step)
        except Exception as error:
            raise ValueError(
                f"method: expected a function that accepts complex input for the complex step, "
                f"got {target.what} raising {type(error).__name__}: {error}"
            ) from None
    comparison = _Comparison(
        target,
        point,
        value,
        provider,
        label,
        method=method,
        step=step,
        fixed=fixed,
        atol=atol,
        rtol=rtol,
    )
    columns = extended if (order == 2 and not scalar) else inputs
    P, cols = _probes(point.size, point.size <= max_full, n_coordinates, n_directions, rng)
    U, rows = _probes(value.size, value.size <= max_full, n_coordinates, n_directions, rng)
    describe_col = _describe(columns, random="a random direction v")
    A, N, allowance, S, random = comparison.grid(U, rows, P, cols, describe_col)
    if random.any():
        comparison.locate(U, rows, P, cols, A, N, allowance, S, random)
    checks = comparison.checks
    shown = {"your": "yours"}.get(source, source)
    notes += _notes(comparison, checks, rtol, shown, target.what)
    failing_named = [c for c in checks if c[3] > rtol and not c.random]
    worst = max(failing_named or checks, key=lambda c: c[3])
    report = GradcheckReport(
        passed=bool(max(c[3] for c in checks) <= rtol),
        max_rel_error=max(c[3] for c in checks),
        worst=worst[0],
        analytic=worst[1],
        numeric=worst[2],
        rtol=rtol,
        step=step,
        noise_floor=max(c.allowance for c in checks),
        gradient_name=source,
        checks=checks,
        kind=kind,
        of=of,
        method=method,
        notes=notes,
        atol=atol,
        fixed_step=fixed,
        evaluations=comparison.fd.evaluations,
    )
    if sweep is not False:
        labels = [c[0] for c in checks]
        if isinstance(sweep, str):
            if sweep not in labels:
                raise ValueError(
                    f"sweep: expected True or the label of a check, e.g. {labels[0]!r}, "
                    f"got {sweep!r}"
                )
            at = labels.index(sweep)
        else:
            at = next(i for i, c in enumerate(checks) if c is worst)
        u, v = comparison.vectors[at]
        report.sweep = _step_sweep(target, point, u, v, checks[at], shown, method, rtol)
    return report


def _notes(comparison, checks, rtol, source, what):
    """Notes on what the checks could not see: f not complex-analytic, entries whose finite
    differences are too coarse for a 1% error, culprits located by bisection."""
    notes = []
    if comparison.nonanalytic:
        label, complex_value, central = comparison.nonanalytic[0]
        notes.append(
            f"{what} is not complex-analytic (abs, maximum, where or comparisons?): in "
            f"{len(comparison.nonanalytic)} checks the complex step disagrees with central "
            f"differences, e.g. {label}: complex step {complex_value:.6g}, central differences "
            f"{central:.6g}; those checks use central differences"
        )
    coarse = [
        c
        for c in checks
        if c[3] <= rtol
        and not c.random
        and c[1] != 0
        and c.noise + c.truncation > UNRESOLVED * max(abs(c[1]), abs(c[2]))
        and c.atol <= UNRESOLVED * max(abs(c[1]), abs(c[2]))  # atol already allows that much
    ]
    if coarse:
        c = max(coarse, key=lambda c: (c.noise + c.truncation) / max(abs(c[1]), abs(c[2])))
        notes.append(
            f"{len(coarse)} of {len(checks)} checks cannot resolve a 1% error: their noise + "
            f"truncation is above {UNRESOLVED:.1%} of the derivative ({what} too noisy in "
            f"float64 there, or not smooth), e.g. {c[0]}: {source} {c[1]:.4g}, noise + "
            f"truncation {c.noise + c.truncation:.2g}"
        )
    if comparison.jumps:
        notes.append(
            f"{what} jumps at x (not differentiable there?): at {len(comparison.jumps)} checks "
            f"the finite differences grow like 1/h as h shrinks, e.g. {comparison.jumps[0]}; "
            "they are judged without a truncation allowance"
        )
    if comparison.located:
        notes.append(
            "random checks disagreed beyond the finite-difference error; bisecting their "
            f"entries located {', '.join(comparison.located)}"
        )
    return notes


def _first_order(given, inputs, outputs, x64, flat_f, x0, notes):
    """The derivative to verify, as ("matrix", J), ("vjp", u ↦ uᵀJ) or ("jvp", v ↦ J v)."""
    if "jacobian" in given:
        matrix = _call(given["jacobian"], inputs, x64, "jacobian")
        return ("matrix", _matrix(matrix, outputs, inputs, "jacobian"))
    if "grad" in given:
        g = inputs.flatten(_call(given["grad"], inputs, x64, "grad"), "grad", "a gradient")
        return ("vjp", lambda u: u[0] * g)
    if "vjp" in given:
        pullback = _product(given["vjp"], inputs, x64, "vjp", "cotangent -> VJP")
        return (
            "vjp",
            lambda u: inputs.flatten(pullback(outputs.unflatten(u)), "vjp", "a VJP (like x)"),
        )
    if "jvp" in given:
        pushforward = _product(given["jvp"], inputs, x64, "jvp", "tangent -> JVP")
        return (
            "jvp",
            lambda v: outputs.flatten(
                pushforward(inputs.unflatten(v)), "jvp", "a JVP (like f's output)"
            ),
        )
    return ("vjp", _autograd_vjp(flat_f, x0, notes, "f", "f"))


def _legacy_label(inputs):
    shape = inputs.shapes[0]

    def label(row, col):
        kind, index = col
        if kind == "unit":
            return f"coordinate {tuple(int(i) for i in np.unravel_index(index, shape))}"
        return f"direction {index} (random unit vector)"

    return label


# ---------------------------------------------------------------- autograd primitives


def _find_primitive(function):
    """The autograd primitive behind ``function`` (which may be wrapped, e.g. by ``checked``)."""
    seen = function
    while seen is not None:
        if seen in primitive_vjps:
            return seen
        seen = getattr(seen, "__wrapped__", None)
    return None


def _real_float(value):
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, np.ndarray):
        return np.issubdtype(value.dtype, np.floating)
    return isinstance(value, (float, np.floating))


def _vjp_table(primitive_function):
    """{argument position: VJP maker} from ``defvjp`` (a None VJP made by translate_vjp), or
    None for a primitive defined with ``defvjp_argnums``."""
    maker = primitive_vjps[primitive_function]
    try:
        return inspect.getclosurevars(maker).nonlocals.get("vjps_dict")
    except (TypeError, ValueError):
        return None


def _is_none_vjp(maker):
    return getattr(maker, "__qualname__", "").startswith("translate_vjp.")


def _differentiated(primitive_function, args):
    """The argument positions whose VJP ``defvjp`` defined (not None) and that hold real floats;
    for a primitive defined with ``defvjp_argnums``, every real-float array argument."""
    table = _vjp_table(primitive_function)
    if table is None:
        return [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and _real_float(a)]
    return [
        i
        for i, a in enumerate(args)
        if i in table and not _is_none_vjp(table[i]) and _real_float(a)
    ]


def _skipped(primitive_function, args, positions, names):
    """Notes on the arguments check_vjp leaves out: a VJP declared None, or values that are not
    real floats (autograd does not differentiate integers or bools)."""
    table = _vjp_table(primitive_function)
    notes = []
    for i, a in enumerate(args):
        if i in positions:
            continue
        if table is not None and i in table and _is_none_vjp(table[i]):
            notes.append(f"`{names[i]}` (its VJP is None: not differentiated)")
        elif (table is None or i in table) and isinstance(a, np.ndarray) and a.dtype.kind in "biu":
            notes.append(
                f"`{names[i]}` (its values are {a.dtype}, which autograd does not differentiate;"
                " pass them as floats to check its VJP)"
            )
    return [f"not checked: {', '.join(notes)}"] if notes else []


def _check_vjp_shapes(function, args, kwargs, positions, names, name, seed):
    """Call each VJP once, outside autograd: its result must have its argument's shape (a VJP
    for a broadcast argument must sum the cotangent back). -> a ValueError naming it."""
    full = [np.array(a, dtype=np.float64) if i in positions else a for i, a in enumerate(args)]
    try:
        with outside():
            ans = function(*full, **kwargs)
    except Exception as error:
        raise _user_error("primitive", error, "args") from error
    rng = np.random.default_rng(seed)
    if isinstance(ans, (tuple, list)):
        g = type(ans)(rng.standard_normal(np.shape(a)) for a in ans)
    else:
        g = rng.standard_normal(np.shape(ans))
    for i in positions:
        try:
            with outside():
                result = primitive_vjps[function]((i,), ans, tuple(full), kwargs)(g)
                result = next(iter(result))
        except Exception as error:
            raise ValueError(
                f"primitive: expected {name}'s VJP for `{names[i]}` to run on a cotangent shaped "
                f"like its output, got {type(error).__name__}: {error}"
            ) from error
        result = getval(result)
        if not isinstance(result, (np.ndarray, numbers.Number)):
            continue  # e.g. autograd's SparseObject, which adds itself into the gradient
        want, got = np.shape(full[i]), np.shape(result)
        if want != got and math.prod(want) != math.prod(got):
            raise ValueError(
                f"primitive: expected {name}'s VJP for `{names[i]}` to return an array of "
                f"`{names[i]}`'s shape {want}, got shape {got} (for a broadcast argument, sum the "
                "cotangent over the broadcast axes: unbroadcast it)"
            )


@checked(
    primitive=_function("an autograd primitive"),
    kwargs=optional(lambda name, value, arguments: _dict_rule(name, value)),
    argnums=optional(lambda name, value, arguments: _argnums_rule(name, value, arguments)),
    **_OPTION_RULES,
)
def check_vjp(
    primitive,
    *args,
    kwargs=None,
    argnums=None,
    order=1,
    method="central",
    sweep=False,
    step=None,
    rtol=1e-4,
    atol=None,
    n_directions=10,
    n_coordinates=20,
    max_full=200,
    seed=0,
):
    """Verify the VJPs of an autograd primitive (``autograd.extend.primitive`` + ``defvjp``) at
    ``primitive(*args, **kwargs)``, for every argument it differentiates, against finite
    differences:  gᵀ J_a  (the VJP for argument a)  vs  the Jacobian ∂primitive/∂a.

    args: the primitive's arguments (arrays and settings such as an axis or a shape);
      kwargs: keyword arguments, held fixed. argnums: the positions to check (default: every
      real-float argument whose VJP ``defvjp`` defined; a None VJP means "not differentiated").
      The arguments left out are listed in the report's notes ("not checked: …").
    Each VJP is first called once on a cotangent shaped like the output: one that returns a
      shape other than its argument's (a broadcast argument not unbroadcast) is a ValueError.
    order=2 also differentiates the VJP itself (grad-of-grad, docs/design.md §13): the Jacobian
      of (args, u) ↦ uᵀ J for a random cotangent u, from autograd through your VJP.
    The other options are gradcheck's. Entries are named by the primitive's parameters, e.g.
    "∂f[1]/∂`a`[1, 0]". Returns a GradcheckReport.
    """
    function = _find_primitive(primitive)
    if function is None:
        raise ValueError(
            "primitive: expected an autograd primitive (autograd.extend.primitive, with VJPs "
            f"from defvjp), got {getattr(primitive, '__name__', type(primitive).__name__)}, "
            "which is not one; check a composite function with gradcheck"
        )
    kwargs = {} if kwargs is None else kwargs
    name = getattr(function, "__name__", "the primitive")
    names = _parameter_names(primitive, len(args))
    names = names or [f"args[{i}]" for i in range(len(args))]
    positions = _differentiated(function, args) if argnums is None else list(argnums)
    if not positions:
        raise ValueError(
            f"args: expected at least one real-float argument with a VJP for {name}, got none"
        )
    for i in positions:
        if i >= len(args):
            raise ValueError(f"argnums: expected positions below {len(args)}, got {i}")
        try:
            check_array("args", args[i], nonempty=True)
        except ValueError as error:
            message = str(error).split(": ", 1)[1]
            raise ValueError(f"args: {message} (argument {names[i]!r})") from None
    _check_vjp_shapes(function, args, kwargs, positions, names, name, seed)

    def call(**differentiated):
        full = list(args)
        for i in positions:
            full[i] = differentiated[names[i]]
        return primitive(*full, **kwargs)

    call.__name__ = name
    x = {names[i]: args[i] for i in positions}
    report = gradcheck(
        call,
        x,
        order=order,
        method=method,
        sweep=sweep,
        step=step,
        rtol=rtol,
        atol=atol,
        n_directions=n_directions,
        n_coordinates=n_coordinates,
        max_full=max_full,
        seed=seed,
    )
    if order == 1:
        report.gradient_name = f"{name}'s VJP"
    else:
        report.gradient_name = f"autograd through {name}'s VJP"
    if report.sweep is not None:
        report.sweep.source = report.gradient_name
    if argnums is None:
        report.notes += _skipped(function, args, positions, names)
    return report


def _dict_rule(name, value):
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a dict of keyword arguments, got {value!r}")
    return value


def _argnums_rule(name, value, arguments):
    if not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"{name}: expected a non-empty tuple of argument positions, got {value!r}")
    for i in value:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise ValueError(f"{name}: expected argument positions (ints >= 0), got {value!r}")
    return tuple(int(i) for i in value)


# ---------------------------------------------------------------- the step, explained


@dataclass
class StepSweep:
    """The finite-difference error against the step h for one check uᵀJv (``gradcheck(...,
    sweep=True)``), measured against ``derivative``, the value being verified (yours or
    autograd's). With φ(t) = uᵀf(x + t v) and η the rounding noise in computed values of φ:

        central       D(h) = (φ(h) − φ(−h)) / 2h     error ≈ |φ'''| h²/6  +  η / (√2 h)
        Richardson    (4 D(h/2) − D(h)) / 3          error ≈ c h⁴         +  η / h
        complex step  Im φ(ih) / h                   error ≈ |φ'''| h²/6  +  ε|φ'|

    Truncation falls with h, round-off grows as h shrinks: a V, whose bottom is near
    h* = (3η / (√2 |φ'''|))^(1/3) (about ε^(1/3) when η ≈ ε|φ| and φ''' ≈ φ).

    steps: absolute steps h, 1e-14 to 1e-1 times ``scale`` (gradcheck's step for this check ÷
    its starting step ε^(1/3), or ε^(1/5) for Richardson: the sweep is centred where gradcheck
    stepped; 1 for the complex step's own h); central, richardson, complex_step: the absolute
    errors at each (complex_step None when f does not take complex input, see ``complex_note``);
    chosen_step, chosen_error: gradcheck's step and its error there; noise: η, measured from φ
    at 17 points 1e-13·scale apart; value: |φ| = Σ_i |u_i f_i(x)|; third_derivative: |φ'''| from a
    five-point stencil (None when too small to measure); estimate: the most accurate finite
    difference (the complex step where f allows it, else Richardson at h = ε^(1/5)·scale, inside
    f's domain); disagrees: the check failed; domain_edge: the smallest step at which f was not
    finite or raised (the sweep stops there: larger steps leave f's domain), with
    ``edge_reason``; None when every step worked. If the derivative being verified is wrong by
    δ, every curve floors at δ: no step gets closer, and the floor, not the step, is the
    finding.
    """

    label: str
    source: str
    derivative: float
    steps: np.ndarray = field(repr=False)
    scale: float
    central: np.ndarray = field(repr=False)
    richardson: np.ndarray = field(repr=False)
    complex_step: object = field(repr=False)
    complex_note: str
    chosen_step: float
    chosen_error: float
    method: str
    value: float
    noise: float
    third_derivative: object
    estimate: float = math.nan
    disagrees: bool = False
    domain_edge: object = None
    edge_reason: str = ""

    def best(self, method):
        """(step, error) where ``method`` ("central", "richardson", "complex step") did best, or
        None when it was not available."""
        methods = {
            "central": self.central,
            "richardson": self.richardson,
            "complex step": self.complex_step,
        }
        if method not in methods:
            raise ValueError(f"method: expected one of {list(methods)}, got {method!r}")
        errors = methods[method]
        if errors is None or not np.any(np.isfinite(errors)):
            return None
        i = int(np.nanargmin(errors))
        return float(self.steps[i]), float(errors[i])

    def truncation(self, h):
        """The central difference's truncation error |φ'''| h²/6 (0 when not measurable)."""
        return (self.third_derivative or 0.0) * np.asarray(h) ** 2 / 6

    def roundoff(self, h):
        """The central difference's round-off error η / (√2 h)."""
        return self.noise / (math.sqrt(2) * np.asarray(h))

    @property
    def predicted_step(self):
        """The step that minimizes truncation + round-off, (3η / (√2 |φ'''|))^(1/3), or None."""
        if not self.third_derivative or not self.noise:
            return None
        return float((3 * self.noise / (math.sqrt(2) * self.third_derivative)) ** (1 / 3))

    def plateau(self, method):
        """The median error of ``method`` over 1e-8 ≤ h / scale ≤ 1e-3, where truncation and
        round-off are both small for a smooth f: the distance a wrong derivative is off by."""
        methods = {
            "central": self.central,
            "richardson": self.richardson,
            "complex step": self.complex_step,
        }
        if method not in methods:
            raise ValueError(f"method: expected one of {list(methods)}, got {method!r}")
        errors = methods[method]
        if errors is None:
            return None
        middle = (self.steps >= 1e-8 * self.scale) & (self.steps <= 1e-3 * self.scale)
        middle &= np.isfinite(errors)
        return float(np.median(errors[middle])) if middle.any() else None

    def __repr__(self):
        scale = max(abs(self.derivative), EPS)
        methods = ("central", "richardson", "complex step")
        lines = [
            f"step sweep for {self.label}: errors against {self.source} {self.derivative:.10g}"
        ]
        if self.disagrees:
            offset = abs(self.derivative - self.estimate)
            lines.append(
                f"  the derivative is off, not the step: {self.source} is {offset:.2g} (relative "
                f"{offset / scale:.2g}) from the best finite difference {self.estimate:.10g}, "
                "and every method levels off at that distance"
            )
            plateaus = [(m, self.plateau(m)) for m in methods if self.plateau(m) is not None]
            lines.append(
                "  median error for 1e-8 <= h <= 1e-3: "
                + ", ".join(f"{m} {p:.2g}" for m, p in plateaus)
            )
        else:
            lines.append(f"  {'method':<14}{'best step':>11}{'error there':>14}{'relative':>11}")
            for method in methods:
                best = self.best(method)
                if best is not None:
                    h, error = best
                    lines.append(f"  {method:<14}{h:>11.2g}{error:>14.2g}{error / scale:>11.2g}")
            lines.append(
                f"  gradcheck's step {self.chosen_step:.2g} ({self.method}): error "
                f"{self.chosen_error:.2g} (relative {self.chosen_error / scale:.2g})"
            )
        lines.append(
            f"  round-off: φ's noise η = {self.noise:.2g} (ε|φ| = {EPS * self.value:.2g}); "
            + (
                f"truncation: |φ'''| = {self.third_derivative:.3g}"
                if self.third_derivative
                else "truncation: φ''' too small to measure"
            )
        )
        if self.predicted_step is not None and not self.disagrees:
            lines.append(
                f"  best central step predicted (3η/(√2|φ'''|))^(1/3) = {self.predicted_step:.2g}"
            )
        prefix = (
            "complex step: " if self.complex_step is not None else "complex step not available: "
        )
        lines.append(f"  {prefix}{self.complex_note}")
        if self.domain_edge is not None:
            lines.append(
                f"  the sweep stops at h = {self.domain_edge:.2g}, the edge of f's domain "
                f"({self.edge_reason})"
            )
        return "\n".join(lines)

    def plot(self, ax=None, path=None):
        """Draw the sweep (log-log): the V of central differences, Richardson, the complex
        step, the truncation (∝ h²) and round-off (∝ 1/h) lines, gradcheck's step and the best
        one. ax: a matplotlib Axes (default a new figure); path: save the figure there.
        Returns the Axes. matplotlib is imported here, on first use."""
        if path is not None:
            path = check_output_file("path", path)
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.6))
        h = self.steps
        shown = lambda errors: np.where(errors > 0, errors, np.nan)  # log axes: 0 is off-scale
        ax.loglog(h, shown(self.central), "o-", ms=3, label="central differences")
        ax.loglog(h, shown(self.richardson), "s-", ms=3, label="Richardson (4D(h/2) − D(h))/3")
        if self.complex_step is not None:
            ax.loglog(h, shown(self.complex_step), "^-", ms=3, label="complex step Im φ(ih)/h")
        measured = np.concatenate([self.central, self.richardson])
        measured = measured[measured > 0]
        model = self.roundoff(h) + self.truncation(h)
        model = model[model > 0]
        low = min(np.concatenate([measured, model]), default=EPS) / 10
        high = float(np.max(measured)) * 10 if measured.size else 1.0
        if self.noise:
            ax.loglog(h, self.roundoff(h), "k--", lw=1, label="round-off η/(√2 h): slope −1")
        if self.third_derivative:
            ax.loglog(h, self.truncation(h), "k-.", lw=1, label="truncation |φ'''|h²/6: slope 2")
        ax.axvline(
            self.chosen_step, color="C3", ls=":", label=f"gradcheck's h {self.chosen_step:.1e}"
        )
        if self.domain_edge is not None:
            ax.axvline(self.domain_edge, color="k", lw=2, alpha=0.4, label="edge of f's domain")
        if self.disagrees:
            offset = abs(self.derivative - self.estimate)
            ax.axhline(
                offset, color="C3", lw=2, alpha=0.5, label=f"{self.source} is off by {offset:.2g}"
            )
        elif self.best("central") is not None:
            best_h, best_error = self.best("central")
            ax.plot(
                [best_h], [best_error], "*", color="C3", ms=12, label=f"best central h {best_h:.1e}"
            )
        ax.set_ylim(max(low, 1e-300), high)
        ax.set_xlabel("step h")
        ax.set_ylabel(f"|finite difference − {self.source}|")
        ax.set_title(f"finite-difference error for {self.label}", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        if path is not None:
            ax.figure.savefig(path, dpi=120, bbox_inches="tight")
        return ax


def _step_sweep(F, x0, u, v, check, source, method, rtol):
    """Measure a StepSweep for one check (a Check), along u and v. Steps at which f is not
    finite or raises end the sweep there (the edge of f's domain)."""
    label, analytic, numeric, rel = check[:4]
    phi = lambda vector, where="x": np.array([np.dot(u, F(vector, where))])
    base = RICHARDSON_STEP if method == "richardson" else DEFAULT_STEP
    chosen = check.step
    scale = chosen / base if math.isfinite(chosen) and chosen > 1e-12 else 1.0
    steps = SWEEP_STEPS * scale
    central, richardson = np.full(steps.size, np.nan), np.full(steps.size, np.nan)
    edge, reason = None, ""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, h in enumerate(steps):
            try:
                c, r = _central(phi, x0, v, h)[0], _richardson(phi, x0, v, h)[0]
            except ValueError as error:
                edge, reason = float(h), str(error)
                break
            central[i], richardson[i] = abs(c - analytic), abs(r - analytic)
    usable = steps[np.isfinite(central)]
    h_ref = RICHARDSON_STEP * scale
    if edge is not None and usable.size:
        h_ref = min(h_ref, float(usable[-1]))
    try:
        reference = estimate = _richardson(phi, x0, v, h_ref)[0]
    except ValueError:
        reference = estimate = numeric
    try:
        complex_values = np.array([_complex_step(phi, x0, v, h)[0] for h in steps])
        tiny = _complex_step(phi, x0, v, COMPLEX_STEP * scale)[0]
        if abs(tiny - reference) > 1e-5 * max(abs(tiny), abs(reference), 1e-8):
            complex_errors = None
            note = (
                f"f takes complex input but is not complex-analytic (the complex step gives "
                f"{tiny:.6g}, differences {reference:.6g}): abs, maximum, where or comparisons?"
            )
        else:
            complex_errors = np.abs(complex_values - analytic)
            estimate = tiny
            note = f"f accepts complex input; at h = {COMPLEX_STEP:g}·{scale:g} the error is "
            note += f"{abs(tiny - analytic):.2g}"
    except Exception as error:  # f refuses complex input: the complex step is not available
        complex_errors = None
        note = f"f does not take complex input ({type(error).__name__}: {error})"
    # η: φ at 17 points 1e-13·scale apart, less the straight line through them (φ'' t² is
    # far below rounding there), is rounding noise alone
    t = np.arange(-8, 9) * 1e-13 * scale
    values = np.array([phi(x0 + ti * v)[0] for ti in t])
    residual = values - np.polyval(np.polyfit(t, values, 1), t)
    noise = float(np.sqrt(np.sum(residual**2) / (len(t) - 2)))
    # the third derivative from a five-point stencil, at a step where its rounding
    # (≈ 1.6 η / h³) is small, inside f's domain
    h3, third = RICHARDSON_STEP * scale, None
    if edge is not None:
        h3 = min(h3, edge / 4)
    try:
        ends = [phi(x0 + k * h3 * v)[0] for k in (2, 1, -1, -2)]
        third = abs(ends[0] - 2 * ends[1] + 2 * ends[2] - ends[3]) / (2 * h3**3)
        if third <= 10 * max(noise, EPS * abs(values[8])) / h3**3:
            third = None
    except ValueError:
        third = None
    return StepSweep(
        label=label,
        source=source,
        derivative=analytic,
        steps=steps,
        scale=scale,
        central=central,
        richardson=richardson,
        complex_step=complex_errors,
        complex_note=note,
        chosen_step=chosen,
        chosen_error=abs(analytic - numeric),
        method=method,
        value=float(np.sum(np.abs(u * F(x0)))),
        noise=noise,
        third_derivative=third,
        estimate=float(estimate),
        disagrees=bool(rel > rtol),
        domain_edge=edge,
        edge_reason=reason,
    )
