"""Generated data sets, the IDX parser (on tiny files written here) and seeded splits."""

import gzip
import struct

import numpy as np
import pytest
import scipy.stats as st

from iwae_np import data as datasets


def test_linear_gaussian_closed_forms_against_brute_force():
    lg = datasets.linear_gaussian(n=4, x_dim=3, z_dim=2, noise_std=0.6, seed=1)
    x = lg.x
    # log p(x) = log ∫ p(x|z) p(z) dz, by brute-force quadrature on a grid
    grid = np.linspace(-7, 7, 501)
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    for i in range(len(x)):
        log_lik = st.norm.logpdf(x[i], loc=z @ lg.W + lg.b, scale=0.6).sum(-1)
        log_joint = log_lik + st.norm.logpdf(z).sum(-1)
        brute = np.log(np.sum(np.exp(log_joint)) * (grid[1] - grid[0]) ** 2)
        assert lg.log_marginal(x[i : i + 1])[0] == pytest.approx(brute, abs=1e-6)
        weights = np.exp(log_joint - log_joint.max())
        weights /= weights.sum()
        mean, cov = lg.posterior(x[i : i + 1])
        np.testing.assert_allclose(mean[0], weights @ z, atol=1e-6)
        centred = z - weights @ z
        np.testing.assert_allclose(cov, (weights[:, None] * centred).T @ centred, atol=1e-6)


def test_linear_gaussian_data_has_the_model_covariance():
    lg = datasets.linear_gaussian(n=40000, x_dim=3, z_dim=2, noise_std=0.5, seed=2)
    np.testing.assert_allclose(np.cov(lg.x.T), lg.marginal_cov, atol=0.06)
    np.testing.assert_allclose(lg.x.mean(0), lg.b, atol=0.03)


def test_same_seed_same_data_and_split():
    a, b = datasets.bars(n=50, seed=3), datasets.bars(n=50, seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, datasets.bars(n=50, seed=4).x_train)
    x = np.arange(20.0).reshape(10, 2)
    train, test = datasets.train_test_split(x, 0.3, seed=0)
    assert len(train) == 7 and len(test) == 3
    assert sorted(np.concatenate([train, test])[:, 0]) == list(x[:, 0])


def test_bars_are_binary_bar_images():
    data = datasets.bars(n=200, size=6, p=0.3, flip=0.0, seed=0)
    images = np.concatenate([data.x_train, data.x_test]).reshape(-1, 6, 6)
    assert set(np.unique(images)) <= {0.0, 1.0}
    for image in images:  # every row constant (horizontal) or every column constant (vertical)
        assert np.all(image == image[:, :1]) or np.all(image == image[:1, :])


def test_digits_binarization():
    pytest.importorskip("sklearn")
    data = datasets.digits(binarize="dynamic", seed=0)
    assert data.x_dim == 64 and set(np.unique(data.x_train)) <= {0.0, 1.0}
    draw1, draw2 = data.binarize(np.random.default_rng(0)), data.binarize(np.random.default_rng(1))
    assert not np.array_equal(draw1, draw2)
    np.testing.assert_allclose(draw1.mean(), data.probs_train.mean(), atol=0.01)
    static = datasets.digits(binarize="static")
    assert static.probs_train is None


def _write_idx(path, array, type_code=0x08, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


def test_idx_parser_round_trips_types_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    _write_idx(tmp_path / "a-idx3-ubyte", images)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "a-idx3-ubyte"), images)
    _write_idx(tmp_path / "b.gz", images, compress=True)
    np.testing.assert_array_equal(datasets.read_idx(str(tmp_path / "b.gz")), images)
    floats = np.linspace(-1, 1, 6).reshape(2, 3).astype(">f4")
    _write_idx(tmp_path / "c", floats, type_code=0x0D)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "c"), floats.astype(np.float32))


def test_idx_parser_rejects_bad_files(tmp_path):
    images = np.zeros((2, 3, 3), dtype=np.uint8)
    _write_idx(tmp_path / "ok", images)
    data = (tmp_path / "ok").read_bytes()
    (tmp_path / "truncated").write_bytes(data[:-2])
    (tmp_path / "magic").write_bytes(b"\x01\x02" + data[2:])
    (tmp_path / "empty").write_bytes(b"")
    for name, phrase in (
        ("truncated", "truncated"),
        ("magic", "magic"),
        ("empty", "empty"),
        ("missing", "no such file"),
    ):
        with pytest.raises(ValueError, match=f"path: .*{phrase}"):
            datasets.read_idx(tmp_path / name)


def test_mnist_loader_on_tiny_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 28, 28)).astype(np.uint8)
    test = rng.integers(0, 256, size=(2, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", train)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test, compress=True)
    data = datasets.mnist(tmp_path, binarize="static")
    np.testing.assert_array_equal(data.x_train, (train.reshape(6, 784) / 255 > 0.5) * 1.0)
    assert data.x_test.shape == (2, 784)
    dynamic = datasets.mnist(tmp_path, binarize="dynamic", seed=1)
    np.testing.assert_allclose(dynamic.probs_train, train.reshape(6, 784) / 255)
    with pytest.raises(ValueError, match="path: expected t10k"):
        (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
        datasets.mnist(tmp_path)
