"""Checks at the door.

Every public entry point validates its input with these helpers and raises ``ValueError`` that
names the argument, what was expected and what was given. The math inside stays lean: once data
has passed the door, inner functions trust it.

The helpers look through autograd's boxes (``getval``), so they can be called on values that are
being differentiated without breaking the gradient.
"""

import numbers

import numpy as np
from autograd.tracer import getval


def _first_bad_index(mask):
    """Index tuple of the first True entry of a boolean array (for error messages)."""
    flat = int(np.flatnonzero(mask)[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def check_array(name, value, ndim=None, allow_neg_inf=False, allow_inf=False):
    """Return ``value`` as a floating array after checking it is real and free of NaN/inf.

    ndim: the required number of dimensions, or a tuple of allowed ones, or None for any.
    allow_neg_inf: accept -inf (log-weights and log-densities may be -inf); NaN never passes.
    """
    raw = getval(value)
    array = np.asarray(raw)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
        or array.dtype == bool
    ):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(
                f"{name}: expected an array with {want} dimensions, got shape {array.shape}"
            )
    if np.issubdtype(array.dtype, np.floating):
        nan = np.isnan(array)
        if nan.any():
            raise ValueError(f"{name}: expected no NaN, got NaN at index {_first_bad_index(nan)}")
        if not allow_inf:
            bad = np.isposinf(array) if allow_neg_inf else np.isinf(array)
            if bad.any():
                idx = _first_bad_index(bad)
                what = "finite values or -inf" if allow_neg_inf else "finite values"
                raise ValueError(f"{name}: expected {what}, got {array[idx]} at index {idx}")
    return value


def check_binary(name, x):
    """Bernoulli data must be exactly 0 or 1."""
    array = np.asarray(getval(x))
    bad = (array != 0) & (array != 1)
    if bad.any():
        idx = _first_bad_index(bad)
        raise ValueError(
            f"{name}: expected binary data in {{0, 1}} for a Bernoulli likelihood, "
            f"got {array[idx]} at index {idx}"
        )


def check_last_dim(name, value, size, what):
    """The last axis of ``value`` must have length ``size`` (``what`` says whose size it is)."""
    shape = np.shape(getval(value))
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{name}: expected last dimension {size} ({what}), got shape {shape}")


def check_int(name, value, minimum=None):
    """An integer (not a bool, not a float) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_positive(name, value):
    """A finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected a finite positive number, got {value}")
    return float(value)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value
