"""Every kernel equals the reference it replaces: values, gradients, and gradients of gradients,
in float32 and float64. The reference forms are plain autograd.numpy, differentiated by autograd
itself, so they are an independent check of each hand-derived VJP."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import iwae_np as iw
from iwae_np import distributions, kernels, nets, params

# relu and sum are piecewise linear: their HVP is zero, and autograd says so with a warning
pytestmark = pytest.mark.filterwarnings(
    "ignore:Output seems independent of input", "ignore:overflow encountered:RuntimeWarning"
)

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-5)}


def _close(actual, desired, dtype):
    """Equal up to rounding: relative, plus an absolute floor scaled to the largest entry (sums of
    float32 terms of size 1e5 that cancel keep only their absolute accuracy)."""
    tol = TOL[np.dtype(dtype).type]
    scale = float(np.max(np.abs(desired))) if np.size(desired) else 1.0
    np.testing.assert_allclose(actual, desired, rtol=tol["rtol"], atol=tol["atol"] * max(1, scale))


DTYPES = (np.float64, np.float32)


def _inputs(dtype, shape=(3, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    return (3 * rng.standard_normal(shape)).astype(dtype)


def _assert_same_function(fast, reference, a, dtype):
    """Equal values, equal gradients of a random projection, equal second derivatives (HVP)."""
    _close(fast(a), reference(a), dtype)
    assert fast(a).dtype == reference(a).dtype == dtype
    weights = np.random.default_rng(1).standard_normal(np.shape(fast(a))).astype(dtype)
    project_fast = lambda v: anp.sum(weights * fast(v))
    project_reference = lambda v: anp.sum(weights * reference(v))
    _close(autograd.grad(project_fast)(a), autograd.grad(project_reference)(a), dtype)
    direction = np.random.default_rng(2).standard_normal(np.shape(a)).astype(dtype)
    hvp = lambda f: autograd.grad(lambda v: anp.sum(autograd.grad(f)(v) * direction))(a)
    _close(hvp(project_fast), hvp(project_reference), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_kernel_equals_the_reference_formula(dtype):
    x = (np.random.default_rng(3).random((4, 5)) < 0.4).astype(dtype)  # (n, d) against (k, n, d)
    _assert_same_function(
        lambda logits: kernels.bernoulli_logpmf(x, logits),
        lambda logits: distributions.bernoulli_logpmf(x, logits),
        _inputs(dtype),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_kernel_second_derivative_keeps_relative_precision(dtype):
    """d²/dℓ² log Bern(x; σ(ℓ)) = −σ(ℓ)σ(−ℓ), tiny but exact at large |ℓ|."""
    logits = np.array([30.0, 10.0, -30.0, 0.5], dtype=dtype)
    x = np.array([1.0, 0.0, 1.0, 0.0], dtype=dtype)
    second = autograd.elementwise_grad(
        autograd.elementwise_grad(lambda ell: kernels.bernoulli_log_terms(x, ell))
    )(logits)
    exact = -1 / (np.exp(logits.astype(np.float64)) + 2 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(second, exact, rtol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_kernel_at_extreme_logits(dtype):
    x = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]], dtype=dtype)
    logits = np.array([[-800.0, -800.0, 800.0, 800.0, 0.0]], dtype=dtype)
    fast = kernels.bernoulli_logpmf(x, logits)
    reference = distributions.bernoulli_logpmf(x, logits)
    np.testing.assert_allclose(fast, reference, rtol=1e-6)
    assert np.all(np.isfinite(fast))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_last_kernel_equals_numpy_sum(dtype):
    _assert_same_function(kernels.sum_last, lambda a: anp.sum(a, axis=-1), _inputs(dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "tanh", "relu"])
def test_dense_kernel_equals_the_reference_layer(activation, dtype):
    """kernels.dense(θ, h, W, b, a) = a(h W + b) with W, b plain slices of θ: in θ and in h."""
    layout = iw.Layout()
    layout.add("W", (4, 3))
    layout.add("b", (3,))
    theta = _inputs(dtype, shape=(layout.size,), seed=4) / 3
    h = _inputs(dtype, shape=(5, 4), seed=5) / 3
    h[0] = 0.0  # a blank row: with b = 0 the pre-activation is exactly 0, relu's tie
    theta[layout.slice("b")] = 0.0
    act = {None: lambda a: a, **nets.ACTIVATIONS}[activation]

    def reference(t, v):
        return act(
            anp.dot(v, params.block(t, *layout.blocks["W"])) + params.block(t, *layout.blocks["b"])
        )

    def fast(t, v):
        return kernels.dense(t, v, layout.blocks["W"], layout.blocks["b"], activation)

    _assert_same_function(lambda t: fast(t, h), lambda t: reference(t, h), theta, dtype)
    _assert_same_function(lambda v: fast(theta, v), lambda v: reference(theta, v), h, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_kernel_equals_a_plain_slice(dtype):
    layout = iw.Layout()
    layout.add("W", (3, 4))
    layout.add("b", (4,))
    theta = _inputs(dtype, shape=(layout.size,))

    def model(read):
        def f(t):  # a nonlinear use of two blocks, so second derivatives are non-trivial
            W, b = read(t, *layout.blocks["W"]), read(t, *layout.blocks["b"])
            return anp.tanh(anp.dot(anp.ones(3, dtype=dtype), W) * b)

        return f

    _assert_same_function(model(kernels.block), model(params.block), theta, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_model_on_the_reference_tier_computes_the_same_numbers(likelihood, dtype):
    """The switch: the same VAE with fast=False runs every reference form instead of the kernels."""
    fast = iw.VAE(6, 2, hidden=(5,), likelihood=likelihood, dtype=dtype)
    reference = iw.VAE(6, 2, hidden=(5,), likelihood=likelihood, dtype=dtype, fast=False)
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6)) < 0.5).astype(dtype)
    theta = fast.init(seed=0, x=x)
    eps = fast.draw_eps(rng, 3, 4)

    def objective(model):
        return lambda t: anp.mean(iw.iwae_bound(model.log_weights(t, x, eps)))

    _close(objective(fast)(theta), objective(reference)(theta), dtype)
    _close(autograd.grad(objective(fast))(theta), autograd.grad(objective(reference))(theta), dtype)
    v = rng.standard_normal(theta.shape).astype(dtype)
    hvp = lambda f: autograd.grad(lambda t: anp.sum(autograd.grad(f)(t) * v))(theta)
    _close(hvp(objective(fast)), hvp(objective(reference)), dtype)
