"""Checks at the door: validation happens once, where a call enters the package.

Every public entry point declares what its arguments must be with ``@checked(name=rule, ...)``.
A rule is a function ``rule(name, value, arguments) -> value`` that raises
``ValueError("name: expected …, got …")`` or hands back the value, converted where that is safe
(a list, a bool or an integer array becomes floating point before any arithmetic).

The rules run only for calls that come from outside the package. Once a call is inside a checked
entry point, the package's own calls to other public functions trust their input: a training step
validates θ once, not once per layer. So the math below the door is written once, in the words of
the math, with no unchecked ``_private`` twin (docs/design.md §5).

The rules look through autograd's boxes (``getval``), so they can check values that are being
differentiated without breaking the gradient: a boxed value is checked but passed on unchanged.
"""

import contextvars
import functools
import inspect
import math
import numbers
import os

import numpy as np
from autograd.tracer import Box, getval

_INSIDE = contextvars.ContextVar("iwae_np_inside_a_checked_call", default=False)


def checked(returns=None, **rules):
    """Decorator: validate the named arguments with their rules when the call enters the package.

    returns: an optional rule ``rule(value, arguments)`` for the result, applied at the door only
    (a call from outside gets a ValueError naming the argument to blame instead of a NaN; the
    package's own loops see the raw value and handle it, e.g. as a diverged training step).

    >>> @checked(x=real())
    ... def double(x):
    ...     return 2 * x
    >>> double([1, 2])
    array([2., 4.])
    >>> double([1, float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: x: expected no NaN, got NaN at index (1,)
    """

    def decorate(function):
        # an autograd primitive keeps the function it wraps in ``fun``
        signature = inspect.signature(getattr(function, "fun", function))
        missing = set(rules) - set(signature.parameters)
        if missing:
            raise TypeError(f"checked: {function.__qualname__} has no argument {sorted(missing)}")

        @functools.wraps(function)
        def entry(*args, **kwargs):
            if _INSIDE.get():  # called by the package itself, on values already checked
                return function(*args, **kwargs)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise ValueError(_binding_error(signature, args, kwargs, error)) from None
            bound.apply_defaults()
            arguments = bound.arguments
            for name, rule in rules.items():
                arguments[name] = rule(name, arguments[name], arguments)
            token = _INSIDE.set(True)
            try:
                result = function(*bound.args, **bound.kwargs)
            finally:
                _INSIDE.reset(token)
            return result if returns is None else returns(result, arguments)

        return entry

    return decorate


def _binding_error(signature, args, kwargs, error):
    """A TypeError from binding the call's arguments, as "name: expected …, got …"."""
    parameters = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = [name for name in kwargs if name not in parameters and not takes_any]
    if unknown:
        names = [n for n in parameters if n != "self"]
        return f"{unknown[0]}: expected one of the arguments {names}, got an unknown argument"
    for name, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind not in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        )
        position = list(parameters).index(name)
        if required and name not in kwargs and position >= len(args):
            return f"{name}: expected a value, got none"
    return f"{list(parameters)[-1]}: expected the documented arguments, got {error}"


class TooLarge(ValueError):
    """A request refused because it would not fit in the machine's memory (still a ValueError
    naming the argument, so the API's contract holds; the CLI reports it as a resource error)."""


class NotWritable(ValueError):
    """An output path this user cannot write (the CLI reports it as a file-system error)."""


