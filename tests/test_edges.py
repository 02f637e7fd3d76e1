"""Edge cases of the numerics and the public doors, each checked against an independent answer
(mpmath at 50 digits, scipy, finite differences) or against the argument a ValueError must name.
They pin what an adversarial review found after the contract suite (tests/test_contract.py)."""

import autograd
import autograd.numpy as anp
import mpmath
import numpy as np
import pytest

import iwae_np as iw
from iwae_np import bounds, checkpoint, estimators, evaluate, semi_amortized, train
from iwae_np.data import idx, toys


@pytest.fixture(autouse=True)
def fifty_digits():
    """References at 50 digits, for these tests only (mpmath's precision is global)."""
    with mpmath.workdps(50):
        yield


def exact_log_mean_exp(values):
    return mpmath.log(sum(mpmath.exp(mpmath.mpf(float(v))) for v in values) / len(values))


@pytest.mark.parametrize(
    "values",
    [[1e-20, 1e-20], [1e-20, -1e-20, 3e-20], [0.0, -40.0], [1e-3, 2e-3], [-5.0, -5.0 + 1e-12]],
)
def test_log_mean_exp_keeps_relative_precision_near_zero(values):
    exact = exact_log_mean_exp(values)
    got = iw.log_mean_exp(np.array(values))
    assert abs((got - exact) / exact) < 4e-16


def test_log_mean_exp_is_accurate_to_its_condition_number():
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(1, 6))
        values = rng.normal(size=k) * 10 ** rng.uniform(-20, 2) + rng.choice([0, 1e-3, -5, 50])
        exact = exact_log_mean_exp(values)
        # |∂f/∂a_i| <= 1 and Σ softmax = 1: relative error <= (Σ|a_i|/k) / |f| · few ε
        condition = max(1.0, float(np.abs(values).max() / abs(exact))) if exact else 1.0
        assert abs(float((iw.log_mean_exp(values) - exact) / exact)) < 8e-16 * condition


def test_the_reference_bernoulli_keeps_a_confident_right_logit():
    exact = -mpmath.log1p(mpmath.exp(-40))  # log σ(40) ≈ −4.25e-18
    assert iw.bernoulli_logpmf(np.array([1.0]), np.array([40.0])) == pytest.approx(
        float(exact), rel=1e-15
    )
    assert iw.bernoulli_logpmf(np.array([0.0]), np.array([-40.0])) == pytest.approx(
        float(exact), rel=1e-15
    )


def test_normal_logpdf_with_an_overflowing_inverse_std():
    residual, log_std = 1e-320, -710.0  # 1/σ = e^710 overflows, u = r/σ ≈ 2e-12 does not
    u = mpmath.mpf(residual) * mpmath.exp(710)
    exact = -0.5 * mpmath.log(2 * mpmath.pi) - log_std - u * u / 2
    got = iw.normal_logpdf(np.array([residual]), np.array([0.0]), np.array([log_std]))
    assert got == pytest.approx(float(exact), rel=1e-15)


def test_normalized_weights_of_an_all_zero_column_are_zero():
    log_w = np.array([[-np.inf, 0.0], [-np.inf, 1.0]])
    w = estimators.normalized_weights(log_w)
    assert np.all(w[:, 0] == 0) and np.allclose(w[:, 1].sum(), 1)


@pytest.mark.parametrize(
    "bound",
    [
        bounds.elbo,
        bounds.iwae_bound,
        lambda a: bounds.vr_bound(a, 0.5),
        lambda a: bounds.vr_bound(a, 1 - 1e-7),
        lambda a: bounds.ciwae_bound(a, 0.3),
        lambda a: bounds.miwae_bound(a, 2),
    ],
)
def test_float32_bounds_have_float32_gradients_and_second_derivatives(bound):
    log_w = np.array([[0.1, -1.0], [0.3, 2.0]], dtype=np.float32)
    gradient = autograd.grad(lambda a: anp.sum(bound(a)))(log_w)
    assert gradient.dtype == np.float32
    # the Hessian (float64) against central differences of the gradient
    point = log_w[:, 0].astype(np.float64)
    hessian = autograd.hessian(lambda a: anp.sum(bound(a)))(point)
    grad = autograd.grad(lambda a: anp.sum(bound(a)))
    h = 1e-5
    columns = [(grad(point + h * e) - grad(point - h * e)) / (2 * h) for e in np.eye(2)]
    assert np.allclose(hessian, np.stack(columns, axis=1), atol=1e-8)


