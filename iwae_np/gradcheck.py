"""Verify derivatives against finite differences: gradients, Jacobians, VJPs, second derivatives.

    ∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h           (error O(h²) + O(ε|f| / h))

The step balances the two errors: h = ε^(1/3) · max(1, |x_i|) ≈ 6e-6 · max(1, |x_i|) in float64
(ε = 2.2e-16), which leaves about ε^(2/3) ≈ 4e-11 relative error for a smooth f. Inputs are
always checked in float64, whatever their dtype, because float32 differences are too coarse
(docs/design.md §4, §11).

Everything here is one comparison. f maps its arguments, flattened into one vector x of n
entries, to outputs flattened into m entries, with Jacobian J (m × n). A check compares

    uᵀ J v   (yours or autograd's)   with   uᵀ (f(x + h v) − f(x − h v)) / 2h

for unit vectors u = e_i, v = e_j (the entry J_ij, named in the words of the math, e.g.
"∂z[0, 1]/∂`log_std`[0, 1]") or random unit vectors (which see every entry at once). A scalar f
has m = 1, so J is the gradient. Second derivatives are the same comparison applied to the
gradient x ↦ ∇f(x), whose Jacobian is the Hessian.

Small problems (n and m ≤ ``max_full``) are checked entry by entry. Larger ones get random
directions plus a random sample of single entries (which name the culprit).

``check_vjp(primitive, *args)`` checks the VJPs of an autograd primitive (``defvjp``), and with
``order=2`` the VJP of those VJPs, as PyTorch's gradcheck and gradgradcheck do for a function.

``gradcheck(..., sweep=True)`` adds the experiment that shows why the step can be trusted: the
error against h over 13 decades for the worst entry (a V: truncation ∝ h² on the right, round-off
∝ 1/h on the left), with Richardson extrapolation and the complex step beside it.
"""

import inspect
import math
import numbers
import re
import warnings
from dataclasses import dataclass, field

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.core import primitive_vjps

from .checks import (
    check_array,
    checked,
    flag,
    integer,
    one_of,
    optional,
    outside,
    positive,
)

EPS = float(np.finfo(np.float64).eps)
DEFAULT_STEP = float(EPS ** (1 / 3))  # ≈ 6.06e-6: central differences, error O(h²) + O(ε/h)
RICHARDSON_STEP = float(EPS ** (1 / 5))  # ≈ 7.4e-4: Richardson, error O(h⁴) + O(ε/h)
COMPLEX_STEP = 1e-20  # the complex step has no cancellation: any tiny h will do
METHODS = ("central", "richardson", "complex")
SWEEP_STEPS = np.logspace(-14, -1, 53)  # relative steps of the sweep, 4 per decade


# ---------------------------------------------------------------- the report


