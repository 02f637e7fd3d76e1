"""gradcheck against its peers: the verdicts of PyTorch's gradcheck and gradgradcheck.

PyTorch's rules (torch.autograd.gradcheck and gradgradcheck, default eps = 1e-6, atol = 1e-5,
rtol = 1e-3), written here in NumPy with autograd in the place of torch's autograd:

    gradcheck      for every input entry j, the numerical column (f(x + eps e_j) − f(x − eps e_j))
                   / 2 eps of every output; for every output entry i, the analytical row from the
                   VJP with grad_output e_i; passed iff |analytical − numerical| <= atol +
                   rtol·|numerical| for every (output, input) pair.
    gradgradcheck  random grad_outputs g, then gradcheck of (x, g) ↦ VJP(x)(g), whose analytical
                   Jacobian comes from differentiating the VJP itself (the backward of the
                   backward).

Shared examples: a two-input, two-output primitive with a correct VJP and with a VJP 1% off in
one entry; a primitive whose first derivative is right and whose second derivative is correct,
or 1% off in one entry. iwae_np's verdicts must be the same as the NumPy peers'. When torch can be
imported, the same examples are written as torch.autograd.Function and torch's own verdicts must
agree too (skipped otherwise: torch is not installed in CI). The same holds at awkward scales
(sin at 1e4, log at 1e-4, an entry beside one of 1e10, log-weights at −1e4), for a right gradient
and for one with a sign slip in one entry.
"""

import autograd
import numpy as np
import pytest
from autograd.builtins import tuple as traced_tuple
from autograd.extend import defvjp, primitive

from iwae_np.gradcheck import check_vjp, gradcheck

A = np.array([0.5, -1.0, 0.3])
B = np.array([1.2, 0.4, -0.7])
X = np.array([0.8, -1.3, 1.7])
ONE_ENTRY_OFF = np.array([1.0, 1.01, 1.0])  # entry 1 off by 1%


# ---------------------------------------------------------------- PyTorch's semantics, in NumPy


def torch_style_gradcheck(f, inputs, vjp, eps=1e-6, atol=1e-5, rtol=1e-3):
    """PyTorch's gradcheck verdict. f(*inputs) -> a tuple of arrays; vjp(inputs, grad_outputs)
    -> a tuple of arrays like the inputs."""
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    outputs = [np.asarray(y) for y in f(*inputs)]
    for k, x in enumerate(inputs):
        for o, y in enumerate(outputs):
            numerical = np.zeros((y.size, x.size))
            for j in range(x.size):
                plus, minus = [v.copy() for v in inputs], [v.copy() for v in inputs]
                plus[k].flat[j] += eps
                minus[k].flat[j] -= eps
                difference = np.asarray(f(*plus)[o]) - np.asarray(f(*minus)[o])
                numerical[:, j] = difference.ravel() / (2 * eps)
            analytical = np.zeros((y.size, x.size))
            for i in range(y.size):
                grad_outputs = [np.zeros_like(z) for z in outputs]
                grad_outputs[o].flat[i] = 1.0
                analytical[i] = np.asarray(vjp(inputs, grad_outputs)[k]).ravel()
            if not np.allclose(analytical, numerical, rtol=rtol, atol=atol):
                return False
    return True


def autograd_vjp(f):
    """The VJP of f (a tuple of outputs) from autograd: (inputs, grad_outputs) -> a tuple."""

    def outputs(xs):
        value = f(*xs)  # a primitive's tuple comes boxed; a plain tuple of boxes is boxed here
        return traced_tuple(value) if isinstance(value, tuple) else value

    def vjp(inputs, grad_outputs):
        pull, _ = autograd.make_vjp(outputs)(tuple(inputs))
        return pull(tuple(grad_outputs))

    return vjp


def torch_style_gradgradcheck(f, inputs, seed=0):
    """PyTorch's gradgradcheck verdict: gradcheck of (x, g) ↦ VJP(x)(g), g random."""
    rng = np.random.default_rng(seed)
    grad_outputs = [rng.standard_normal(np.shape(y)) for y in f(*inputs)]
    n = len(inputs)
    first = autograd_vjp(f)

    def backward(*xs_and_gs):
        return tuple(first(xs_and_gs[:n], xs_and_gs[n:]))

    return torch_style_gradcheck(backward, list(inputs) + grad_outputs, autograd_vjp(backward))


