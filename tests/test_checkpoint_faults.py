"""Kill a training run with SIGKILL while it writes checkpoints, over and over.

A trainer (``iwae_np.train.train``, a tiny model, one batch per epoch, a checkpoint after every
epoch) runs in a subprocess that resumes from the checkpoint each time it is started. Most kills
are timed to land inside a save: the test watches the folder and sends SIGKILL the moment the
writer's temporary file appears; the others land at a random moment. After every kill:

- the checkpoint on disk, if there is one, loads and verifies (``checkpoint.load`` and
  ``load_model``), its θ is finite, and its epoch never goes back;
- once a checkpoint has been written, there always is one (a kill never loses it).

At the end one more save runs in that folder (the trainer, resumed for one epoch): afterwards no
``.checkpoint-*.npz`` temporary file is left, since a save removes those of dead writers.
"""

import glob
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from iwae_np import checkpoint as ckpt

pytestmark = pytest.mark.slow

KILLS = 30
TRAINER = """
import os, sys
import numpy as np
from iwae_np import VAE
from iwae_np.train import train
path, epochs = sys.argv[1], int(sys.argv[2])
model = VAE(6, 2, hidden=(4,))
x = (np.random.default_rng(0).random((8, 6)) < 0.5).astype(float)
train(model, model.init(0, x), x, k=1, epochs=epochs, batch_size=8, checkpoint=path,
      resume=os.path.exists(path), progress=False)
"""


def start_trainer(path, epochs=10**6):
    return subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(path), str(epochs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def temporary_files(folder, pid=None):
    pattern = f".checkpoint-{pid if pid is not None else '*'}-*.npz"
    return glob.glob(os.path.join(glob.escape(str(folder)), pattern))


def kill_during_a_save(process, folder, rng, timeout=5.0):
    """SIGKILL ``process`` inside its n-th checkpoint save (n = 1 to 4 at random): the moment its
    n-th temporary checkpoint file appears. If that does not happen within ``timeout`` seconds,
    at once. Returns True if the kill was aimed at a save."""
    deadline = time.monotonic() + timeout
    wanted, seen = rng.randint(1, 4), set()
    while time.monotonic() < deadline and process.poll() is None:
        seen.update(temporary_files(folder, process.pid))
        if len(seen) >= wanted:
            break
        time.sleep(rng.uniform(0, 0.0005))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return len(seen) >= wanted


def kill_at_random(process, rng):
    """SIGKILL ``process`` at a random moment (from start-up to a few epochs in)."""
    time.sleep(rng.uniform(0.3, 1.5))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def verify(path, last_epoch):
    """The checkpoint loads, θ is finite, and the epoch did not go back; returns the epoch."""
    arrays, metadata = ckpt.load(path)
    model, theta, _ = ckpt.load_model(path)
    assert theta.shape == (model.layout.size,) and np.isfinite(theta).all()
    assert set(arrays) >= {"theta", "adam_m", "adam_v"}
    assert metadata["epoch"] >= last_epoch, (metadata["epoch"], last_epoch)
    assert len(metadata["history"]) == metadata["epoch"]
    return metadata["epoch"]


def test_sigkill_during_saves_never_corrupts_the_checkpoint(tmp_path, capsys):
    started = time.monotonic()
    rng = random.Random(20261121)
    path = tmp_path / "run" / "model.npz"
    folder = path.parent
    folder.mkdir()
    kills = aimed = intact = before_first = orphaned_kills = 0
    epoch = 0
    ever_written = False
    while kills < KILLS or not temporary_files(folder):  # end with an orphan to clean up
        assert kills < KILLS + 20, "no kill left a temporary file behind"
        process = start_trainer(path)
        if kills % 4 == 3:
            kill_at_random(process, rng)
        else:
            aimed += kill_during_a_save(process, folder, rng)
        kills += 1
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        process.stderr.close()
        orphaned_kills += bool(temporary_files(folder, process.pid))
        if path.exists():
            epoch = verify(path, epoch)
            intact += 1
            ever_written = True
        else:
            assert not ever_written, f"kill {kills} lost the checkpoint"
            before_first += 1
    left_before = len(temporary_files(folder))

    # one more save in that folder: the trainer, resumed for one more epoch, finishing normally
    process = start_trainer(path, epochs=epoch + 1)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert verify(path, epoch + 1) == epoch + 1
    left_after = temporary_files(folder)
    assert not left_after, left_after

    with capsys.disabled():
        print(
            f"\ncheckpoint kill loop: {kills} SIGKILLs ({aimed} aimed at a save, "
            f"{orphaned_kills} left a temporary file), {intact} intact checkpoints after a kill, "
            f"{before_first} before the first save; last epoch {epoch}; temporary files "
            f"{left_before} before the cleanup save, {len(left_after)} after; "
            f"{time.monotonic() - started:.1f} s"
        )
    assert intact > KILLS // 2  # most kills found a checkpoint to verify