@dataclass
class GradcheckReport:
    """The outcome of ``gradcheck`` or ``check_vjp``.

    passed: every check within ``rtol``; max_rel_error: the largest relative error seen;
    worst: where it was (e.g. "coordinate (i, j)", "`log_std`[2, 0]", "∂z[1]/∂`mean`[1]",
    "∂²f/∂`mu`[0]∂`s`[0]", or with random unit vectors u_l, v_k in place of an entry), with
    ``analytic`` (yours or autograd's) and ``numeric`` (finite differences) its two values;
    checks: (label, analytic, numeric, rel_error) for every check; failures: those beyond
    ``rtol``; noise_floor: differences below it count as agreement (the largest over the output
    rows); kind: "gradient", "Jacobian", "Hessian" or "second derivatives"; of: what was
    differentiated ("" for one array and a scalar f, the original report); notes: warnings, such
    as a gradient autograd cannot see through; sweep: a StepSweep when asked for.
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
            "central": "",
            "richardson": "Richardson-extrapolated central differences, ",
            "complex": "complex step Im f(x + ih·v)/h, ",
        }[self.method]
        lines.append(
            f"  {how}step h = {self.step:.3g} x max(1, |x|); differences below "
            f"{self.noise_floor:.2g} are finite-difference noise"
        )
        if not legacy and any(re.search(r"\b[uv]_\d", c[0]) for c in self.checks):
            lines.append("  u_l, v_k: random unit vectors (over the outputs and the inputs)")
        lines += [f"  note: {note}" for note in self.notes]
        bad = self.failures
        if bad:
            lines.append(f"  {len(bad)} of {len(self.checks)} checks disagree, e.g.:")
            for label, analytic, numeric, rel in bad[:5]:
                lines.append(
                    f"    {label}: {short} {analytic:.8g} vs "
                    f"finite differences {numeric:.8g} (relative error {rel:.2g})"
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
        """A value of this structure as one vector, with autograd.numpy (a box stays a box)."""
        parts = self.parts(value)
        if len(parts) == 1:
            return anp.ravel(parts[0])
        return anp.concatenate([anp.ravel(part) for part in parts])

    def flatten(self, value, what, describe, dtype=np.float64):
        """A value of this structure (checked part by part) as one vector of ``dtype``."""
        if self.kind == "array":
            parts = [value]
        elif self.kind == "dict":
            if not isinstance(value, dict) or set(value) != set(self.keys):
                got = sorted(value) if isinstance(value, dict) else type(value).__name__
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
            try:
                array = np.asarray(part, dtype=dtype)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"{what}: expected {describe}{self.whose(name)} as an array of numbers, "
                    f"got {type(part).__name__} ({error})"
                ) from None
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


def _outputs(value, fname):
    """The structure of f's output: one array (named as f, e.g. "f"), a tuple ("f[0]", …) or a
    dict (its keys)."""
    if isinstance(value, (tuple, list)):
        shapes = [np.shape(v) for v in value]
        names = [f"{fname}[{i}]" for i in range(len(value))]
        return _Structure("tuple", names, shapes, quoted=False)
    if isinstance(value, dict):
        keys = list(value)
        shapes = [np.shape(v) for v in value.values()]
        return _Structure("dict", [str(k) for k in keys], shapes, keys, quoted=False)
    return _Structure("array", [fname], [np.shape(value)], quoted=False)


def _name_of(function):
    """The function's name for the report ("f" for a lambda or a callable object)."""
    name = getattr(function, "__name__", "f")
    return name if isinstance(name, str) and name.isidentifier() else "f"


def _matrix(value, rows, cols, what):
    """A Jacobian given as an (m, n) matrix or as blocks ∂row/∂col (nested tuples or dicts,
    each block of shape row.shape + col.shape), as one (m, n) float64 matrix."""
    if not isinstance(value, (tuple, list, dict)):
        array = np.asarray(value, dtype=np.float64)
        if array.shape == (rows.size, cols.size):
            return array.copy()
    blocks = rows.parts(value) if rows.kind != "array" else [value]
    if rows.kind != "array" and len(blocks) != len(rows.shapes):
        raise ValueError(f"{what}: expected one block row per output {rows.names}, got {value!r}")
    matrix = np.empty((rows.size, cols.size))
    for r, row in enumerate(blocks):
        parts = cols.parts(row) if cols.kind != "array" else [row]
        for c, part in enumerate(parts):
            want = rows.shapes[r] + cols.shapes[c]
            array = np.asarray(part, dtype=np.float64)
            if array.shape != want:
                raise ValueError(
                    f"{what}: expected a ({rows.size}, {cols.size}) matrix or the block "
                    f"∂{_entry_text(rows.names[r], (), ())}/∂{_entry_text(cols.names[c], (), ())}"
                    f" of shape {want}, got {array.shape}"
                )
            block = array.reshape(rows.sizes[r], cols.sizes[c])
            matrix[rows.offsets[r] : rows.offsets[r + 1], cols.offsets[c] : cols.offsets[c + 1]] = (
                block
            )
    return matrix


# ---------------------------------------------------------------- evaluating f