# ---------------------------------------------------------------- the shared examples


def make_two_in_two_out(wrong):
    """(a ⊙ sin b, e^a ⊙ b²): a primitive of two inputs and two outputs, its VJP
    ∂/∂a: g₀ sin b + g₁ e^a b²,    ∂/∂b: g₀ a cos b + 2 g₁ e^a b   (× ONE_ENTRY_OFF if wrong)
    """

    @primitive
    def two_in_two_out(a, b):
        return a * np.sin(b), np.exp(a) * b**2

    scale = ONE_ENTRY_OFF if wrong else 1.0
    defvjp(
        two_in_two_out,
        lambda ans, a, b: lambda g: g[0] * np.sin(b) + g[1] * np.exp(a) * b**2,
        lambda ans, a, b: lambda g: (g[0] * a * np.cos(b) + 2 * g[1] * np.exp(a) * b) * scale,
    )
    return two_in_two_out


def make_cube(wrong):
    """x³, whose VJP g·3x² is right, through a primitive 3x² whose own VJP g·6x is the second
    derivative (× ONE_ENTRY_OFF if wrong)."""

    @primitive
    def three_squared(x):
        return 3 * x**2

    @primitive
    def cube(x):
        return x**3

    scale = ONE_ENTRY_OFF if wrong else 1.0
    defvjp(three_squared, lambda ans, x: lambda g: g * 6 * x * scale)
    defvjp(cube, lambda ans, x: lambda g: g * three_squared(x))
    return cube


@pytest.mark.parametrize("wrong", [False, True], ids=["correct-vjp", "wrong-vjp"])
def test_first_order_verdicts_match_pytorchs_gradcheck(wrong):
    f = make_two_in_two_out(wrong)
    peer = torch_style_gradcheck(f, (A, B), autograd_vjp(f))
    assert peer is (not wrong)
    report = check_vjp(f, A, B)
    assert report.passed is peer
    # the same function, its VJP handed to gradcheck instead of defined on a primitive
    plain = lambda a, b: (a * np.sin(b), np.exp(a) * b**2)
    vjp = lambda a, b: lambda g: autograd_vjp(f)((a, b), g)
    assert gradcheck(plain, (A, B), vjp=vjp).passed is peer
    if wrong:  # where PyTorch reports the first mismatching entry, we name the worst
        named = {"∂two_in_two_out[0][1]/∂`b`[1]", "∂two_in_two_out[1][1]/∂`b`[1]"}
        assert report.worst in named and {c[0] for c in report.failures} == named


@pytest.mark.parametrize("wrong", [False, True], ids=["correct-2nd", "wrong-2nd"])
def test_second_order_verdicts_match_pytorchs_gradgradcheck(wrong):
    cube = make_cube(wrong)
    as_tuple = lambda x: (cube(x),)
    assert torch_style_gradcheck(as_tuple, (X,), autograd_vjp(as_tuple))  # first order: right
    assert check_vjp(cube, X).passed
    peer = torch_style_gradgradcheck(as_tuple, (X,))
    assert peer is (not wrong)
    report = check_vjp(cube, X, order=2)
    assert report.passed is peer
    assert gradcheck(lambda x: np.sum(cube(x) * np.array([0.3, 1.0, -2.0])), X, order=2).passed is (
        peer
    )
    if wrong:
        assert report.worst == "∂²(gᵀcube)/∂`x`[1]∂`x`[1]"


# ---------------------------------------------------------------- and PyTorch itself, if here


