"""Verify a gradient against central finite differences.

    ∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h           (error O(h²) + O(ε|f| / h))

The step balances the two errors: h = ε^(1/3) · max(1, |x_i|) ≈ 6e-6 · max(1, |x_i|) in float64
(ε = 2.2e-16), which leaves about ε^(2/3) ≈ 4e-11 relative error for a smooth f. Inputs are
always checked in float64, whatever their dtype, because float32 differences are too coarse.

Small inputs (≤ ``max_full`` entries) are checked coordinate by coordinate. Larger ones get
random directional derivatives ∇f·v (which see every coordinate at once) plus a random sample
of single coordinates (which name the culprit).
"""

from dataclasses import dataclass, field

import autograd
import numpy as np

from .checks import check_array, check_int, check_positive

DEFAULT_STEP = float(np.finfo(np.float64).eps ** (1 / 3))  # ≈ 6.06e-6


@dataclass
class GradcheckReport:
    """The outcome of ``gradcheck``.

    passed: every check within ``rtol``; max_rel_error: the largest relative error seen;
    worst: where it was ("coordinate (i, j)" or "direction m"), with ``analytic`` and
    ``numeric`` its two values; checks: (label, analytic, numeric, rel_error) for every check.
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

    def __repr__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"gradcheck {verdict}: max relative error {self.max_rel_error:.3g} "
            f"(tolerance {self.rtol:.3g}) over {len(self.checks)} checks",
            f"  worst: {self.worst}: {self.gradient_name} gradient {self.analytic:.10g}, "
            f"finite differences {self.numeric:.10g}",
            f"  step h = {self.step:.3g} x max(1, |x|); differences below {self.noise_floor:.2g} "
            f"are finite-difference noise",
        ]
        if not self.passed:
            bad = [c for c in self.checks if c[3] > self.rtol]
            lines.append(f"  {len(bad)} of {len(self.checks)} checks disagree, e.g.:")
            for label, analytic, numeric, rel in sorted(bad, key=lambda c: -c[3])[:5]:
                lines.append(
                    f"    {label}: {self.gradient_name} {analytic:.8g} vs "
                    f"finite differences {numeric:.8g} (relative error {rel:.2g})"
                )
        return "\n".join(lines)


def _scalar(f, x, what):
    value = np.asarray(f(x), dtype=np.float64)
    if value.shape != ():
        raise ValueError(f"f: expected a scalar output, got shape {value.shape}")
    if not np.isfinite(value):
        raise ValueError(f"f: expected a finite value at {what}, got {float(value)}")
    return float(value)


def gradcheck(
    f,
    x,
    *,
    grad=None,
    step=None,
    rtol=1e-4,
    atol=None,
    n_directions=10,
    n_coordinates=20,
    max_full=200,
    seed=0,
):
    """Compare a gradient of scalar ``f`` at ``x`` with central finite differences.

    f: array of x's shape -> scalar. x: array (any shape; checked in float64).
    grad: the gradient to verify, a function x -> array of x's shape; default autograd.grad(f).
      Pass your hand-derived gradient here.
    step: relative step h (default ε^(1/3) ≈ 6e-6); rtol: allowed relative error (default 1e-4:
      a correct gradient typically shows 1e-11 to 1e-6, a 1% mistake shows 1e-2).
    atol: differences smaller than this count as agreement (default: the larger of the
      finite-difference noise level 100 · ε · max(1, |f(x)|) / h and 1e-6 · max |gradient|).
    n_directions, n_coordinates: how many random directions and sampled coordinates to check
      when x has more than ``max_full`` entries; seed: for choosing them.
    Returns a GradcheckReport (``.passed``, ``.max_rel_error``, ``.worst``, readable repr).
    """
    if not callable(f):
        raise ValueError(f"f: expected a function of x, got {type(f).__name__}")
    if grad is not None and not callable(grad):
        raise ValueError(
            f"grad: expected a function x -> gradient, or None, got {type(grad).__name__}"
        )
    # a float64 copy, checked first (lists, ints, float32 are fine; str, complex, ragged are not)
    x = np.array(check_array("x", x, nonempty=True), dtype=np.float64)
    check_int("seed", seed, minimum=0)
    step = DEFAULT_STEP if step is None else check_positive("step", step)
    rtol = check_positive("rtol", rtol)
    n_directions = check_int("n_directions", n_directions, minimum=0)
    n_coordinates = check_int("n_coordinates", n_coordinates, minimum=0)
    max_full = check_int("max_full", max_full, minimum=0)
    if x.size > max_full and n_directions + n_coordinates == 0:
        raise ValueError(
            "n_directions, n_coordinates: expected at least one check for an x "
            f"larger than max_full={max_full}, got 0 and 0"
        )
    rng = np.random.default_rng(seed)

    f_x = _scalar(f, x, "x")
    analytic_grad = np.asarray((autograd.grad(f) if grad is None else grad)(x), dtype=np.float64)
    if analytic_grad.shape != x.shape:
        raise ValueError(f"grad: expected a gradient of shape {x.shape}, got {analytic_grad.shape}")
    if atol is None:
        # Rounding in f(x ± h) is ~ε·|f| / h; |f(x)| can understate it when terms of f cancel,
        # so entries a million times smaller than the largest gradient entry are also judged
        # absolutely: a 1% error there cannot matter to an optimizer.
        noise_floor = max(
            100 * np.finfo(np.float64).eps * max(1.0, abs(f_x)) / step,
            1e-6 * float(np.max(np.abs(analytic_grad))),
        )
    else:
        noise_floor = check_positive("atol", atol)

    def central_difference(direction, h):
        # Divide by the step actually taken: x ± h·v is rounded, so (x+) − (x−) ≠ 2h exactly.
        x_plus, x_minus = x + h * direction, x - h * direction
        span = np.vdot(x_plus - x_minus, direction) / np.vdot(direction, direction)
        return (_scalar(f, x_plus, "x + h·v") - _scalar(f, x_minus, "x − h·v")) / span

    checks = []
    full = x.size <= max_full
    coordinates = (
        range(x.size)
        if full
        else rng.choice(x.size, size=min(n_coordinates, x.size), replace=False)
    )
    for flat in coordinates:
        unit = np.zeros(x.size)
        unit[flat] = 1.0
        numeric = central_difference(unit.reshape(x.shape), step * max(1.0, abs(x.flat[flat])))
        index = tuple(int(i) for i in np.unravel_index(flat, x.shape))
        checks.append((f"coordinate {index}", float(analytic_grad.flat[flat]), numeric))
    if not full:
        scale = max(1.0, float(np.sqrt(np.mean(x * x))))
        for m in range(n_directions):
            v = rng.standard_normal(x.shape)
            v /= np.linalg.norm(v)
            checks.append(
                (
                    f"direction {m} (random unit vector)",
                    float(np.vdot(analytic_grad, v)),
                    central_difference(v, step * scale),
                )
            )

    checks = [
        (label, a, n, abs(a - n) / max(abs(a), abs(n), noise_floor)) for label, a, n in checks
    ]
    worst = max(checks, key=lambda c: c[3])
    return GradcheckReport(
        passed=worst[3] <= rtol,
        max_rel_error=worst[3],
        worst=worst[0],
        analytic=worst[1],
        numeric=worst[2],
        rtol=rtol,
        step=step,
        noise_floor=noise_floor,
        gradient_name="autograd" if grad is None else "your",
        checks=checks,
    )
