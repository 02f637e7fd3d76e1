"""The IDX file format that MNIST ships in, read from a path the user gives (never downloaded)."""

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..checks import check_fits

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
            # the header first: the data are read only once their size is known to fit (a
            # small gzip file can claim gigabytes)
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
                raise ValueError(
                    f"path: expected an IDX file (magic 0x00 0x00 type ndim), got "
                    f"{magic.hex() or 'an empty file'} in {path!r}"
                )
            ndim, dtype = magic[3], np.dtype(_IDX_TYPES[magic[2]])
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(
                    f"path: expected a {ndim}-dimensional IDX header, got a truncated file {path!r}"
                )
            shape = struct.unpack(f">{ndim}I", dims)
            expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
            on_disk = os.path.getsize(path) - 4 - 4 * ndim
            if opener is open and on_disk != expected:  # an uncompressed file's size is known
                raise ValueError(
                    f"path: expected {expected} data bytes for shape {shape}, got {on_disk} "
                    f"in {path!r} (truncated or corrupt)"
                )
            check_fits("path", path, (expected,), np.uint8, copies=2)
            data = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as error:  # unreadable, or a corrupt gzip stream
        raise ValueError(f"path: expected a readable IDX file, got {path!r} ({error})") from None
    if len(data) != expected:
        raise ValueError(
            f"path: expected {expected} data bytes for shape {shape}, got "
            f"{'more' if len(data) > expected else len(data)} in {path!r} (truncated or corrupt)"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"path: expected finite values in {path!r}, got NaN or inf")
    return array


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