def available_memory():
    """Bytes of memory the machine can still give (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(name, value, shape, dtype, copies=1):
    """An array of ``shape`` and ``dtype`` (``copies`` of it) must fit in the memory the machine
    has left: refused by name before NumPy tries (a too-large request can otherwise end in the
    kernel's out-of-memory killer, not a MemoryError)."""
    count = 1
    for size in shape:
        count *= int(size)
    needed = count * np.dtype(dtype).itemsize * copies
    available = available_memory()
    if count >= 2**62 or (available is not None and needed > available):
        limit = "an index" if available is None else f"{available / 2**30:.1f} GiB available"
        raise TooLarge(
            f"{name}: expected a size whose {tuple(shape)} array of "
            f"{np.dtype(dtype).name} fits in memory ({limit}), got {value!r}"
        )
    return value


def check_output_file(name, path, create_folder=True):
    """A file path to write later, checked before any long work: a non-empty str or path, not a
    folder, in a folder that exists (or can be made) and is writable. Returns it as a str."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name}: expected a file path, got an empty string")
    if os.path.isdir(path):
        raise ValueError(f"{name}: expected a file path, got the folder {path!r}")
    if os.path.exists(path) and not os.path.isfile(path):  # a device, a pipe: never replaced
        raise ValueError(f"{name}: expected a regular file path, got the special file {path!r}")
    check_output_folder(name, os.path.dirname(os.path.abspath(path)), create=create_folder)
    return path


def check_output_folder(name, folder, create):
    """A folder to write into: not a file, existing (or made when ``create``), writable."""
    if isinstance(folder, bytes) or not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{name}: expected a folder path, got {type(folder).__name__}")
    folder = os.fspath(folder)
    if not folder:
        raise ValueError(f"{name}: expected a folder path, got an empty string")
    parent = folder
    while parent and not os.path.exists(parent):  # a file on the way up cannot hold a folder
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"{name}: expected a folder, got the file {parent!r}")
    if not os.path.exists(folder):
        if not create:
            raise ValueError(
                f"{name}: expected an existing folder, got {folder!r} (no such folder)"
            )
        os.makedirs(folder, exist_ok=True)  # an OSError here is a file-system error, as it is
    if not os.access(folder, os.W_OK):
        raise NotWritable(f"{name}: expected a folder this user can write to, got {folder!r}")
    return folder


def _result_parts(value):
    """The arrays of a result: each part of a tuple (e.g. (mean, log_std) or (x, z)), else it."""
    return value if isinstance(value, tuple) else (value,)


def no_nan(blame, why):
    """Rule for a result: no NaN (in any part of a tuple result). ``blame`` names the arguments
    at fault (e.g. "theta, eps"); ``why`` says what overflowed."""

    def rule(value, arguments):
        for part in _result_parts(value):
            array = np.asarray(getval(part))
            if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
                index = _first_bad_index(np.isnan(array))
                raise ValueError(
                    f"{blame}: expected values for which the result is defined, got "
                    f"NaN at index {index} ({why})"
                )
        return value

    return rule


def finite_result(blame, why):
    """Rule for a result: finite everywhere, in every part of a tuple (for outputs that are finite
    whenever the inputs are, such as a network's logits: an inf there is an overflow, not an
    answer)."""

    def rule(value, arguments):
        for part in _result_parts(value):
            array = np.asarray(getval(part))
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                index = _first_bad_index(~np.isfinite(array))
                raise ValueError(
                    f"{blame}: expected values for which the result is finite, got "
                    f"{array[index]} at index {index} ({why})"
                )
        return value

    return rule


def outside():
    """A context in which calls count as coming from outside again, e.g. while the package runs a
    function the user wrote (``gradcheck`` calling ``f``): the user's calls are checked."""
    return _Door(False)


def inside():
    """A context in which calls count as the package's own, for a function that has checked its
    arguments itself and then calls the package many times (``train.make_step``'s step)."""
    return _Door(True)


def entered():
    """True while a call that came in through a checked door is running."""
    return _INSIDE.get()


class _Door:
    def __init__(self, inside):
        self.inside = inside

    def __enter__(self):
        self.token = _INSIDE.set(self.inside)

    def __exit__(self, *exc):
        _INSIDE.reset(self.token)


# ---------------------------------------------------------------- arrays


def _first_bad_index(mask):
    """Index tuple of the first True entry of a boolean array (for error messages)."""
    flat = int(np.flatnonzero(mask)[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def as_float_array(name, value):
    """``value`` as a floating-point array: lists, bools and integers (signed or unsigned) are
    converted to float64 before any arithmetic, so nothing wraps around; float32 stays float32.
    A value being differentiated (an autograd box) is passed through unchanged."""
    if isinstance(value, Box):
        raw = np.asarray(getval(value))
        if not np.issubdtype(raw.dtype, np.floating):
            raise ValueError(f"{name}: expected a real floating array, got dtype {raw.dtype}")
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(
            f"{name}: expected a real numeric array, got {type(value).__name__} "
            f"that is not one ({error})"
        ) from None
    if array.dtype.kind not in "biuf":  # timedelta, datetime, complex, str, object: no reals
        raise ValueError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return array


def check_finite(name, value, allow_neg_inf=False, allow_inf=False):
    """No NaN ever; no ±inf unless allowed (log-weights and log-densities may be −inf)."""
    array = np.asarray(getval(value))
    # Fast path: a finite sum means every entry is finite (NaN and ±inf propagate). Only a sum
    # that is not finite (or overflows) pays for the entry-by-entry scan that names the index.
    with np.errstate(over="ignore", invalid="ignore"):
        if array.size == 0 or np.isfinite(np.add.reduce(array, axis=None)):
            return value
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


def check_array(name, value, ndim=None, allow_neg_inf=False, allow_inf=False, nonempty=False):
    """``value`` as a floating array (see ``as_float_array``), checked for NaN and inf.

    ndim: the required number of dimensions, or a tuple of allowed ones, or None for any.
    """
    value = as_float_array(name, value)
    shape = np.shape(getval(value))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected an array with {want} dimensions, got shape {shape}")
    if nonempty and 0 in shape:
        raise ValueError(f"{name}: expected a non-empty array, got shape {shape}")
    return check_finite(name, value, allow_neg_inf=allow_neg_inf, allow_inf=allow_inf)


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
    return x


def check_last_dim(name, value, size, what):
    """The last axis of ``value`` must have length ``size`` (``what`` says whose size it is)."""
    shape = np.shape(getval(value))
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{name}: expected last dimension {size} ({what}), got shape {shape}")


def check_broadcast(**arrays):
    """The arrays' shapes must broadcast together; returns the broadcast shape."""
    shapes = {name: np.shape(getval(value)) for name, value in arrays.items()}
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"{', '.join(shapes)}: expected shapes that broadcast together, got {described}"
        ) from None


def check_axis(name, axis, ndim):
    """An axis (int), a tuple of distinct axes, or None, valid for an array of ``ndim`` dims.
    Returns it normalized: non-negative ints (a tuple stays a tuple)."""
    if axis is None:
        return None
    items = axis if isinstance(axis, tuple) else (axis,)
    normalized = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise ValueError(f"{name}: expected an int, a tuple of ints or None, got {axis!r}")
        if not -ndim <= item < ndim:
            raise ValueError(
                f"{name}: expected an axis in [{-ndim}, {ndim - 1}] for an array "
                f"with {ndim} dimensions, got {item}"
            )
        normalized.append(int(item) % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}: expected distinct axes, got {axis!r}")
    return tuple(normalized) if isinstance(axis, tuple) else normalized[0]


# ---------------------------------------------------------------- numbers and choices


def check_int(name, value, minimum=None, maximum=None):
    """An integer (not a bool, not a float) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return int(value)


def check_sizes(name, sizes):
    """Hidden-layer sizes: a tuple or list of integers >= 1 (empty: no hidden layer)."""
    if not isinstance(sizes, (tuple, list)):
        raise ValueError(
            f"{name}: expected a tuple of layer sizes such as (200, 200), got {sizes!r}"
        )
    return tuple(check_int(name, h, minimum=1) for h in sizes)


def _as_finite_float(name, value, what):
    """``value`` as a Python float, or a ValueError naming ``name``: bools are refused, and so is
    any real number that is not finite *as a float* (an int of 400 digits or a long double
    beyond 1.8e308 would overflow in the arithmetic; a Fraction has no ``np.isfinite``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    try:
        converted = float(value)
    except (OverflowError, ValueError, TypeError):
        converted = math.inf
    if not math.isfinite(converted):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return converted


def check_real(name, value, low=-np.inf, high=np.inf, low_open=False, high_open=False):
    """A finite real number (not a bool) in the interval given; returns a float."""
    value = _as_finite_float(name, value, "a finite real number")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        interval = ("(" if low_open else "[") + f"{low:g}, {high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def check_positive(name, value):
    """A finite real number > 0."""
    value = _as_finite_float(name, value, "a finite positive number")
    if value <= 0:
        raise ValueError(f"{name}: expected a finite positive number, got {value}")
    return float(value)


def check_bool(name, value):
    """A flag: True or False (a NumPy bool too). Anything else, even a truthy 1 or "no", is
    refused, so a misplaced argument is not read as a switch."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_choice(name, value, choices):
    """One of ``choices`` (compared with ==, so unhashable values are refused cleanly)."""
    if not any(
        value is choice or (type(value) is type(choice) and value == choice) for choice in choices
    ):
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def check_rng(name, rng):
    """Randomness is explicit: a numpy.random.Generator, never the global state."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"{name}: expected a numpy.random.Generator "
            f"(numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


# ---------------------------------------------------------------- rules for @checked


def real(ndim=None, allow_neg_inf=False, allow_inf=False, nonempty=False):
    """Rule: a real array with no NaN (see ``check_array``)."""
    return lambda name, value, arguments: check_array(
        name, value, ndim=ndim, allow_neg_inf=allow_neg_inf, allow_inf=allow_inf, nonempty=nonempty
    )


def binary():
    """Rule: a real array of 0s and 1s (Bernoulli data)."""
    return lambda name, value, arguments: check_binary(name, check_array(name, value))


def axis_of(array_name):
    """Rule: an axis valid for the argument ``array_name``."""
    return lambda name, value, arguments: check_axis(
        name, value, np.ndim(getval(arguments[array_name]))
    )


def integer(minimum=None, maximum=None):
    """Rule: an integer in [minimum, maximum]."""
    return lambda name, value, arguments: check_int(name, value, minimum, maximum)


def number(low=-np.inf, high=np.inf, low_open=False, high_open=False):
    """Rule: a finite real number in an interval."""
    return lambda name, value, arguments: check_real(name, value, low, high, low_open, high_open)


def positive():
    """Rule: a finite number > 0."""
    return lambda name, value, arguments: check_positive(name, value)


def one_of(*choices):
    """Rule: one of the given values."""
    return lambda name, value, arguments: check_choice(name, value, choices)


def generator():
    """Rule: a numpy.random.Generator."""
    return lambda name, value, arguments: check_rng(name, value)


def flag():
    """Rule: True or False."""
    return lambda name, value, arguments: check_bool(name, value)


def float_dtype():
    """Rule: a floating dtype the package computes in, float64 or float32 (a name, a NumPy type
    or a dtype); returns the np.dtype. Integers would truncate every weight to 0."""

    def rule(name, value, arguments):
        try:
            dtype = np.dtype(value)
        except (TypeError, ValueError):
            dtype = None
        if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"{name}: expected float64 or float32, got {value!r}")
        return dtype

    return rule


def block_span(name, value, arguments):
    """Rule for ``shape`` of a block θ[start:stop]: start, stop integers with
    0 <= start <= stop <= len(θ), and ``shape`` sizes whose product is stop − start."""
    theta = arguments["theta"]
    size = np.shape(getval(theta))[0]
    start = check_int("start", arguments["start"], minimum=0, maximum=size)
    stop = check_int("stop", arguments["stop"], minimum=start, maximum=size)
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name}: expected a tuple of sizes, got {value!r}")
    shape = tuple(check_int(name, s, minimum=0) for s in value)
    if math.prod(shape) != stop - start:
        raise ValueError(
            f"{name}: expected sizes whose product is stop − start = {stop - start}, got {shape}"
        )
    arguments["start"], arguments["stop"] = start, stop
    return shape


def optional(rule):
    """Rule: None, or a value that passes ``rule``."""
    return lambda name, value, arguments: None if value is None else rule(name, value, arguments)


def same_shape_as(other):
    """Rule: an array with exactly the shape of the argument ``other`` (no broadcasting)."""

    def rule(name, value, arguments):
        want, got = np.shape(getval(arguments[other])), np.shape(getval(value))
        if got != want:
            raise ValueError(f"{name}: expected the shape of {other}, {want}, got {got}")
        return value

    return rule


def broadcasting(*names):
    """Rule for the last of ``names``: all the named arrays broadcast together."""

    def rule(name, value, arguments):
        check_broadcast(**{other: arguments[other] for other in names})
        return value

    return rule


def all_of(*rules):
    """Rule: each rule in turn, each on the value the previous one returned."""

    def rule(name, value, arguments):
        for each in rules:
            value = each(name, value, arguments)
        return value

    return rule
