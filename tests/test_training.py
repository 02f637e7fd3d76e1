"""Training: determinism, bit-for-bit resume, atomic and verified checkpoints, fault handling."""

import zipfile

import numpy as np
import pytest

from iwae_np import VAE, checkpoint, train
from iwae_np import data as datasets
from iwae_np.optim import Adam, clip_by_norm


@pytest.fixture(scope="module")
def setup():
    data = datasets.bars(n=200, size=4, seed=0)
    model = VAE(data.x_dim, 3, hidden=(8,))
    return data, model, model.init(seed=0, x=data.x_train)


def _run(setup, **kwargs):
    data, model, theta = setup
    options = dict(objective="iwae", k=3, epochs=3, batch_size=16, lr=3e-3, progress=False)
    options.update(kwargs)
    return train.train(model, theta, data, **options)


def test_same_seed_gives_identical_runs_and_training_improves(setup):
    a, b = _run(setup), _run(setup)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert [h["train_bound"] for h in a.history] == [h["train_bound"] for h in b.history]
    assert [h["test_bound"] for h in a.history] == [h["test_bound"] for h in b.history]
    assert not np.array_equal(a.theta, _run(setup, seed=1).theta)
    longer = _run(setup, epochs=15)
    assert longer.history[-1]["test_bound"] > longer.history[0]["test_bound"] + 0.3


def test_resume_continues_bit_for_bit(setup, tmp_path):
    uninterrupted = _run(setup, epochs=4, checkpoint=tmp_path / "full.npz")
    _run(setup, epochs=2, checkpoint=tmp_path / "part.npz")
    resumed = _run(setup, epochs=4, checkpoint=tmp_path / "part.npz", resume=True)
    np.testing.assert_array_equal(resumed.theta, uninterrupted.theta)
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert strip(resumed.history) == strip(uninterrupted.history)
    # dynamic binarization draws from the training stream too: still exact
    data = datasets.Dataset(
        "grey",
        setup[0].x_train,
        setup[0].x_test,
        "bernoulli",
        probs_train=0.2 + 0.6 * setup[0].x_train,
    )
    full = train.train(setup[1], setup[2], data, k=2, epochs=3, progress=False)
    train.train(
        setup[1], setup[2], data, k=2, epochs=1, checkpoint=tmp_path / "g.npz", progress=False
    )
    again = train.train(
        setup[1],
        setup[2],
        data,
        k=2,
        epochs=3,
        checkpoint=tmp_path / "g.npz",
        resume=True,
        progress=False,
    )
    np.testing.assert_array_equal(full.theta, again.theta)


def test_resume_rejects_changed_settings(setup, tmp_path):
    _run(setup, epochs=1, checkpoint=tmp_path / "c.npz")
    with pytest.raises(ValueError, match="checkpoint: expected the same training settings.*k 3"):
        _run(setup, k=4, checkpoint=tmp_path / "c.npz", resume=True)


def test_checkpoint_metadata_round_trip(setup, tmp_path):
    result = _run(setup, epochs=2, checkpoint=tmp_path / "c.npz")
    model, theta, metadata = checkpoint.load_model(tmp_path / "c.npz")
    np.testing.assert_array_equal(theta, result.theta)
    assert metadata["epoch"] == 2 and metadata["format_version"] == checkpoint.FORMAT_VERSION
    assert metadata["model"] == setup[1].config() and len(metadata["sha256"]) == 64
    assert metadata["rng_state"]["bit_generator"] == "PCG64"
    assert metadata["train_config"]["k"] == 3


