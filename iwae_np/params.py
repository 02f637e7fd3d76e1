"""All parameters live in one flat vector θ; a ``Layout`` names its blocks.

Why one vector: optimizers, finite differences, checkpoints and gradient masks (encoder vs
decoder) then all act on a single array (docs/design.md §1). A block is read as
θ[start:stop] reshaped; the models read it through ``kernels.block``, whose VJP adds into one
shared gradient accumulator with ``+=`` on a slice instead of autograd's ``np.add.at``.
"""

import math

import numpy as np
from autograd.tracer import getval

from . import kernels
from .checks import (
    block_span,
    check_fits,
    check_int,
    checked,
    float_dtype,
    generator,
    integer,
    real,
)


@checked(theta=real(ndim=1), shape=block_span)
def block(theta, start, stop, shape):
    """θ[start:stop] viewed as an array of ``shape``: the reference form of reading one block.

    Autograd differentiates the slice; ``kernels.block`` is the same read with a sparse,
    in-place VJP, which the models use by default."""
    return theta[start:stop].reshape(shape)


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
        """Append a block ``name`` of ``shape`` (a tuple of sizes >= 1) at the end of θ."""
        if not isinstance(name, str):
            raise ValueError(f"name: expected a string, got {type(name).__name__}")
        if name in self.blocks:
            raise ValueError(f"name: expected a new block name, got {name!r} twice")
        if not isinstance(shape, (tuple, list)):
            raise ValueError(f"shape: expected a tuple of sizes, got {shape!r}")
        shape = tuple(check_int("shape", s, minimum=1) for s in shape)
        stop = self.size + math.prod(shape)
        self.blocks[name] = (self.size, stop, shape)
        self.size = stop

    @checked(theta=real(ndim=1))
    def get(self, theta, name, fast=True):
        """The block ``name`` of θ, shaped and differentiable: through ``kernels.block`` (sparse
        in-place VJP) when ``fast``, else through the reference ``block`` (a plain slice)."""
        self.check_size(theta)
        return (kernels.block if fast else block)(theta, *self.blocks[self._known(name)])

    def _known(self, name):
        if not isinstance(name, str) or name not in self.blocks:
            raise ValueError(
                f"name: expected one of the layout's blocks {list(self.blocks)}, got {name!r}"
            )
        return name

    def slice(self, name):
        """The slice of θ that holds ``name`` (for writing values in, e.g. at initialization)."""
        start, stop, _ = self.blocks[self._known(name)]
        return slice(start, stop)

    def mask(self, prefix):
        """Boolean vector over θ: True on every block whose name starts with ``prefix``.

        E.g. ``layout.mask("encoder.")`` selects the encoder, for encoder-only updates.
        """
        if not isinstance(prefix, str):
            raise ValueError(f"prefix: expected a string, got {type(prefix).__name__}")
        selected = np.zeros(self.size, dtype=bool)
        for name, (start, stop, _) in self.blocks.items():
            if name.startswith(prefix):
                selected[start:stop] = True
        return selected

    def check_size(self, theta):
        """θ must hold exactly this layout's ``size`` entries."""
        if np.shape(getval(theta)) != (self.size,):
            raise ValueError(
                f"theta: expected shape ({self.size},) for this layout, "
                f"got {np.shape(getval(theta))}"
            )
        return theta

    @checked(theta=real(ndim=1))
    def unflatten(self, theta):
        """{name: array} views into θ, for reading parameters by name."""
        self.check_size(theta)
        return {
            name: np.asarray(theta)[start:stop].reshape(shape)
            for name, (start, stop, shape) in self.blocks.items()
        }

    def to_dict(self):
        """JSON-ready description, stored with checkpoints to catch mismatched models."""
        return {name: list(shape) for name, (_, _, shape) in self.blocks.items()}

    def __repr__(self):
        rows = "\n".join(
            f"  {name:<24} {str(shape):<12} [{start}:{stop}]"
            for name, (start, stop, shape) in self.blocks.items()
        )
        return f"Layout(size={self.size})\n{rows}"


@checked(
    rng=generator(), fan_in=integer(minimum=1), fan_out=integer(minimum=1), dtype=float_dtype()
)
def glorot_uniform(rng, fan_in, fan_out, dtype=np.float64):
    """W ~ U(−a, a), a = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010; Burda et al. use it).
    -> W: (fan_in, fan_out) in ``dtype``."""
    check_fits("fan_in, fan_out", (fan_in, fan_out), (fan_in, fan_out), dtype, copies=2)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


@checked(rng=generator(), dtype=float_dtype())
def init_theta(layout, rng, dtype=np.float64):
    """A fresh θ: Glorot-uniform for every 2-D ``*.W`` block, zeros for everything else.
    -> θ: (layout.size,) in ``dtype``."""
    if not isinstance(layout, Layout):
        raise ValueError(f"layout: expected a Layout, got {type(layout).__name__}")
    check_fits("layout", layout, (layout.size,), dtype, copies=6)  # θ, its gradient, Adam's state
    theta = np.zeros(layout.size, dtype=dtype)
    for name, (start, stop, shape) in layout.blocks.items():
        if name.endswith(".W") and len(shape) == 2:
            theta[start:stop] = glorot_uniform(rng, *shape, dtype=dtype).ravel()
    return theta