def torch_functions(wrong_first, wrong_second):
    """The two examples as torch.autograd.Function: the same math, the same wrong entries."""
    torch = pytest.importorskip("torch")
    scale1 = torch.tensor(ONE_ENTRY_OFF if wrong_first else np.ones(3), dtype=torch.float64)
    scale2 = torch.tensor(ONE_ENTRY_OFF if wrong_second else np.ones(3), dtype=torch.float64)

    class TwoInTwoOut(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * torch.sin(b), torch.exp(a) * b**2

        @staticmethod
        def backward(ctx, g0, g1):
            a, b = ctx.saved_tensors
            grad_a = g0 * torch.sin(b) + g1 * torch.exp(a) * b**2
            grad_b = (g0 * a * torch.cos(b) + 2 * g1 * torch.exp(a) * b) * scale1
            return grad_a, grad_b

    class ThreeSquared(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 3 * x**2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 6 * x * scale2

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ThreeSquared.apply(x)

    return torch, TwoInTwoOut.apply, Cube.apply


@pytest.mark.parametrize("wrong", [False, True], ids=["correct", "wrong"])
def test_verdicts_match_torch_itself(wrong):
    torch, two_in_two_out, cube = torch_functions(wrong, wrong)
    torch.set_num_threads(1)
    tensor = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)
    first = torch.autograd.gradcheck(two_in_two_out, (tensor(A), tensor(B)), raise_exception=False)
    second = torch.autograd.gradgradcheck(cube, (tensor(X),), raise_exception=False)
    assert torch.autograd.gradcheck(cube, (tensor(X),), raise_exception=False)
    assert first is (not wrong) and second is (not wrong)
    assert check_vjp(make_two_in_two_out(wrong), A, B).passed is first
    assert check_vjp(make_cube(wrong), X, order=2).passed is second


# ---------------------------------------------------------------- awkward scales
#
# Where a step of 6e-6·max(1, |x|) or a floor of max(1, |f|)·100ε/h misled iwae_np (sin at 1e4,
# log at 1e-4, a gradient entry beside one of 1e10, log-weights at −1e4), PyTorch's fixed
# eps = 1e-6 gets the verdict right: ours must be the same, for the right derivative and for
# one with a sign slip in one entry.

AWKWARD = {
    "sin-at-1e4": (lambda x, m: m.sin(x).sum(), [1e4, 0.5]),
    "exp-at-1e5": (lambda x, m: m.exp(x - 1e5).sum(), [1e5, 1e5 + 0.3]),
    "log-at-1e-4": (lambda x, m: m.log(x).sum(), [1e-4, 0.5]),
    "beside-1e10": (lambda x, m: 1e10 * x[0] + m.sin(x[1:]).sum(), [0.0, 0.3, -1.2, 0.7]),
    "small-f": (lambda x, m: 1e-3 * m.sin(x).sum(), [0.3, -1.2, 0.7]),
    "logsumexp-at-1e4": (
        lambda x, m: m.logsumexp(x, 0),
        list(-1e4 + np.random.default_rng(6).normal(size=6)),
    ),
}


def numpy_module():
    import autograd.numpy as anp

    import iwae_np as iw

    class Module:  # autograd.numpy, with the package's stable logsumexp
        sin, exp, log = anp.sin, anp.exp, anp.log

        @staticmethod
        def logsumexp(x, axis):
            return iw.logsumexp(x, axis=axis)

    return Module


@pytest.mark.parametrize("wrong", [False, True], ids=["right", "sign-slip"])
@pytest.mark.parametrize("case", list(AWKWARD))
def test_verdicts_match_pytorchs_at_awkward_scales(case, wrong):
    expression, x = AWKWARD[case]
    x = np.array(x)
    m = numpy_module()
    f = lambda x: expression(x, m)
    flip = np.ones(x.size)
    flip[-1 if case == "beside-1e10" else 1] = -1.0 if wrong else 1.0
    grad = autograd.grad(f)(x) * flip
    peer = torch_style_gradcheck(
        lambda x: (np.asarray(f(x)),), (x,), lambda inputs, g: (g[0] * grad,)
    )
    assert peer is (not wrong)
    assert gradcheck(f, x, grad=lambda x: grad).passed is peer
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    flip_t = torch.tensor(flip, dtype=torch.float64)

    class Slipped(torch.autograd.Function):  # f, with the same backward as ours
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return expression(t, torch)

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            with torch.enable_grad():
                t = t.detach().requires_grad_(True)
                (exact,) = torch.autograd.grad(expression(t, torch), t)
            return g * exact * flip_t

    tensor = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Slipped.apply, (tensor,), raise_exception=False) is peer
