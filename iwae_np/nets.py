"""The hand-written multilayer perceptron used for the encoder and the decoder.

    h_0 = x,   h_l = a(h_{l−1} W_l + b_l)  for hidden layers,   output = h_{L−1} W_L + b_L

Any leading shape is allowed: x (k, n, d) is reshaped to (k·n, d) so each layer is one matrix
product (BLAS uses both cores for it), then the output is reshaped back to (k, n, d_out).
"""

import autograd.numpy as np
import numpy as onp
from autograd.extend import defvjp, primitive


@primitive
def tanh(a):
    """tanh(a), elementwise."""
    return onp.tanh(a)


# tanh' = 1 − tanh², from the saved output: two cheap passes instead of autograd's 1/cosh².
# Where tanh' is tiny (|a| > 10) this is accurate to 1e-16 absolute, which is all a weight sees.
defvjp(tanh, lambda ans, a: lambda g: g * (1 - ans * ans))


@primitive
def relu(a):
    """max(a, 0), elementwise."""
    return onp.maximum(a, 0)


defvjp(relu, lambda ans, a: lambda g: g * (ans > 0))

ACTIVATIONS = {"tanh": tanh, "relu": relu}


class MLP:
    """An MLP whose weights are blocks ``{name}.{l}.W`` (d_in, d_out) and ``{name}.{l}.b`` of θ.

    sizes: (d_in, h_1, ..., d_out); activation: "tanh" (default, as Burda et al.) or "relu".
    """

    def __init__(self, name, sizes, activation="tanh"):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.name, self.sizes, self.activation = name, tuple(sizes), activation

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def register(self, layout):
        """Add this network's weight and bias blocks to ``layout``."""
        for layer, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layout.add(f"{self.name}.{layer}.W", (d_in, d_out))
            layout.add(f"{self.name}.{layer}.b", (d_out,))

    def __call__(self, theta, layout, x):
        """x: (..., d_in) -> (..., d_out)."""
        act = ACTIVATIONS[self.activation]
        lead_shape = np.shape(x)[:-1]
        h = np.reshape(x, (-1, self.sizes[0]))
        for layer in range(self.n_layers):
            W = layout.get(theta, f"{self.name}.{layer}.W")
            b = layout.get(theta, f"{self.name}.{layer}.b")
            h = np.dot(h, W) + b
            if layer < self.n_layers - 1:
                h = act(h)
        return np.reshape(h, lead_shape + (self.sizes[-1],))
