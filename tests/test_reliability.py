"""Faults found by an adversarial review, each pinned by a test: data files, checkpoints and a
diverging run. (The property-based contract suite is tests/test_contract.py.)"""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import iwae_np as iw
from iwae_np import checkpoint, train


def _write_idx(path, array, code):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(array.dtype.newbyteorder(">")).tobytes())


@pytest.mark.parametrize(
    ("images", "code", "message"),
    [
        (np.arange(10, dtype=np.uint8), 0x08, "28×28 images"),  # a 1-D label file is not images
        (np.full((2, 28, 28), 300, dtype=np.int16), 0x0B, "pixel values in \\[0, 255\\]"),
        (np.full((2, 28, 28), np.nan, dtype=np.float32), 0x0D, "finite values"),
    ],
)
def test_mnist_refuses_files_that_are_not_28x28_images_of_bytes(tmp_path, images, code, message):
    good = np.zeros((2, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", good, 0x08)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, code)
    with pytest.raises(ValueError, match=f"^path: expected {message}"):
        iw.data.mnist(tmp_path)


@pytest.fixture
def small():
    data = iw.data.bars(n=60, size=4, seed=0)
    model = iw.VAE(data.x_dim, 2, hidden=(4,))
    return data, model, model.init(seed=0, x=data.x_train)


def _rewrite(path, edit):
    """Load a checkpoint's raw contents, let ``edit(arrays, metadata)`` change them, write back
    without fixing the hash (what a hand edit does)."""
    with np.load(path) as contents:
        arrays = {name: contents[name] for name in contents.files}
    metadata = json.loads(str(arrays.pop("metadata_json")))
    edit(arrays, metadata)
    np.savez(path, **arrays, metadata_json=np.array(json.dumps(metadata)))


def test_the_checkpoint_hash_covers_the_metadata(small, tmp_path):
    data, model, theta = small
    path = tmp_path / "m.npz"
    train.train(model, theta, data, epochs=1, checkpoint=path, progress=False)
    _rewrite(path, lambda arrays, metadata: metadata.update(adam_t=metadata["adam_t"] + 1))
    with pytest.raises(ValueError, match="^checkpoint: expected contents matching their SHA"):
        checkpoint.load(path)
    with pytest.raises(ValueError, match="^checkpoint:"):
        train.train(model, theta, data, epochs=2, checkpoint=path, resume=True, progress=False)


def test_non_finite_parameters_are_never_saved_nor_loaded(small, tmp_path):
    data, model, theta = small
    bad = theta.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="^checkpoint: expected finite values in 'theta'"):
        checkpoint.save(tmp_path / "nan.npz", model, {"theta": bad}, {"epoch": 0})
    assert not os.path.exists(tmp_path / "nan.npz")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".checkpoint-")] == []


def test_crafted_metadata_is_refused_with_one_named_error(small, tmp_path):
    data, model, theta = small
    path = tmp_path / "m.npz"
    checkpoint.save(path, model, {"theta": theta}, {"epoch": 1})  # no training state at all
    with pytest.raises(ValueError, match="^checkpoint: expected training state"):
        train.train(model, theta, data, epochs=2, checkpoint=path, resume=True, progress=False)
    with np.load(path) as contents:  # metadata that is a JSON list, not an object
        arrays = {name: contents[name] for name in contents.files}
    arrays["metadata_json"] = np.array(json.dumps([1, 2]))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="^checkpoint: expected a JSON object"):
        checkpoint.load(path)


def test_orphaned_temporary_files_are_removed_at_the_next_save(small, tmp_path):
    data, model, theta = small
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    orphan = tmp_path / f".checkpoint-{dead}-abc123.npz"
    orphan.write_bytes(b"half a checkpoint")
    mine = tmp_path / f".checkpoint-{os.getpid()}-inflight.npz"  # a live writer's: kept
    mine.write_bytes(b"being written")
    checkpoint.save(tmp_path / "m.npz", model, {"theta": theta}, {"epoch": 0})
    assert not orphan.exists() and mine.exists()
    checkpoint.load(tmp_path / "m.npz")


