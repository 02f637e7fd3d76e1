"""The flat parameter vector, its sparse block VJP, Glorot initialization and the MLP."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import iwae_np as iw


def test_layout_blocks_and_mask():
    layout = iw.Layout()
    layout.add("encoder.0.W", (3, 2))
    layout.add("encoder.0.b", (2,))
    layout.add("decoder.0.W", (2, 4))
    assert layout.size == 6 + 2 + 8
    theta = np.arange(layout.size, dtype=float)
    np.testing.assert_array_equal(layout.get(theta, "encoder.0.b"), [6.0, 7.0])
    np.testing.assert_array_equal(layout.get(theta, "decoder.0.W"), np.arange(8, 16).reshape(2, 4))
    np.testing.assert_array_equal(layout.mask("encoder."), [True] * 8 + [False] * 8)
    assert list(layout.unflatten(theta)) == ["encoder.0.W", "encoder.0.b", "decoder.0.W"]


def test_block_vjp_equals_autograd_slicing():
    layout = iw.Layout()
    layout.add("a", (2, 3))
    layout.add("b", (4,))
    layout.add("c", (3, 2))
    theta = np.random.default_rng(0).normal(size=layout.size)

    def f_block(t):  # reads "a" twice: the two sparse contributions must add up
        a, b, c = (layout.get(t, name) for name in ("a", "b", "c"))
        return anp.sum(anp.tanh(anp.dot(a, c))) + anp.sum(b**2) + anp.sum(a**3)

    def f_slice(t):
        a, b, c = t[0:6].reshape(2, 3), t[6:10], t[10:16].reshape(3, 2)
        return anp.sum(anp.tanh(anp.dot(a, c))) + anp.sum(b**2) + anp.sum(a**3)

    np.testing.assert_allclose(
        autograd.grad(f_block)(theta), autograd.grad(f_slice)(theta), rtol=1e-14
    )
    assert iw.gradcheck(f_block, theta).passed


def test_glorot_uniform_range_and_variance():
    W = iw.glorot_uniform(np.random.default_rng(0), 300, 200)
    limit = np.sqrt(6 / 500)
    assert np.abs(W).max() <= limit
    np.testing.assert_allclose(W.var(), limit**2 / 3, rtol=0.02)  # var of U(-a, a) is a²/3


@pytest.mark.parametrize(
    "activation,act",
    [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))],
    ids=["tanh", "relu"],
)
def test_mlp_matches_a_direct_numpy_computation_over_leading_shapes(activation, act):
    mlp = iw.MLP("net", (4, 5, 3), activation)
    layout = iw.Layout()
    mlp.register(layout)
    theta = iw.init_theta(layout, np.random.default_rng(1))
    theta[layout.slice("net.0.b")] = 0.1
    p = layout.unflatten(theta)
    x = np.random.default_rng(2).normal(size=(2, 6, 4))
    expected = act(x @ p["net.0.W"] + p["net.0.b"]) @ p["net.1.W"] + p["net.1.b"]
    out = mlp(theta, layout, x)
    assert out.shape == (2, 6, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    f = lambda t: anp.sum(anp.sin(mlp(t, layout, x)))
    assert iw.gradcheck(f, theta).passed


@pytest.mark.parametrize("name", ["tanh", "relu"])
def test_activation_vjps_against_naive_autograd(name):
    from iwae_np import nets

    mine = getattr(nets, name)
    naive = {"tanh": anp.tanh, "relu": lambda v: anp.maximum(v, 0)}[name]
    a = np.random.default_rng(3).normal(size=50) * 3
    # 1 - tanh² loses relative (not absolute) precision where tanh' is tiny: atol 1e-15
    np.testing.assert_allclose(
        autograd.grad(lambda v: anp.sum(anp.cos(mine(v))))(a),
        autograd.grad(lambda v: anp.sum(anp.cos(naive(v))))(a),
        rtol=1e-12,
        atol=1e-15,
    )