class _Function:
    """f as a map from one flat vector to one flat vector, evaluated as the user wrote it."""

    def __init__(self, call, inputs, what="f", fname="f"):
        self.call, self.inputs, self.what, self.fname = call, inputs, what, fname
        self.outputs = None

    def __call__(self, vector, where="x"):
        complex_input = np.iscomplexobj(vector)
        with outside():  # the user's code: its calls into the package are checked again
            value = self.call(self.inputs.unflatten(vector))
        if self.outputs is None:
            self.outputs = _outputs(value, self.fname)
        dtype = np.complex128 if complex_input else np.float64
        flat = self.outputs.flatten(value, self.what, "an output", dtype=dtype)
        if not complex_input and not np.all(np.isfinite(flat)):
            bad = int(np.flatnonzero(~np.isfinite(flat))[0])
            raise ValueError(
                f"{self.what}: expected a finite value at {where}, got {flat[bad]} "
                f"at {self.outputs.entry(bad)}"
            )
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


_DIFFERENCES = {"central": _central, "richardson": _richardson, "complex": _complex_step}


# ---------------------------------------------------------------- the comparison


def _probes(size, scales, x_scale, full, n_units, n_random, rng):
    """Unit vectors e_j (all of them when ``full``, else a sample) and random unit vectors:
    -> matrix (size, p), descriptions [("unit", j) | ("random", k)], step scales (p,)."""
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
    step_scales = np.array([scales[j] for j in units] + [x_scale] * len(randoms))
    return matrix, described, step_scales


