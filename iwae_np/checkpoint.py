"""Checkpoints: one ``.npz`` file holding the arrays and a JSON metadata record.

Metadata: a format version, the model's config and layout, the training config, the epoch, the
random generator's state, the history so far, and a SHA-256 of the arrays. Together they let a
resumed run continue bit for bit, and let ``load`` reject a truncated, corrupted or mismatched
file with a ValueError that names the problem.

Writes are atomic: a temporary file in the same folder, flushed to disk, then ``os.replace``.
A crash mid-write leaves the previous checkpoint intact.
"""

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_VERSION = 1
_METADATA_KEY = "metadata_json"


def _arrays_sha256(arrays):
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save(path, model, arrays, metadata):
    """Write ``arrays`` ({name: ndarray}, e.g. theta and the optimizer state) and ``metadata``
    (JSON-ready dict) for ``model`` to ``path``, atomically."""
    path = os.fspath(path)
    record = dict(metadata, format_version=FORMAT_VERSION, model=model.config(),
                  layout=model.layout.to_dict(), sha256=_arrays_sha256(arrays))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays, **{_METADATA_KEY: np.array(json.dumps(record))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load(path, model=None):
    """Read a checkpoint -> (arrays dict, metadata dict), verifying it thoroughly.

    model: if given, the checkpoint must have been written for the same configuration and layout.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: expected an existing checkpoint file, got {path!r} "
                         f"(no such file)")
    try:
        with np.load(path, allow_pickle=False) as contents:
            arrays = {name: contents[name] for name in contents.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        raise ValueError(f"checkpoint: expected a readable .npz checkpoint, got {path!r}, "
                         f"truncated or corrupt ({type(error).__name__}: {error})") from None
    if _METADATA_KEY not in arrays:
        raise ValueError(f"checkpoint: expected iwae_np metadata in {path!r}, got none "
                         f"(not an iwae_np checkpoint)")
    try:
        metadata = json.loads(str(arrays.pop(_METADATA_KEY)))
    except json.JSONDecodeError as error:
        raise ValueError(f"checkpoint: expected JSON metadata in {path!r}, got corrupt "
                         f"metadata ({error})") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint: expected format version {FORMAT_VERSION}, got "
                         f"{metadata.get('format_version')!r} in {path!r}")
    if _arrays_sha256(arrays) != metadata.get("sha256"):
        raise ValueError(f"checkpoint: expected arrays matching their SHA-256 in {path!r}, "
                         f"got a mismatch (the file is corrupt)")
    if model is not None:
        _check_matches(model, metadata, path)
    return arrays, metadata


def _check_matches(model, metadata, path):
    if metadata["model"] != model.config():
        raise ValueError(f"checkpoint: expected a checkpoint of {model!r}, got one of "
                         f"{metadata['model']} in {path!r}")
    if metadata["layout"] != model.layout.to_dict():
        raise ValueError(f"checkpoint: expected the parameter layout of {model!r}, got a "
                         f"different layout in {path!r}")


def load_model(path):
    """(model, theta, metadata) from a checkpoint, rebuilding the model from its config."""
    from .models import VAE

    arrays, metadata = load(path)
    try:
        model = VAE.from_config(metadata["model"])  # any registered model class
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"checkpoint: expected a valid model config in {path!r}, got "
                         f"{metadata.get('model')!r} ({error})") from None
    _check_matches(model, metadata, path)
    return model, arrays["theta"], metadata