def test_a_relu_float32_model_keeps_float32_gradients():
    model = iw.VAE(4, 2, hidden=(3,), activation="relu", dtype="float32")
    theta = model.init(seed=0)
    x = (np.arange(12).reshape(3, 4) % 2).astype(float)
    eps = np.ones((2, 3, 2), dtype=np.float32)
    grad = autograd.grad(lambda t: anp.sum(bounds.iwae_bound(model.log_weights(t, x, eps))))
    assert grad(theta).dtype == np.float32


def gaussian_sample_with_log_std(log_std):
    model = iw.VAE(4, 2, hidden=(3,), likelihood="gaussian")
    theta = model.init(seed=0)
    theta[model.layout.slice("decoder.log_std")] = log_std  # σ = e^800 overflows
    return model.sample_x(theta, np.random.default_rng(0), np.ones((2, 2)))


@pytest.fixture
def tiny():
    model = iw.VAE(4, 2, hidden=(3,))
    x = (np.arange(12).reshape(3, 4) % 2).astype(float)
    return model, model.init(seed=0), x


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m, t, x: evaluate.log_marginal(m, np.full_like(t, 1e200), x, k=4), "theta"),
        (
            lambda m, t, x: evaluate.expected_bound(m, np.full_like(t, 1e200), x, replicates=2),
            "theta",
        ),
        (lambda m, t, x: evaluate.log_marginal_quadrature(m, t, x, limit=1e200), "limit"),
        (lambda m, t, x: evaluate.log_marginal_quadrature(m, t, x, limit=1e-300), "limit"),
        (lambda m, t, x: evaluate.log_marginal_quadrature(m, t, x, grid=10**9), "grid"),
        (lambda m, t, x: evaluate.posterior_on_grid(m, t, x[0], grid=10**9), "grid"),
        (lambda m, t, x: evaluate.gaussian_on_grid([0, 0, 0], [0, 0, 0], [0, 1], [0, 1]), "mean"),
        (lambda m, t, x: semi_amortized.refine(m, t, x, np.ones((3, 1, 3, 2)), lr=1e300), "lr"),
        (
            lambda m, t, x: semi_amortized.semi_amortized_elbo(m, t, x, np.ones((0, 1, 3, 2))),
            "eps",
        ),
        (lambda m, t, x: m.encode(np.full_like(t, 1.7e308), x), "theta"),
        (
            lambda m, t, x: gaussian_sample_with_log_std(800.0),
            "theta",
        ),
        (lambda m, t, x: iw.VAE.from_config({"class": ["VAE"]}), "config"),
        (lambda m, t, x: train.train(m, t, x, k=10**9, epochs=1, progress=False), "k, batch_size"),
        (lambda m, t, x: train.Bound("mean"), "name"),
        (lambda m, t, x: train.make_step(m, "iwae", None), "optimizer"),
        (lambda m, t, x: train.make_step(m, "iwae", iw.optim.Adam(1e-3), frozen=[1]), "frozen"),
        (lambda m, t, x: iw.block(np.arange(6.0), 0, 7, (7,)), "stop"),
        (lambda m, t, x: iw.block(np.arange(6.0), 0, 6, (2, 2)), "shape"),
        (lambda m, t, x: iw.MLP("net", [3]), "sizes"),
        (lambda m, t, x: iw.glorot_uniform(np.random.default_rng(0), 2, 2, dtype=int), "dtype"),
        (lambda m, t, x: checkpoint.remove_orphans(123), "folder"),
        (lambda m, t, x: idx.read_idx(123), "path"),
        (lambda m, t, x: toys.banana(10, noise_std=1e308), "noise_std"),
        (lambda m, t, x: toys.linear_gaussian(seed=-1), "seed"),
        (lambda m, t, x: iw.reparameterize([1e308], [709.0], [10.0]), "mean, log_std, eps"),
        (lambda m, t, x: iw.optim.Adam(1e308).step(np.full(2, 1e308), np.ones(2)), "lr"),
        (lambda m, t, x: iw.optim.Adam(bogus=1), "bogus"),
        (lambda m, t, x: iw.logsumexp(np.array([1, 2], dtype="m8[s]")), "a"),
        (lambda m, t, x: estimators.normalized_weights([[np.inf], [0.0]]), "log_w"),
        (lambda m, t, x: m.layout.get(np.zeros(3), "decoder.0.b"), "theta"),
        (lambda m, t, x: checkpoint.save("m.npz", m, [("theta", t)], {}), "arrays"),
        (lambda m, t, x: iw.TwoLayerVAE(3, None, 2), "h1_dim"),
        (lambda m, t, x: iw.data.bars(n=2, test_fraction=0.9), "test_fraction"),
        (lambda m, t, x: iw.data.mnist(5), "path"),
        (
            lambda m, t, x: iw.glorot_uniform(np.random.default_rng(0), 10**6, 10**6),
            "fan_in, fan_out",
        ),
    ],
)
def test_bad_input_is_refused_by_name(tiny, call, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        call(*tiny)


def test_a_test_set_that_is_not_an_array_is_refused(tiny):
    model, theta, x = tiny

    class Data:
        x_train, x_test, name = x, 5, "made up"

    with pytest.raises(ValueError, match="^data.x_test: expected"):
        train.train(model, theta, Data(), epochs=1, progress=False)


def test_a_folder_named_like_a_temporary_file_does_not_break_saving(tiny, tmp_path):
    model, theta, _ = tiny
    (tmp_path / ".checkpoint-99999999-x.npz").mkdir()
    checkpoint.save(tmp_path / "m.npz", model, {"theta": theta}, {"epoch": 0})
    assert checkpoint.load(tmp_path / "m.npz", model)[0]["theta"].shape == theta.shape


@pytest.mark.parametrize("metadata", [{"epoch": np.float32(1)}, {"bound": float("nan")}])
def test_metadata_must_be_strict_json(tiny, tmp_path, metadata):
    model, theta, _ = tiny
    with pytest.raises(ValueError, match="^metadata: expected JSON-ready values"):
        checkpoint.save(tmp_path / "m.npz", model, {"theta": theta}, metadata)


def test_normal_logpdf_with_a_zero_factor_is_minus_inf_not_nan():
    # two terms of +1.7e308 overflow to +inf beside a −inf term (x ≠ μ with σ → 0)
    assert iw.normal_logpdf([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.7e308] * 3) == -np.inf


@pytest.mark.parametrize("model", [iw.VAE(4, 1, hidden=()), iw.TwoLayerVAE(4, 2, 1)])
def test_the_hessian_of_a_stop_q_objective_is_the_derivative_of_its_gradient(model):
    rng = np.random.default_rng(0)
    theta = model.init(seed=0) + 0.3 * rng.standard_normal(model.layout.size)
    x = np.array([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    eps = rng.standard_normal((3, 2, model.eps_dim))
    gradient = autograd.grad(
        lambda t: anp.mean(bounds.iwae_bound(model.log_weights(t, x, eps, stop_q=True)))
    )
    u, v = rng.standard_normal((2, model.layout.size))
    hvp = autograd.grad(lambda t: anp.sum(gradient(t) * v))(theta) @ u
    h = 1e-5
    differences = v @ (gradient(theta + h * u) - gradient(theta - h * u)) / (2 * h)
    assert hvp == pytest.approx(differences, rel=1e-6)


def test_a_gzip_idx_file_that_claims_gigabytes_is_refused_before_reading(tmp_path):
    import gzip

    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:  # a header claiming 2^32−1 × 2^32−1 × 255 bytes
        f.write(bytes([0, 0, 0x08, 3]) + b"\xff\xff\xff\xff" * 2 + b"\x00\x00\x00\xff")
    with pytest.raises(ValueError, match="^path: expected a size"):
        idx.read_idx(path)
    corrupt = tmp_path / "corrupt-idx1-ubyte.gz"
    corrupt.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2, 3, 4]))[:-12] + b"x")
    with pytest.raises(ValueError, match="^path: expected a readable IDX file"):
        idx.read_idx(corrupt)


