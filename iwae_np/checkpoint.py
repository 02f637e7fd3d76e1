"""Checkpoints: one ``.npz`` file holding the arrays and a JSON metadata record.

Metadata: a format version, the model's config and layout, the training config, the epoch, the
random generator's state, the optimizer's step count and the history so far. A SHA-256 covers
the arrays *and* the rest of the metadata, so an edited step count or generator state is caught
like a flipped bit. Together they let a resumed run continue bit for bit, and let ``load`` reject
a truncated, corrupted, tampered, non-finite or mismatched file with a ValueError that names the
problem.

Writes are atomic: a temporary file in the same folder, flushed to disk, ``os.replace``-d over
the old checkpoint, then the folder itself is flushed so the rename survives a power cut. A
writer killed mid-write leaves the previous checkpoint intact and a temporary file named after
its process id; the next save in that folder removes temporary files whose writer is gone.
"""

import glob
import hashlib
import json
import os
import re
import tempfile
import zipfile

import numpy as np

from .checks import check_fits, check_output_file

FORMAT_VERSION = 2
_METADATA_KEY = "metadata_json"
_TEMPORARY = re.compile(r"\.checkpoint-(\d+)-[^/]*\.npz$")


def digest(arrays, metadata):
    """SHA-256 of every array (name, dtype, shape, bytes) and of the metadata as canonical JSON."""
    hasher = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        hasher.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        hasher.update(array.tobytes())
    record = {key: value for key, value in metadata.items() if key != "sha256"}
    hasher.update(json.dumps(record, sort_keys=True).encode())
    return hasher.hexdigest()


