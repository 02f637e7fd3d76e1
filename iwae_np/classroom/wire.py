"""The wire between the grader and a worker: length-prefixed frames over pipes, and the one
format the grader accepts from a worker.

The grader sends pickles (the worker trusts the grader). A worker sends only JSON with tagged
plain data: None, booleans, numbers, strings, lists, tuples, dicts with string keys, and NumPy
arrays of numbers (``.npy`` bytes read with ``allow_pickle=False``). Anything else a submission
returns arrives as an ``Opaque`` (its type name and a short text). So nothing a submission sends
can run code in the grader or pass for one of the grader's objects: a forged CheckResult, say,
is just a string.
"""

import base64
import io
import json
import math
import os
import select
import struct
import time

import numpy as np

HEADER = struct.Struct(">Q")
MAX_FRAME = 64 << 20  # 64 MiB: a result larger than this is a mistake (or an attack)
MAX_DEPTH = 32


class WireError(Exception):
    """The other side broke the protocol: a closed pipe, a frame too large, bad data, time up."""

    def __init__(self, reason, timeout=False):
        super().__init__(reason)
        self.reason, self.timeout = reason, timeout


class Opaque:
    """A value from a worker that is not plain data: its type's name and a short description."""

    def __init__(self, kind, text):
        self.kind, self.text = str(kind), str(text)

    def __repr__(self):
        return f"<{self.kind}: {self.text}>"

    __str__ = __repr__


class CallbackRef:
    """Stands, in a request to a worker, for a function of the grader's: calling it in the worker
    sends its arguments back, the grader runs the function and returns the result."""

    def __init__(self, number):
        self.number = number


def send(fd, payload):
    """Write one frame (length, then bytes) to the file descriptor ``fd``."""
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exactly(fd, size, deadline):
    """``size`` bytes from ``fd``, waiting until ``deadline`` (time.monotonic(); None: forever)."""
    chunks, left = [], size
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireError("time limit reached", timeout=True)
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise WireError("time limit reached", timeout=True)
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireError("the worker closed its end (it exited or was killed)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd, deadline=None, limit=MAX_FRAME):
    """One frame's bytes from ``fd``. Raises WireError on a timeout, a closed pipe, or a frame
    larger than ``limit``."""
    (size,) = HEADER.unpack(read_exactly(fd, HEADER.size, deadline))
    if size > limit:
        raise WireError(f"the worker sent {size} bytes, more than the limit of {limit}")
    return read_exactly(fd, size, deadline)


def encode_value(value, depth=0):
    """``value`` as tagged JSON-ready data; anything that is not plain data becomes an Opaque."""
    if depth > MAX_DEPTH:
        return {"$opaque": ["nested", "nested too deeply"]}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, (np.ndarray, np.generic)) and type(value).__module__ == "numpy":
        array = np.asarray(value)
        if array.dtype.kind in "biuf" and array.dtype.fields is None:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            tag = {"$nd": base64.b64encode(buffer.getvalue()).decode("ascii")}
            if isinstance(value, np.generic):
                tag["$scalar"] = True
            return tag
    if type(value) in (list, tuple):
        items = [encode_value(v, depth + 1) for v in value]
        return items if type(value) is list else {"$tuple": items}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"$dict": {k: encode_value(v, depth + 1) for k, v in value.items()}}
    return {"$opaque": [type(value).__name__, describe(value)]}


def describe(value):
    """A short text for an opaque value (its repr, cut; never an exception)."""
    try:
        text = repr(value)
    except BaseException:  # a student's __repr__ can do anything
        text = "(no description)"
    return text if len(text) <= 200 else text[:200] + "…"


def encode(value):
    """The bytes of one message from a worker."""
    return json.dumps(encode_value(value), allow_nan=True).encode("utf-8")


def decode(data):
    """The value of one message from a worker; raises WireError for anything malformed."""
    try:
        raw = json.loads(data.decode("utf-8"))
        return decode_value(raw, 0)
    except WireError:
        raise
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError, KeyError) as error:
        raise WireError(f"the worker sent malformed data ({type(error).__name__})") from None


def decode_value(raw, depth):
    if depth > MAX_DEPTH + 2:
        raise WireError("the worker sent data nested too deeply")
    if raw is None or isinstance(raw, (bool, str, int)):
        return raw
    if isinstance(raw, float):
        return raw if not math.isnan(raw) else float("nan")
    if isinstance(raw, list):
        return [decode_value(v, depth + 1) for v in raw]
    if not isinstance(raw, dict) or len(raw) not in (1, 2):
        raise WireError("the worker sent an untagged object")
    if "$nd" in raw:
        if set(raw) - {"$nd", "$scalar"}:
            raise WireError("the worker sent a malformed array")
        array = np.load(io.BytesIO(base64.b64decode(raw["$nd"], validate=True)), allow_pickle=False)
        if array.dtype.kind not in "biuf" or array.dtype.fields is not None:
            raise WireError("the worker sent an array that is not numbers")
        return array[()] if raw.get("$scalar") else array
    (tag, body) = next(iter(raw.items()))
    if tag == "$tuple" and isinstance(body, list):
        return tuple(decode_value(v, depth + 1) for v in body)
    if tag == "$dict" and isinstance(body, dict):
        return {str(k): decode_value(v, depth + 1) for k, v in body.items()}
    if tag == "$opaque" and isinstance(body, list) and len(body) == 2:
        return Opaque(body[0], body[1])
    raise WireError(f"the worker sent an unknown tag {str(tag)[:20]!r}")