def _compare(
    F, x0, F0, provider, label, *, method, step, atol, n_directions, n_coordinates, max_full, rng
):
    """Every check uᵀ J v of the problem, U (m, q) and P (n, p) holding the u's and v's:
    -> (checks, relative errors (q, p), U, P, step scales (p,), noise floors (q,))."""
    n, m = x0.size, F0.size
    scales = np.maximum(1.0, np.abs(x0))
    x_scale = max(1.0, float(np.sqrt(np.mean(x0 * x0))))
    P, cols, h_scales = _probes(n, scales, x_scale, n <= max_full, n_coordinates, n_directions, rng)
    U, rows, _ = _probes(m, np.ones(m), 1.0, m <= max_full, n_coordinates, n_directions, rng)

    difference = _DIFFERENCES[method]
    D = np.stack([difference(F, x0, P[:, k], step * h_scales[k]) for k in range(P.shape[1])], 1)
    N = U.T @ D
    kind, analytic = provider
    with outside():
        if kind == "matrix":
            row_full = U.T @ analytic
            A = row_full @ P
        elif kind == "vjp":
            row_full = np.stack([analytic(U[:, l]) for l in range(U.shape[1])])
            A = row_full @ P
        else:  # jvp
            A = U.T @ np.stack([analytic(P[:, k]) for k in range(P.shape[1])], axis=1)
            row_full = A
    if atol is None:
        # Rounding in uᵀF(x ± h v) is about ε·Σ|u_i F_i| / h; the value can understate it when
        # terms cancel, so entries a million times smaller than the largest in their row are
        # also judged absolutely (docs/design.md §11). The complex step does not divide a
        # rounding error by h.
        rounding = 100 * EPS * np.maximum(1.0, np.abs(U).T @ np.abs(F0))
        if method != "complex":
            rounding = rounding / step
        row_max = np.max(np.abs(row_full), axis=1) if row_full.size else np.zeros(U.shape[1])
        floors = np.maximum(rounding, 1e-6 * row_max)
    else:
        floors = np.full(U.shape[1], atol)
    with np.errstate(invalid="ignore"):
        rel = np.abs(A - N) / np.maximum(np.maximum(np.abs(A), np.abs(N)), floors[:, None])
    rel = np.where(np.isnan(rel), np.inf, rel)
    checks = [
        (label(rows[l], cols[k]), float(A[l, k]), float(N[l, k]), float(rel[l, k]))
        for l in range(U.shape[1])
        for k in range(P.shape[1])
    ]
    return checks, rel, U, P, h_scales, floors


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
    atol=optional(positive()),
    n_directions=integer(minimum=0),
    n_coordinates=integer(minimum=0),
    max_full=integer(minimum=0),
    seed=integer(minimum=0),
)


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
      float64. f returns a scalar (its gradient is checked), or an array, a tuple or a dict of
      arrays (its Jacobian J, ∂f[i]/∂x[j], is checked).
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
    method: "central", "richardson" ((4 D(h/2) − D(h))/3, error O(h⁴)) or "complex"
      (Im f(x + ih·v)/h, for an f written with complex-safe autograd.numpy operations).
    sweep: True (or the label of one check) adds ``report.sweep``, a StepSweep: the error
      against the step h over 13 decades for the worst check, with ``.plot()``.
    step: relative step h (default ε^(1/3) ≈ 6e-6; ε^(1/5) ≈ 7e-4 for Richardson, 1e-20 for the
      complex step); rtol: allowed relative error (default 1e-4: a correct derivative typically
      shows 1e-11 to 1e-6, a 1% mistake shows 1e-2).
    atol: differences smaller than this count as agreement (default, per output row: the
      larger of the finite-difference noise level 100 · ε · max(1, |f(x)|) / h and
      1e-6 · the row's largest derivative).
    n_directions, n_coordinates: how many random unit directions and sampled entries to check
      when x (or the output) has more than ``max_full`` entries; seed: for choosing them.
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
    if step is None:
        step = {"central": DEFAULT_STEP, "richardson": RICHARDSON_STEP}.get(method, COMPLEX_STEP)
    inputs, x64 = _inputs(f, x)
    if inputs.size > max_full and n_directions + n_coordinates == 0:
        raise ValueError(
            "n_directions, n_coordinates: expected at least one check for an x "
            f"larger than max_full={max_full}, got 0 and 0"
        )
    x0 = inputs.flatten(x64, "x", "an argument")
    F = _Function(lambda value: inputs.call(f, value), inputs, "f", _name_of(f))
    F0 = F(x0)
    outputs = F.outputs
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
    notes = []

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
            inputs.flatten(inputs.call(grad, x64), "grad", "a gradient")  # its shapes, checked
            gradient = lambda vector: inputs.flatten_traceable(
                inputs.call(grad, inputs.unflatten(vector))
            )
            what = "grad"
        else:
            gradient = autograd.grad(lambda vector: flat_f(vector)[0])
            what = "f's gradient"
        target = _Function(lambda value: gradient(inputs.flatten_traceable(value)), inputs, what)
        point = x0
        value = target(x0)
        if "hessian" in given:
            provider = ("matrix", _matrix(inputs.call(hessian, x64), inputs, inputs, "hessian"))
        elif "hvp" in given:
            product = inputs.call(hvp, x64)
            provider = (
                "jvp",
                lambda v: inputs.flatten(
                    product(inputs.unflatten(v)), "hvp", "a Hessian-vector product"
                ),
            )
        else:
            provider = ("vjp", _autograd_vjp(gradient, x0, notes, what))
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
            pullback_at_x = inputs.call(vjp, x64)
            inputs.flatten(pullback_at_x(outputs.unflatten(g0)), "vjp", "a VJP (structured like x)")

            def pullback(vector):
                product = inputs.call(vjp, inputs.unflatten(vector[:n]))
                return inputs.flatten_traceable(product(outputs.unflatten(vector[n:])))

            what = "vjp"
        else:

            def pullback(vector):
                product, _ = autograd.make_vjp(flat_f)(vector[:n])
                return product(vector[n:])

            what = "f's VJP"
        point = np.concatenate([x0, g0])
        target = _Function(
            lambda value: pullback(extended.flatten_traceable(value)), extended, what
        )
        value = target(point)
        provider = ("vjp", _autograd_vjp(pullback, point, notes, what))
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
    checks, rel, U, P, h_scales, floors = _compare(
        target,
        point,
        value,
        provider,
        label,
        method=method,
        step=step,
        atol=atol,
        n_directions=n_directions,
        n_coordinates=n_coordinates,
        max_full=max_full,
        rng=rng,
    )
    worst_at = np.unravel_index(int(np.argmax(rel)), rel.shape)
    worst = checks[worst_at[0] * rel.shape[1] + worst_at[1]]
    report = GradcheckReport(
        passed=bool(worst[3] <= rtol),
        max_rel_error=worst[3],
        worst=worst[0],
        analytic=worst[1],
        numeric=worst[2],
        rtol=rtol,
        step=step,
        noise_floor=float(np.max(floors)),
        gradient_name=source,
        checks=checks,
        kind=kind,
        of=of,
        method=method,
        notes=notes,
    )
    if sweep is not False:
        if isinstance(sweep, str):
            labels = [c[0] for c in checks]
            if sweep not in labels:
                raise ValueError(
                    f"sweep: expected True or the label of a check, e.g. {labels[0]!r}, "
                    f"got {sweep!r}"
                )
            worst_at = np.unravel_index(labels.index(sweep), rel.shape)
        l, k = worst_at
        check = checks[l * rel.shape[1] + k]
        report.sweep = _step_sweep(
            target,
            point,
            value,
            U[:, l],
            P[:, k],
            float(h_scales[k]),
            check,
            {"your": "yours"}.get(source, source),
            step,
            method,
            rtol,
        )
    return report


def _first_order(given, inputs, outputs, x64, flat_f, x0, notes):
    """The derivative to verify, as ("matrix", J), ("vjp", u ↦ uᵀJ) or ("jvp", v ↦ J v)."""
    if "jacobian" in given:
        return ("matrix", _matrix(inputs.call(given["jacobian"], x64), outputs, inputs, "jacobian"))
    if "grad" in given:
        g = inputs.flatten(inputs.call(given["grad"], x64), "grad", "a gradient")
        return ("vjp", lambda u: u[0] * g)
    if "vjp" in given:
        pullback = inputs.call(given["vjp"], x64)
        return (
            "vjp",
            lambda u: inputs.flatten(pullback(outputs.unflatten(u)), "vjp", "a VJP (like x)"),
        )
    if "jvp" in given:
        pushforward = inputs.call(given["jvp"], x64)
        return (
            "jvp",
            lambda v: outputs.flatten(
                pushforward(inputs.unflatten(v)), "jvp", "a JVP (like f's output)"
            ),
        )
    return ("vjp", _autograd_vjp(flat_f, x0, notes, "f"))


def _legacy_label(inputs):
    shape = inputs.shapes[0]

    def label(row, col):
        kind, index = col
        if kind == "unit":
            return f"coordinate {tuple(int(i) for i in np.unravel_index(index, shape))}"
        return f"direction {index} (random unit vector)"

    return label


def _autograd_vjp(flat_function, point, notes, what):
    """autograd's VJP of a flat function at ``point``: u ↦ uᵀJ (one forward pass, kept)."""
    with warnings.catch_warnings(record=True) as caught, outside():
        warnings.simplefilter("always")
        product, _ = autograd.make_vjp(flat_function)(point)
    if any("independent of input" in str(w.message) for w in caught):
        notes.append(
            f"autograd sees {what} as constant in its input (zero derivative); if it is not, "
            "it was computed with plain numpy where autograd.numpy is needed"
        )

    def vjp(u):
        with outside():
            return np.asarray(product(u), dtype=np.float64)

    return vjp


# ---------------------------------------------------------------- autograd primitives


def _find_primitive(function):
    """The autograd primitive behind ``function`` (which may be wrapped, e.g. by ``checked``)."""
    seen = function
    while seen is not None:
        if seen in primitive_vjps:
            return seen
        seen = getattr(seen, "__wrapped__", None)
    return None


def _differentiated(primitive_function, args):
    """The argument positions whose VJP ``defvjp`` defined (not None) and that hold real floats;
    for a primitive defined with ``defvjp_argnums``, every real-float array argument."""
    maker = primitive_vjps[primitive_function]
    try:
        table = inspect.getclosurevars(maker).nonlocals.get("vjps_dict")
    except (TypeError, ValueError):
        table = None

    def real_float(value):
        if isinstance(value, (bool, np.bool_)):
            return False
        if isinstance(value, np.ndarray):
            return np.issubdtype(value.dtype, np.floating)
        return isinstance(value, (float, np.floating))

    if table is None:
        return [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and real_float(a)]
    return [
        i
        for i, a in enumerate(args)
        if i in table
        and not getattr(table[i], "__qualname__", "").startswith("translate_vjp.")
        and real_float(a)
    ]


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

    steps: absolute steps h (relative steps × ``scale``); central, richardson, complex_step:
    the absolute errors at each (complex_step None when f does not take complex input, see
    ``complex_note``); chosen_step, chosen_error: gradcheck's step and its error there; noise: η,
    measured from φ at 17 points 1e-13 apart; value: |φ| = Σ_i |u_i f_i(x)|; third_derivative:
    |φ'''| from a five-point stencil (None when too small to measure); estimate: the most
    accurate finite difference (the complex step where f allows it, else Richardson at
    h = ε^(1/5)); disagrees: the check failed. If the derivative being verified is wrong by δ,
    every curve floors at δ: no step gets closer, and the floor, not the step, is the finding.
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

    def best(self, method):
        """(step, error) where ``method`` ("central", "richardson", "complex step") did best, or
        None when it was not available."""
        errors = {
            "central": self.central,
            "richardson": self.richardson,
            "complex step": self.complex_step,
        }[method]
        if errors is None:
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
        errors = {
            "central": self.central,
            "richardson": self.richardson,
            "complex step": self.complex_step,
        }[method]
        if errors is None:
            return None
        middle = (self.steps >= 1e-8 * self.scale) & (self.steps <= 1e-3 * self.scale)
        return float(np.median(errors[middle]))

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
        return "\n".join(lines)

    def plot(self, ax=None, path=None):
        """Draw the sweep (log-log): the V of central differences, Richardson, the complex
        step, the truncation (∝ h²) and round-off (∝ 1/h) lines, gradcheck's step and the best
        one. ax: a matplotlib Axes (default a new figure); path: save the figure there.
        Returns the Axes. matplotlib is imported here, on first use."""
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
        if self.disagrees:
            offset = abs(self.derivative - self.estimate)
            ax.axhline(
                offset, color="C3", lw=2, alpha=0.5, label=f"{self.source} is off by {offset:.2g}"
            )
        else:
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


def _step_sweep(F, x0, F0, u, v, scale, check, source, step, method, rtol):
    """Measure a StepSweep for one check (label, analytic, numeric, rel), along u and v."""
    label, analytic, numeric, rel = check
    phi = lambda vector, where="x": np.array([np.dot(u, F(vector, where))])
    steps = SWEEP_STEPS * scale
    central = np.array([abs(_central(phi, x0, v, h)[0] - analytic) for h in steps])
    richardson = np.array([abs(_richardson(phi, x0, v, h)[0] - analytic) for h in steps])
    reference = estimate = _richardson(phi, x0, v, RICHARDSON_STEP * scale)[0]
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
    # φ''' from a five-point stencil, at a step where its rounding (≈ 1.6 η / h³) is small
    h3 = RICHARDSON_STEP * scale
    ends = [phi(x0 + k * h3 * v)[0] for k in (2, 1, -1, -2)]
    third = abs(ends[0] - 2 * ends[1] + 2 * ends[2] - ends[3]) / (2 * h3**3)
    if third <= 10 * max(noise, EPS * abs(values[8])) / h3**3:
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
        chosen_step=step * scale,
        chosen_error=abs(analytic - numeric),
        method=method,
        value=float(np.dot(np.abs(u), np.abs(F0))),
        noise=noise,
        third_derivative=third,
        estimate=float(estimate),
        disagrees=bool(rel > rtol),
    )