def test_a_run_that_blows_up_stops_before_writing_a_bad_checkpoint(small, tmp_path):
    data, model, theta = small
    path = tmp_path / "m.npz"
    train.train(model, theta, data, epochs=1, checkpoint=path, progress=False)
    before = path.read_bytes()
    with pytest.raises(train.TrainingDiverged) as error:
        train.train(model, theta, data, epochs=3, lr=1e308, checkpoint=path, progress=False)
    assert "not finite" in str(error.value)
    assert path.read_bytes() == before  # the last good checkpoint is untouched
    assert np.all(np.isfinite(error.value.theta))


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "iwae_np", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "--checkpoint", "{tmp}"], 2, "checkpoint: expected a file path, got the folder"),
        (["train", "--checkpoint", ""], 2, "checkpoint: expected a file path, got an empty string"),
        (["train", "--checkpoint", "{tmp}/a_file/m.npz"], 2, "checkpoint: expected a folder"),
        (
            ["train", "--hidden", "100000", "100000", "--checkpoint", "{tmp}/m.npz"],
            3,
            "not enough memory",
        ),
        (["demo", "--out", "{tmp}/a_file"], 2, "out: expected a folder, got the file"),
        (["demo", "--k-eval", "1000000000"], 2, "k_eval: expected at most 100000"),
        (
            ["bench", "--no-torch", "--json", "{tmp}/missing/b.json"],
            2,
            "json: expected an existing folder",
        ),
        (
            ["assignments", "release", "{tmp}/src", "{tmp}/src/out"],
            2,
            "out: expected a folder apart from the source",
        ),
    ],
)
def test_cli_answers_file_and_resource_faults_in_one_line(tmp_path, args, code, message):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "src").mkdir()
    result = _cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "src" / "out").exists()


@pytest.mark.slow
def test_cli_divergence_is_one_line_without_warnings(tmp_path):
    result = _cli(
        "train",
        "--lr",
        "1e308",
        "--epochs",
        "2",
        "--quiet",
        "--checkpoint",
        str(tmp_path / "m.npz"),
    )
    assert result.returncode == 1
    assert "RuntimeWarning" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "not finite" in result.stderr


def _resave_with_hash(path, edit):
    """Edit a checkpoint and recompute its SHA-256, as a determined forger would."""
    with np.load(path) as contents:
        arrays = {name: contents[name] for name in contents.files}
    metadata = json.loads(str(arrays.pop("metadata_json")))
    edit(arrays, metadata)
    metadata["sha256"] = checkpoint.digest(arrays, metadata)
    np.savez(path, **arrays, metadata_json=np.array(json.dumps(metadata)))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a, m: a.update(theta=a["theta"][:-1]), "expected theta of shape"),
        (lambda a, m: a.update(theta=a["theta"].astype(np.float32)), "expected theta of shape"),
        (lambda a, m: a.pop("adam_v"), "expected both Adam moments"),
        (lambda a, m: m.update(adam_t=10**6), "expected an Adam step count"),
        (lambda a, m: m.update(adam_t=0), "expected an Adam step count"),
        (lambda a, m: m.update(adam_t=True), "expected training state"),
        (lambda a, m: a.update(adam_v=-a["adam_v"] - 1), "expected a non-negative Adam"),
        (lambda a, m: m.update(history=[]), "expected a history of 1 epochs"),
        (lambda a, m: m.update(history=[{"epoch": 1}]), "expected history record 1"),
        (lambda a, m: m.update(history=["x"]), "expected history record 1"),
        (lambda a, m: m["history"][0].update(train_bound=10**400), "expected history record 1"),
    ],
)
def test_a_forged_checkpoint_with_a_valid_hash_is_still_refused(small, tmp_path, edit, message):
    data, model, theta = small
    path = tmp_path / "m.npz"
    train.train(model, theta, data, epochs=1, checkpoint=path, progress=False)
    _resave_with_hash(path, edit)
    with pytest.raises(ValueError, match=f"^checkpoint: {message}"):
        train.train(model, theta, data, epochs=2, checkpoint=path, resume=True, progress=False)


@pytest.mark.parametrize("bad", [123, b"/tmp/x.npz", "", "{tmp}", "{tmp}/a_file/m.npz"])
def test_train_checks_its_checkpoint_path_before_training(small, tmp_path, bad):
    data, model, theta = small
    (tmp_path / "a_file").write_text("not a folder")
    path = bad.replace("{tmp}", str(tmp_path)) if isinstance(bad, str) else bad
    with pytest.raises(ValueError, match="^checkpoint: expected"):
        train.train(model, theta, data, epochs=1, checkpoint=path, progress=False)


def test_a_temporary_file_with_an_impossible_pid_is_an_orphan(small, tmp_path):
    data, model, theta = small
    stray = tmp_path / ".checkpoint-99999999999999999999-x.npz"
    stray.write_bytes(b"junk")
    checkpoint.save(tmp_path / "m.npz", model, {"theta": theta}, {"epoch": 0})
    assert not stray.exists()


def test_a_special_file_is_never_a_checkpoint(small, tmp_path):
    data, model, theta = small
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="^checkpoint: expected a regular file path"):
        train.train(model, theta, data, epochs=1, checkpoint=fifo, progress=False)
