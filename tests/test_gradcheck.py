"""gradcheck passes correct gradients, fails wrong ones, and names where they disagree."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

import iwae_np as iw
from iwae_np.numerics import sigmoid


def _quartic(x):
    return anp.sum(anp.sin(x) * x**3) + anp.sum(x) ** 2


def test_passes_a_correct_gradient_in_both_modes():
    small = np.random.default_rng(0).normal(size=(4, 5))
    report = iw.gradcheck(_quartic, small)
    assert report.passed and len(report.checks) == 20  # every coordinate
    large = np.random.default_rng(1).normal(size=500)
    report = iw.gradcheck(_quartic, large, n_directions=7, n_coordinates=9)
    assert report.passed and len(report.checks) == 16  # sampled coordinates + directions
    assert report.max_rel_error < 1e-6


def test_fails_a_gradient_one_percent_off_in_both_modes():
    import autograd

    for x in (
        np.random.default_rng(2).normal(size=(3, 3)),
        np.random.default_rng(3).normal(size=400),
    ):
        report = iw.gradcheck(_quartic, x, grad=lambda v: 1.01 * autograd.grad(_quartic)(v))
        assert not report.passed
        assert 0.005 < report.max_rel_error < 0.02
        assert "FAILED" in repr(report)


def test_catches_a_wrong_vjp_and_names_the_coordinate():
    @primitive
    def softplus_bad(x):
        return np.logaddexp(0, x)

    def wrong_at_coordinate_3(ans, x):
        def vjp(g):
            grad = g * sigmoid(x)
            grad[3] *= -1  # a sign error in one place only
            return grad

        return vjp

    defvjp(softplus_bad, wrong_at_coordinate_3)
    x = np.linspace(-2, 2, 8)
    report = iw.gradcheck(lambda v: anp.sum(softplus_bad(v)), x)
    assert not report.passed
    assert report.worst == "coordinate (3,)"
    assert report.analytic == pytest.approx(-report.numeric, rel=1e-6)
    assert "coordinate (3,)" in repr(report)
    assert sum(c[3] > report.rtol for c in report.checks) == 1


def test_float32_input_is_checked_in_float64():
    seen = []

    def f(x):
        seen.append(np.asarray(getval(x)).dtype)
        return anp.sum(x**2)

    report = iw.gradcheck(f, np.ones(3, dtype=np.float32))
    assert report.passed and set(seen) == {np.dtype(np.float64)}


def test_bad_arguments():
    with pytest.raises(ValueError, match="f: expected a scalar"):
        iw.gradcheck(lambda x: x * 2, np.ones(3))
    with (
        pytest.raises(ValueError, match="f: expected a finite value"),
        np.errstate(invalid="ignore"),
    ):
        iw.gradcheck(lambda x: anp.sum(anp.log(x)), -np.ones(3))
    with pytest.raises(ValueError, match="grad: expected a gradient of shape"):
        iw.gradcheck(lambda x: anp.sum(x), np.ones(3), grad=lambda x: np.ones(2))
    with pytest.raises(ValueError, match="x: expected no NaN"):
        iw.gradcheck(lambda x: anp.sum(x), np.array([1.0, np.nan]))
