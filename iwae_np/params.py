"""All parameters live in one flat vector θ; a ``Layout`` names its blocks.

Why one vector: optimizers, finite differences, checkpoints and gradient masks (encoder vs
decoder) then all act on a single array. Why the ``block`` primitive instead of ``theta[a:b]``:
autograd's slice VJP builds a dense zero vector per slice and fills it with ``np.add.at``; with
one slice per weight matrix that dominated the step (22 ms vs 17 ms, DESIGN.md decision 1).
``block``'s VJP instead adds its gradient in place into one shared accumulator (a
``SparseObject``), so θ's gradient is allocated once per backward pass.
"""

import math

import numpy as onp
from autograd.extend import SparseObject, defvjp, primitive, vspace


@primitive
def block(theta, start, stop, shape):
    """θ[start:stop] viewed as an array of ``shape`` (a view: no copy)."""
    return theta[start:stop].reshape(shape)


def _block_vjp(ans, theta, start, stop, shape):
    space = vspace(theta)

    def vjp(g):
        def add_into(total):  # autograd hands us θ's gradient accumulator; add our slice in place
            # reshape the contiguous slice of total, not g: a transposed g (as matrix-product
            # gradients often are) would be copied by ravel
            total[start:stop].reshape(shape)[...] += g
            return total

        return SparseObject(space, add_into)

    return vjp


defvjp(block, _block_vjp)


class Layout:
    """Named blocks of a flat parameter vector, in the order they were added.

    >>> layout = Layout(); layout.add("encoder.0.W", (3, 2)); layout.add("encoder.0.b", (2,))
    >>> layout.size
    8
    """

    def __init__(self):
        self.blocks = {}  # name -> (start, stop, shape)
        self.size = 0

    def add(self, name, shape):
        if name in self.blocks:
            raise ValueError(f"name: expected a new block name, got {name!r} twice")
        shape = tuple(int(s) for s in shape)
        stop = self.size + math.prod(shape)
        self.blocks[name] = (self.size, stop, shape)
        self.size = stop

    def get(self, theta, name):
        """The block ``name`` of θ, shaped; differentiable through the sparse ``block`` VJP."""
        return block(theta, *self.blocks[name])

    def slice(self, name):
        """The slice of θ that holds ``name`` (for writing values in, e.g. at initialization)."""
        start, stop, _ = self.blocks[name]
        return slice(start, stop)

    def mask(self, prefix):
        """Boolean vector over θ: True on every block whose name starts with ``prefix``.

        E.g. ``layout.mask("encoder.")`` selects the encoder, for encoder-only updates.
        """
        selected = onp.zeros(self.size, dtype=bool)
        for name, (start, stop, _) in self.blocks.items():
            if name.startswith(prefix):
                selected[start:stop] = True
        return selected

    def unflatten(self, theta):
        """{name: array} views into θ, for reading parameters by name."""
        return {name: onp.asarray(theta)[start:stop].reshape(shape)
                for name, (start, stop, shape) in self.blocks.items()}

    def to_dict(self):
        """JSON-ready description, stored with checkpoints to catch mismatched models."""
        return {name: list(shape) for name, (_, _, shape) in self.blocks.items()}

    def __repr__(self):
        rows = "\n".join(f"  {name:<24} {str(shape):<12} [{start}:{stop}]"
                         for name, (start, stop, shape) in self.blocks.items())
        return f"Layout(size={self.size})\n{rows}"


def glorot_uniform(rng, fan_in, fan_out, dtype=onp.float64):
    """W ~ U(−a, a), a = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010; Burda et al. use it)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


def init_theta(layout, rng, dtype=onp.float64):
    """A fresh θ: Glorot-uniform for every 2-D ``*.W`` block, zeros for everything else."""
    theta = onp.zeros(layout.size, dtype=dtype)
    for name, (start, stop, shape) in layout.blocks.items():
        if name.endswith(".W") and len(shape) == 2:
            theta[start:stop] = glorot_uniform(rng, *shape, dtype=dtype).ravel()
    return theta
