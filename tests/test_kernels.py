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


# ---------------------------------------------------------------- the fused log-weights


def _pair(likelihood="bernoulli", activation="tanh", dtype="float64", hidden=(5, 4), **options):
    """The same VAE on the kernels tier (fused log-weights) and on the reference tier, with a θ
    moved off its initialization so that no derivative is trivially zero."""
    fast = iw.VAE(
        6, 2, hidden=hidden, likelihood=likelihood, activation=activation, dtype=dtype, **options
    )
    reference = iw.VAE(
        6,
        2,
        hidden=hidden,
        likelihood=likelihood,
        activation=activation,
        dtype=dtype,
        fast=False,
        **options,
    )
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6)) < 0.5).astype(dtype)
    theta = fast.init(seed=0, x=x) + (0.3 * rng.standard_normal(fast.layout.size)).astype(dtype)
    return fast, reference, theta, x, fast.draw_eps(rng, 3, 4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("stop_q", [False, True])
@pytest.mark.parametrize(
    "likelihood, activation, hidden",
    [
        ("bernoulli", "tanh", (5, 4)),
        ("bernoulli", "relu", (5, 4)),
        ("gaussian", "tanh", (5, 4)),
        ("gaussian", "relu", (3,)),
        ("bernoulli", "tanh", ()),  # linear encoder and decoder
    ],
)
def test_fused_log_weights_equal_the_reference_model(likelihood, activation, hidden, stop_q, dtype):
    """kernels.log_weights (what VAE.log_weights runs) against the reference tier: values,
    θ-gradients, Hessian-vector products (stop_q holds q only for the innermost derivative) and
    gradients in ε, each for the IWAE bound of the log-weights."""
    fast, reference, theta, x, eps = _pair(likelihood, activation, dtype, hidden)

    def objective(model):
        return lambda t: anp.mean(iw.iwae_bound(model.log_weights(t, x, eps, stop_q=stop_q)))

    assert fast.log_weights(theta, x, eps).dtype == np.dtype(dtype)
    _close(objective(fast)(theta), objective(reference)(theta), dtype)
    gradient = autograd.grad(objective(fast))(theta)
    assert gradient.dtype == np.dtype(dtype)
    _close(gradient, autograd.grad(objective(reference))(theta), dtype)
    v = np.random.default_rng(5).standard_normal(theta.shape).astype(dtype)
    hvp = lambda f: autograd.grad(lambda t: anp.sum(autograd.grad(f)(t) * v))(theta)
    _close(hvp(objective(fast)), hvp(objective(reference)), dtype)

    def in_eps(model):
        return lambda e: anp.sum(model.log_weights(theta, x, e, stop_q=stop_q))

    _close(autograd.grad(in_eps(fast))(eps), autograd.grad(in_eps(reference))(eps), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_fused_log_weights_are_the_layered_kernels_bit_for_bit(likelihood, dtype):
    """The fused forward pass runs the layered kernels' operations in the same order: the
    log-weights are the same bits, so no lesson's number moves."""
    fast, _, theta, x, eps = _pair(likelihood, dtype=dtype)
    mean, log_std = fast.encode(theta, x)
    layered = fast.log_weights_given(theta, x, mean, log_std, eps)  # the layered kernels
    np.testing.assert_array_equal(fast.log_weights(theta, x, eps), layered)


def test_fused_log_weights_jacobian_and_repeated_vjps():
    """A VJP of the fused kernel can be called again (autograd.jacobian does, once per output):
    every call gives the reference's row, and a gradient handed out earlier is never reused."""
    fast, reference, theta, x, eps = _pair()
    jacobian = autograd.jacobian(lambda t: fast.log_weights(t, x, eps))(theta)
    expected = autograd.jacobian(lambda t: reference.log_weights(t, x, eps))(theta)
    _close(jacobian, expected, np.float64)
    objective = lambda t: anp.mean(iw.iwae_bound(fast.log_weights(t, x, eps)))
    first = autograd.grad(objective)(theta)
    kept = first.copy()
    for _ in range(3):  # later steps take their scratch from the workspace
        autograd.grad(objective)(theta + 0.01)
    np.testing.assert_array_equal(first, kept)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("log_std", [300.0, 700.0, 710.0, -750.0, 1e300])
def test_fused_log_weights_at_extreme_scales_behave_as_the_reference(log_std):
    """Where σ = exp(log σ) or z² overflows, the fused kernel gives the layered path's answer:
    the same numbers (−inf included), or the same ValueError naming θ and ε, never a NaN."""
    fast, reference, theta, x, eps = _pair()
    out = fast.layout.slice(f"encoder.{fast.encoder.n_layers - 1}.b")
    theta[out.start + fast.z_dim : out.stop] = log_std

    def outcome(model):
        try:
            return model.log_weights(theta, x, eps)
        except ValueError as error:
            return str(error)

    fused, expected = outcome(fast), outcome(reference)
    if isinstance(expected, str):
        assert fused == expected and expected.startswith("theta, eps: ")
    else:
        np.testing.assert_allclose(fused, expected, rtol=1e-12)


def test_fused_passes_split_over_threads_agree_with_one_thread(monkeypatch):
    """Splitting the elementwise passes' blocks and the decoder's rows between threads changes
    no log-weight (the same bits). The gradient's decoder weights are then summed per row group
    and the groups' sums added, which moves only the last bits; with a given thread count the
    result is the same bits on every call."""
    from iwae_np import threads

    fast, _, theta, x, eps = _pair()
    eps = np.random.default_rng(1).standard_normal((40, 4, 2))
    objective = lambda t: anp.mean(iw.iwae_bound(fast.log_weights(t, x, eps)))
    one = autograd.value_and_grad(objective)(theta)
    weights_one = fast.log_weights(theta, x, eps)
    monkeypatch.setattr(kernels, "_PER_THREAD", 1)
    monkeypatch.setattr(kernels, "_BLOCK", 8)  # many small blocks
    monkeypatch.setattr(kernels, "_PER_GROUP", 1)  # the decoder's rows in groups
    monkeypatch.setattr(kernels, "_MACS_PER_GROUP", 1)  # the encoder's points in groups
    monkeypatch.setattr(threads, "_ELEMENTWISE", [2])
    seen = []  # (which groups, how many) as the kernel asks for them

    def spy(name, original):
        def groups(*args):
            made = original(*args)
            seen.append((name, len(made)))
            return made

        monkeypatch.setattr(kernels, name, groups)

    for name in ("encoder_groups", "decoder_groups"):
        spy(name, getattr(kernels, name))
    two = autograd.value_and_grad(objective)(theta)
    assert ("encoder_groups", 2) in seen and ("decoder_groups", 2) in seen
    np.testing.assert_array_equal(fast.log_weights(theta, x, eps), weights_one)
    assert one[0] == two[0]
    np.testing.assert_allclose(two[1], one[1], rtol=1e-12, atol=1e-15)
    assert not np.array_equal(two[1], np.zeros_like(two[1]))
    again = autograd.value_and_grad(objective)(theta)
    np.testing.assert_array_equal(again[1], two[1])
    # k = 1: the groups split the points instead of the samples
    single = lambda t: anp.mean(iw.bounds.elbo(fast.log_weights(t, x, eps[:1])))
    monkeypatch.setattr(threads, "_ELEMENTWISE", [1])
    expected = autograd.value_and_grad(single)(theta)
    monkeypatch.setattr(threads, "_ELEMENTWISE", [2])
    got = autograd.value_and_grad(single)(theta)
    assert got[0] == expected[0]
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-15)


def _operations(f, x):
    """The autograd operations one differentiated call of f records."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort

    _, end = trace(VJPNode.new_root(), f, x)
    return sum(1 for _ in toposort(end)) - 1


def test_a_fused_step_records_a_handful_of_operations():
    """What the fused kernel is for: the IWAE bound of the log-weights is 3 autograd operations
    (log-weights, log-mean-exp, mean), where the layered kernels take 34 and the reference 69."""
    fast, reference, theta, x, eps = _pair()
    objective = lambda m: lambda t: anp.mean(iw.iwae_bound(m.log_weights(t, x, eps)))
    assert _operations(objective(fast), theta) <= 4
    assert _operations(objective(reference), theta) > 30


# ---------------------------------------------------------------- scratch memory


def test_the_workspace_reuses_an_array_only_once_nothing_holds_it():
    space = kernels.Workspace(budget=1 << 30, smallest=0)
    first = space.take((100, 10), np.float64)
    address = first.ctypes.data
    second = space.take((100, 10), np.float64)  # first is still held: a different array
    assert second.ctypes.data != address
    view = first[:5]
    del first
    assert space.take((100, 10), np.float64).ctypes.data != address  # a view still holds it
    del view
    assert space.take((100, 10), np.float64).ctypes.data == address
    assert space.take((100, 10), np.float32).dtype == np.float32


def test_the_workspace_keeps_to_its_budget():
    space = kernels.Workspace(budget=8000 * 3, smallest=0, largest=8000)
    held = [space.take((1000,), np.float64) for _ in range(3)]
    assert space.nbytes == 24000
    held.append(space.take((1000,), np.float64))  # over budget, nothing free: not kept
    assert space.nbytes == 24000
    del held
    space.take((500,), np.float64)  # room is made from arrays no one holds
    assert space.nbytes <= 24000
    space.take((2000,), np.float64)  # above `largest`: never kept
    assert space.nbytes <= 24000
    space.clear()
    assert space.nbytes == 0


# ---------------------------------------------------------------- Adam and log1p


def _adam_reference(params, grad, m, v, lr, t, beta1=0.9, beta2=0.999, eps=1e-4):
    """Adam's ascent step as ``optim.Adam`` writes it, allocating each temporary."""
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return params + lr * (m_hat / (np.sqrt(v_hat) + eps)), m, v


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_kernel_is_the_reference_adam_bit_for_bit(dtype):
    from iwae_np.optim import Adam

    rng = np.random.default_rng(0)
    optimizer = Adam(0.01)
    params = rng.standard_normal(70_001).astype(dtype)  # not a whole number of blocks
    m, v = np.zeros_like(params), np.zeros_like(params)
    for t in range(1, 6):
        g = rng.standard_normal(params.shape).astype(dtype)
        g[:7] = 0
        stepped = optimizer.step(params, g)  # the kernel, moments in place
        params, m, v = _adam_reference(params, g, m, v, 0.01, t)
        assert stepped.dtype == dtype
        np.testing.assert_array_equal(stepped, params)
        np.testing.assert_array_equal(optimizer.state["m"], m)
        np.testing.assert_array_equal(optimizer.state["v"], v)
    # a step size per row (classic VI's, one per point) broadcasts: the allocating form
    rows = np.linspace(0.5, 1.5, 7, dtype=dtype)[:, None]
    params, g = params[:70_000].reshape(7, -1), g[1:70_001].reshape(7, -1)
    zeros = np.zeros_like(params)
    with iw.checks.inside():  # as classic VI calls it (the door takes one number only)
        stepped = Adam(0.01).step(params, g, lr=0.01 * rows)
    np.testing.assert_array_equal(
        stepped, _adam_reference(params, g, zeros, zeros, 0.01 * rows, 1)[0]
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_log1p_of_a_unit_interval_is_accurate_to_a_few_ulps(dtype):
    rng = np.random.default_rng(0)
    e = np.exp(-np.abs(30 * rng.standard_normal(100_000)))
    e = np.concatenate([e, [0.0, 1.0, 1e-30, 6e-8, 5.9e-8, 1e-7, 0.5]]).astype(dtype)
    out = kernels.log1p_unit(e, np.empty_like(e))
    assert out.dtype == dtype
    exact = np.log1p(e.astype(np.float64))
    if dtype == np.float64:
        np.testing.assert_array_equal(out, np.log1p(e))
    else:
        ulps = np.abs(out - exact) / np.spacing(exact.astype(np.float32))
        assert ulps.max() <= 4


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_splits_elementwise_work_without_deadlock(monkeypatch):
    """A forked process has none of its parent's threads: the kernels make a new pool there."""
    import os
    import signal

    from iwae_np import threads

    monkeypatch.setattr(kernels, "_PER_THREAD", 1)
    monkeypatch.setattr(threads, "_ELEMENTWISE", [2])
    fast, _, theta, x, eps = _pair()
    objective = lambda t: anp.mean(iw.iwae_bound(fast.log_weights(t, x, eps)))
    expected = autograd.grad(objective)(theta)  # the parent's pool now exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: same gradient, then report and leave at once (no cleanup)
        same = np.array_equal(autograd.grad(objective)(theta), expected)
        os.write(write, b"1" if same else b"0")
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)


def test_the_fused_kernel_survives_an_exception_inside_a_derivative():
    """autograd's global trace counter stays raised when an exception escapes a derivative; the
    fused kernel counts the derivatives from its inputs' boxes, so it stays in use."""
    fast, _, theta, x, eps = _pair()

    def failing(t):
        raise RuntimeError("inside a derivative")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            autograd.grad(failing)(theta)
    objective = lambda t: anp.mean(iw.iwae_bound(fast.log_weights(t, x, eps)))
    assert _operations(objective, theta) <= 4
    hvp = autograd.grad(lambda t: np.dot(autograd.grad(objective)(t), theta))(theta)
    assert np.all(np.isfinite(hvp))