def test_loading_bad_checkpoints_names_the_problem(setup, tmp_path):
    data, model, _ = setup
    _run(setup, epochs=1, checkpoint=tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    np.savez(tmp_path / "foreign.npz", theta=np.zeros(3))
    cases = {
        "missing.npz": "no such file",
        "truncated.npz": "truncated or corrupt",
        "flipped.npz": "corrupt",
        "foreign.npz": "not an iwae_np checkpoint",
    }
    for name, phrase in cases.items():
        with pytest.raises(ValueError, match=f"checkpoint: .*{phrase}"):
            checkpoint.load(tmp_path / name, model)
    other = VAE(data.x_dim, 4, hidden=(8,))
    with pytest.raises(ValueError, match="checkpoint: expected a checkpoint of VAE.*z_dim"):
        checkpoint.load(tmp_path / "good.npz", other)
    # tampered arrays with intact metadata fail the SHA-256
    with zipfile.ZipFile(tmp_path / "good.npz") as z:
        contents = {n: z.read(n) for n in z.namelist()}
    arrays = dict(np.load(tmp_path / "good.npz"))
    arrays["theta"] = arrays["theta"] + 1e-12
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        checkpoint.load(tmp_path / "tampered.npz", model)
    assert "metadata_json.npy" in contents


def test_a_failed_write_leaves_the_previous_checkpoint_intact(setup, tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    _run(setup, epochs=1, checkpoint=path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        _run(setup, epochs=2, checkpoint=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind


def test_divergence_stops_at_the_step_and_keeps_the_last_good_checkpoint(setup, tmp_path):
    data, model, theta = setup
    path = tmp_path / "c.npz"
    _run(setup, epochs=1, checkpoint=path)
    before = path.read_bytes()
    broken = theta.copy()
    broken[model.layout.slice("decoder.1.b")] = 1e308  # logits overflow: the bound turns non-finite
    with (
        pytest.raises(train.TrainingDiverged) as info,
        np.errstate(over="ignore", invalid="ignore"),
    ):
        train.train(model, broken, data, epochs=2, checkpoint=path, progress=False)
    message = str(info.value)
    assert "epoch 1, step 1" in message and "not finite" in message
    assert "learning rate" in message and "clip" in message and "untouched" in message
    np.testing.assert_array_equal(info.value.theta, broken)
    assert path.read_bytes() == before


def test_gradient_clipping():
    g = np.array([3.0, 4.0])
    np.testing.assert_allclose(clip_by_norm(g, 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(clip_by_norm(g, 10.0), g)


def test_adam_first_step_moves_each_coordinate_by_lr():
    adam = Adam(lr=0.1, eps=0.0)
    new = adam.step(np.zeros(3), np.array([2.0, -0.5, 1e-3]))
    np.testing.assert_allclose(new, [0.1, -0.1, 0.1])  # m̂/√v̂ = sign(g) at t = 1


def test_encoder_only_training_leaves_the_decoder_unchanged(setup):
    data, model, theta = setup
    result = _run(setup, update="encoder")
    decoder = ~model.layout.mask("encoder.")
    np.testing.assert_array_equal(result.theta[decoder], theta[decoder])
    assert not np.array_equal(result.theta[~decoder], theta[~decoder])


def test_float32_training_stays_float32(setup):
    data, _, _ = setup
    model = VAE(data.x_dim, 3, hidden=(8,), dtype="float32")
    result = train.train(model, model.init(0, x=data.x_train), data, k=2, epochs=1, progress=False)
    assert result.theta.dtype == np.float32 and np.isfinite(result.history[0]["test_bound"])


def test_bad_training_arguments(setup):
    data, model, theta = setup
    for kwargs, argument in (
        ({"k": 0}, "k"),
        ({"epochs": -1}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"objective": "kl"}, "objective"),
        ({"update": "decoder"}, "update"),
        ({"batch_size": 0}, "batch_size"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"resume": True}, "checkpoint"),
    ):
        with pytest.raises(ValueError, match=f"^{argument}: expected"):
            train.train(model, theta, data, progress=False, **kwargs)


def test_figure_data_is_deterministic(setup):
    from iwae_np.app import experiments

    data = setup[0]
    runs = [
        experiments.train_family(data, ks=(1, 3), z_dim=2, hidden=(8,), epochs=2, progress=False)
        for _ in range(2)
    ]
    curves = [
        experiments.bound_curves(trained, data.x_test, ks=(1, 4, 16), samples=32)
        for trained in runs
    ]
    assert curves[0] == curves[1]
    for label in runs[0]:
        np.testing.assert_array_equal(runs[0][label][1].theta, runs[1][label][1].theta)