@pytest.mark.parametrize("which", ["svi step", "dreg"])
def test_second_derivatives_through_constant_parts_match_finite_differences(which):
    # λ_K held constant (through_steps=False) and DReG's w̃² are constants for θ's gradient only:
    # the derivative of that gradient must still see them move with θ
    rng = np.random.default_rng(0)
    model = iw.VAE(4, 2, hidden=(5,))
    theta = model.init(seed=0) + 0.1 * rng.standard_normal(model.layout.size)
    x = np.array([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    if which == "svi step":
        eps = rng.standard_normal((3, 2, 2, 2))
        gradient = autograd.grad(
            lambda t: anp.mean(
                semi_amortized.semi_amortized_elbo(model, t, x, eps, lr=0.05, through_steps=False)
            )
        )
    else:
        eps = rng.standard_normal((4, 2, 2))
        gradient = lambda t: estimators.gradient(model, t, x, eps, "dreg")  # noqa: E731
    u, v = rng.standard_normal((2, model.layout.size))
    hvp = autograd.grad(lambda t: anp.sum(gradient(t) * v))(theta) @ u
    h = 1e-5
    differences = v @ (gradient(theta + h * u) - gradient(theta - h * u)) / (2 * h)
    assert hvp == pytest.approx(differences, rel=1e-6)
