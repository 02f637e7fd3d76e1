"""The IDX file format that MNIST ships in, read from a path the user gives (never downloaded)."""

import gzip
import math
import os
import struct

import numpy as np

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Parse one IDX file (the format MNIST ships in), optionally gzip-compressed.

    Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32
    per dimension; then the data, big-endian, row-major. -> ndarray of that shape.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path: expected an existing IDX file, got {path!r} (no such file)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"path: expected a readable IDX file, got {path!r} ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(
            f"path: expected an IDX file (magic 0x00 0x00 type ndim), got "
            f"{data[:4].hex() or 'an empty file'} in {path!r}"
        )
    ndim, dtype = data[3], np.dtype(_IDX_TYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"path: expected a {ndim}-dimensional IDX header, got a truncated file {path!r}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
    if len(data) - header != expected:
        raise ValueError(
            f"path: expected {expected} data bytes for shape {shape}, got "
            f"{len(data) - header} in {path!r} (truncated or corrupt)"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def find_idx(directory, stem):
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise ValueError(f"path: expected {stem}[.gz] in {directory!r}, got no such file")
