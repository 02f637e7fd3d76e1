"""The hand-written multilayer perceptron used for the encoder and the decoder.

    h_0 = x,   h_l = a(h_{l−1} W_l + b_l)  for hidden layers,   output = h_{L−1} W_L + b_L

Any leading shape is allowed: x (k, n, d) is reshaped to (k·n, d) so each layer is one matrix
product (BLAS uses both cores for it), then the output is reshaped back to (k, n, d_out).
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from . import kernels
from .checks import (
    all_of,
    check_bool,
    check_choice,
    check_int,
    check_last_dim,
    checked,
    finite_result,
    real,
)
from .numerics import select


def tanh(a):
    """tanh(a), elementwise."""
    return anp.tanh(a)


def relu(a):
    """max(a, 0), elementwise, with derivative 1 for a > 0 and 0 otherwise (at a = 0 too)."""
    return select(a > 0, a, 0.0)


ACTIVATIONS = {"tanh": tanh, "relu": relu}


def net_input(name, value, arguments):
    """Rule for an MLP call's x: (..., d_in), with θ the size of a layout holding the network."""
    net, layout, theta = arguments["self"], arguments["layout"], arguments["theta"]
    blocks = getattr(layout, "blocks", None)
    if not isinstance(blocks, dict) or f"{net.name}.0.W" not in blocks:
        raise ValueError(
            f"layout: expected a Layout with this network's blocks ({net.name}.0.W, …), "
            f"got {type(layout).__name__}"
        )
    if np.shape(getval(theta)) != (layout.size,):
        raise ValueError(
            f"theta: expected shape ({layout.size},) for this layout, got {np.shape(getval(theta))}"
        )
    check_last_dim(name, value, net.sizes[0], "the network's input size d_in")
    return value


class MLP:
    """An MLP whose weights are blocks ``{name}.{l}.W`` (d_in, d_out) and ``{name}.{l}.b`` of θ.

    sizes: (d_in, h_1, ..., d_out); activation: "tanh" (default, as Burda et al.) or "relu".
    fast: run each layer as one fused kernel (``kernels.dense``); False runs the
    reference forms above. Both compute the same numbers.
    """

    def __init__(self, name, sizes, activation="tanh", fast=True):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if not isinstance(sizes, (tuple, list)) or len(sizes) < 2:
            raise ValueError(
                f"sizes: expected (d_in, ..., d_out), at least two sizes, got {sizes!r}"
            )
        self.name = name
        self.sizes = tuple(check_int("sizes", size, minimum=1) for size in sizes)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.fast = check_bool("fast", fast)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def register(self, layout):
        """Add this network's weight and bias blocks to ``layout``."""
        for layer, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            layout.add(f"{self.name}.{layer}.W", (d_in, d_out))
            layout.add(f"{self.name}.{layer}.b", (d_out,))

    @checked(
        returns=finite_result("theta, x", "a sum in the network overflowed the dtype"),
        theta=real(ndim=1),
        x=all_of(real(), net_input),
    )
    def __call__(self, theta, layout, x):
        """x: (..., d_in) -> (..., d_out)."""
        lead_shape = anp.shape(x)[:-1]
        h = anp.reshape(x, (-1, self.sizes[0]))
        for layer in range(self.n_layers):
            last = layer == self.n_layers - 1
            W_name, b_name = f"{self.name}.{layer}.W", f"{self.name}.{layer}.b"
            if self.fast:  # the same layer as one fused kernel
                h = kernels.dense(
                    theta,
                    h,
                    layout.blocks[W_name],
                    layout.blocks[b_name],
                    None if last else self.activation,
                )
                continue
            h = anp.dot(h, layout.get(theta, W_name, fast=False)) + layout.get(
                theta, b_name, fast=False
            )
            if not last:
                h = ACTIVATIONS[self.activation](h)
        return anp.reshape(h, lead_shape + (self.sizes[-1],))