def _check_finite_arrays(arrays, where):
    for name, array in arrays.items():
        if np.issubdtype(np.asarray(array).dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ValueError(
                f"checkpoint: expected finite values in {name!r}, got NaN or inf {where}"
            )


def _no_constant(name):
    """JSON's non-standard NaN, Infinity and -Infinity: ``save`` never writes them."""
    raise ValueError(f"a non-finite number {name} in the metadata")


def _writer_is_gone(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; or no process can have it
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_orphans(folder):
    """Delete temporary checkpoint files in ``folder`` whose writing process no longer exists
    (left by a writer that was killed). Returns the paths removed."""
    if isinstance(folder, bytes) or not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"folder: expected a folder path, got {type(folder).__name__}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"folder: expected an existing folder, got {folder!r}")
    removed = []
    for candidate in glob.glob(os.path.join(glob.escape(folder), ".checkpoint-*.npz")):
        match = _TEMPORARY.search(candidate)
        # only regular files: a folder or link that merely has such a name is not ours
        if not (match and os.path.isfile(candidate) and not os.path.islink(candidate)):
            continue
        if _writer_is_gone(int(match.group(1))):
            try:
                os.remove(candidate)
                removed.append(candidate)
            except OSError:  # cleaned by another process first, or not ours to remove
                pass
    return removed


def _fsync_folder(folder):
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported here (e.g. Windows): the file itself was flushed
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save(path, model, arrays, metadata):
    """Write ``arrays`` ({name: ndarray}, e.g. theta and the optimizer state) and ``metadata``
    (JSON-ready dict) for ``model`` to ``path``, atomically. Refuses non-finite arrays."""
    path = check_output_file("path", path)
    if not (hasattr(model, "config") and hasattr(model, "layout")):
        raise ValueError(f"model: expected a VAE or TwoLayerVAE, got {type(model).__name__}")
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata: expected a dict, got {type(metadata).__name__}")
    if not isinstance(arrays, dict) or not all(
        isinstance(name, str) and name and name != _METADATA_KEY for name in arrays
    ):
        raise ValueError(
            f"arrays: expected a dict of named arrays (not named {_METADATA_KEY!r}), got "
            f"{type(arrays).__name__ if not isinstance(arrays, dict) else list(arrays)}"
        )
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    _check_arrays_fit(model, arrays, path)
    _check_finite_arrays(arrays, "(not saved)")
    record = dict(
        metadata, format_version=FORMAT_VERSION, model=model.config(), layout=model.layout.to_dict()
    )
    try:  # strict JSON: no NaN or inf, only str keys, only JSON types
        json.dumps(record, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"metadata: expected JSON-ready values, got {error}") from None
    record["sha256"] = digest(arrays, record)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".checkpoint-{os.getpid()}-", suffix=".npz"
    )
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays, **{_METADATA_KEY: np.array(json.dumps(record))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        _fsync_folder(folder)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load(path, model=None):
    """Read a checkpoint -> (arrays dict, metadata dict), verifying it thoroughly.

    model: if given, the checkpoint must have been written for the same configuration and layout.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"checkpoint: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"checkpoint: expected an existing checkpoint file, got {path!r} (no such file)"
        )
    try:
        if not zipfile.is_zipfile(path):  # a bare .npy or anything else is not a checkpoint
            raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as contents:
            sizes = [contents.zip.getinfo(name + ".npy").file_size for name in contents.files]
            check_fits("checkpoint", path, (sum(sizes),), np.uint8)
            arrays = {name: contents[name] for name in contents.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, MemoryError) as error:
        raise ValueError(
            f"checkpoint: expected a readable .npz checkpoint, got {path!r}, "
            f"truncated or corrupt ({type(error).__name__}: {error})"
        ) from None
    if _METADATA_KEY not in arrays:
        raise ValueError(
            f"checkpoint: expected iwae_np metadata in {path!r}, got none "
            f"(not an iwae_np checkpoint)"
        )
    try:
        metadata = json.loads(str(arrays.pop(_METADATA_KEY)), parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as error:
        raise ValueError(
            f"checkpoint: expected JSON metadata in {path!r}, got corrupt metadata ({error})"
        ) from None
    if not isinstance(metadata, dict):
        raise ValueError(
            f"checkpoint: expected a JSON object as metadata in {path!r}, got "
            f"{type(metadata).__name__}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint: expected format version {FORMAT_VERSION}, got "
            f"{metadata.get('format_version')!r} in {path!r}"
        )
    if digest(arrays, metadata) != metadata.get("sha256"):
        raise ValueError(
            f"checkpoint: expected contents matching their SHA-256 in {path!r}, "
            f"got a mismatch (the file is corrupt or was edited)"
        )
    missing = [key for key in ("model", "layout") if key not in metadata]
    if missing or "theta" not in arrays:
        raise ValueError(
            f"checkpoint: expected theta, model and layout in {path!r}, got none of "
            f"{missing + ([] if 'theta' in arrays else ['theta'])}"
        )
    _check_finite_arrays(arrays, f"in {path!r}")
    if model is not None:
        _check_matches(model, metadata, path, arrays)
    return arrays, metadata


def _check_matches(model, metadata, path, arrays=None):
    if metadata["model"] != model.config():
        raise ValueError(
            f"checkpoint: expected a checkpoint of {model!r}, got one of "
            f"{metadata['model']} in {path!r}"
        )
    if metadata["layout"] != model.layout.to_dict():
        raise ValueError(
            f"checkpoint: expected the parameter layout of {model!r}, got a "
            f"different layout in {path!r}"
        )
    if arrays is not None:
        _check_arrays_fit(model, arrays, path)


def _check_arrays_fit(model, arrays, path):
    """θ and the optimizer state must fit the model, not just hash right."""
    for name in ("theta", "adam_m", "adam_v"):
        if name in arrays and (
            arrays[name].shape != (model.layout.size,) or arrays[name].dtype != model.dtype
        ):
            raise ValueError(
                f"checkpoint: expected {name} of shape ({model.layout.size},) and dtype "
                f"{model.dtype.name} in {path!r}, got {arrays[name].shape} {arrays[name].dtype}"
            )
    if ("adam_m" in arrays) != ("adam_v" in arrays):
        raise ValueError(f"checkpoint: expected both Adam moments in {path!r}, got one")


def load_model(path):
    """(model, theta, metadata) from a checkpoint, rebuilding the model from its config."""
    from .models import VAE

    arrays, metadata = load(path)
    try:
        model = VAE.from_config(metadata["model"])  # any registered model class
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint: expected a valid model config in {path!r}, got "
            f"{metadata.get('model')!r} ({error})"
        ) from None
    _check_matches(model, metadata, path, arrays)
    return model, arrays["theta"], metadata
