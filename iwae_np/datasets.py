"""Data: generated toys with known answers, scikit-learn's 8×8 digits, and MNIST from local files.

Nothing here downloads anything. Every generator takes a seed and gives the same data for it.

- ``linear_gaussian``: z ~ N(0, I), x = z W + b + σ e. log p(x) and p(z|x) in closed form.
- ``banana``: a 2-D latent model whose exact posterior is curved (non-Gaussian); log p(x) by
  quadrature on a grid (see evaluate.log_marginal_quadrature).
- ``bars``: binary d×d images of random horizontal or vertical bars.
- ``digits``: scikit-learn's 8×8 digits, binarized (needs the ``data`` extra).
- ``read_idx`` / ``mnist``: MNIST from IDX files at a path you give.
"""

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np
import scipy.stats as st

from .checks import check_array, check_choice, check_int, check_positive
from .models import VAE


@dataclass
class Dataset:
    """Train and test arrays plus what the model needs to know about them.

    x_train: (n_train, d); x_test: (n_test, d); likelihood: "bernoulli" or "gaussian";
    probs_train: for binarized data, the grey levels in [0, 1] that ``binarize`` resamples
    (dynamic binarization, as Burda et al.); None otherwise.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    likelihood: str
    probs_train: np.ndarray = None
    image_shape: tuple = None

    @property
    def x_dim(self):
        return self.x_train.shape[1]

    def binarize(self, rng):
        """A fresh Bernoulli draw of the training set from its grey levels (dynamic binarization)."""
        if self.probs_train is None:
            raise ValueError(f"dataset: expected grey levels to binarize, got none for {self.name!r}")
        return (rng.random(self.probs_train.shape) < self.probs_train).astype(self.x_train.dtype)


def train_test_split(x, test_fraction=0.2, seed=0):
    """Shuffle the rows of x with ``seed`` and split: (x_train, x_test)."""
    check_array("x", x, ndim=2)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    if n_test >= len(x):
        raise ValueError(f"x: expected at least 2 rows to split, got {len(x)}")
    return x[order[n_test:]], x[order[:n_test]]


# ---------------------------------------------------------------- linear-Gaussian


class LinearGaussian:
    """z ~ N(0, I_dz), x = z W + b + σ e with e ~ N(0, I_dx). Everything is known exactly:

        p(x) = N(x; b, WᵀW + σ² I)
        p(z|x) = N(m, Σ),  Σ = (I + W Wᵀ / σ²)⁻¹,  m = (x − b) Wᵀ Σ / σ²

    ``model``/``theta`` hold the true decoder as a linear VAE (hidden=()), so classic VI and
    amortized inference can be run against it; the encoder part of ``theta`` is a fresh init.
    """

    def __init__(self, n, x_dim, z_dim, noise_std, seed):
        check_int("n", n, minimum=1)
        self.noise_std = check_positive("noise_std", noise_std)
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(check_int("z_dim", z_dim, 1), check_int("x_dim", x_dim, 1)))
        self.b = rng.normal(size=x_dim)
        self.x = self.sample(rng, n)
        self.model = VAE(x_dim, z_dim, hidden=(), likelihood="gaussian")
        theta = self.model.init(seed=seed)
        theta[self.model.layout.slice("decoder.0.W")] = self.W.ravel()
        theta[self.model.layout.slice("decoder.0.b")] = self.b
        theta[self.model.layout.slice("decoder.log_std")] = np.log(self.noise_std)
        self.theta = theta

    def sample(self, rng, n):
        z = rng.standard_normal((n, self.W.shape[0]))
        return z @ self.W + self.b + self.noise_std * rng.standard_normal((n, self.W.shape[1]))

    @property
    def marginal_cov(self):
        return self.W.T @ self.W + self.noise_std ** 2 * np.eye(self.W.shape[1])

    def log_marginal(self, x):
        """Exact log p(x). x: (n, x_dim) -> (n,)."""
        return np.atleast_1d(st.multivariate_normal(self.b, self.marginal_cov).logpdf(x))

    def posterior(self, x):
        """Exact p(z|x) = N(mean, cov). x: (n, x_dim) -> (mean (n, z_dim), cov (z_dim, z_dim))."""
        precision = np.eye(self.W.shape[0]) + self.W @ self.W.T / self.noise_std ** 2
        cov = np.linalg.inv(precision)
        return (x - self.b) @ self.W.T @ cov / self.noise_std ** 2, cov

    def best_diagonal(self, x):
        """The diagonal Gaussian closest to p(z|x) in KL(q‖p): mean m, variances 1/diag(Σ⁻¹).

        -> (mean (n, z_dim), log_std (z_dim,)).
        """
        mean, cov = self.posterior(x)
        return mean, -0.5 * np.log(np.diag(np.linalg.inv(cov)))


def linear_gaussian(n=500, x_dim=5, z_dim=2, noise_std=0.5, seed=0):
    """n observations from a random linear-Gaussian model (see ``LinearGaussian``)."""
    return LinearGaussian(n, x_dim, z_dim, noise_std, seed)


# ---------------------------------------------------------------- a banana-shaped posterior


class Banana:
    """A 2-D latent model with a curved posterior, built as a small tanh VAE with set weights:

        x_1 ≈ 0.5 z_1,   x_2 ≈ z_2 + β g(z_1),   g(z_1) = tanh(a z_1 − c) + tanh(−a z_1 − c)

    g is even in z_1 (a bowl that flattens out), so given x_2 the posterior bends along the
    curve z_2 = x_2 − β g(z_1): a banana that no Gaussian fits. The tanh(s·z)/s units are
    nearly linear. Observation noise σ = ``noise_std`` on both coordinates.
    """

    def __init__(self, n, noise_std, seed, bend=2.0):
        self.noise_std = check_positive("noise_std", noise_std)
        self.model = VAE(2, 2, hidden=(4,), likelihood="gaussian")
        layout, s, a, c = self.model.layout, 0.2, 1.5, 1.5
        theta = self.model.init(seed=seed)
        # hidden units: tanh(s z1), tanh(s z2), tanh(a z1 − c), tanh(−a z1 − c)
        W1 = np.array([[s, 0.0, a, -a], [0.0, s, 0.0, 0.0]])
        b1 = np.array([0.0, 0.0, -c, -c])
        W2 = np.array([[0.5 / s, 0.0], [0.0, 1 / s], [0.0, bend], [0.0, bend]])
        theta[layout.slice("decoder.0.W")] = W1.ravel()
        theta[layout.slice("decoder.0.b")] = b1
        theta[layout.slice("decoder.1.W")] = W2.ravel()
        theta[layout.slice("decoder.1.b")] = np.array([0.0, 2 * bend * np.tanh(c)])  # g(0) -> 0
        theta[layout.slice("decoder.log_std")] = np.log(self.noise_std)
        self.theta = theta
        self.x, self.z = self.model.sample(theta, np.random.default_rng(seed), check_int("n", n, 1))


def banana(n=500, noise_std=0.3, seed=0):
    """n observations from the banana model (see ``Banana``); x: (n, 2)."""
    return Banana(n, noise_std, seed)


# ---------------------------------------------------------------- binary images


def bars(n=1000, size=8, p=0.25, flip=0.02, seed=0, test_fraction=0.2):
    """Binary size×size images: each picks horizontal or vertical, each bar is on with
    probability p, and each pixel flips with probability ``flip``. -> Dataset (bernoulli)."""
    check_int("n", n, minimum=2)
    check_int("size", size, minimum=2)
    for name, value in (("p", p), ("flip", flip)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    rng = np.random.default_rng(seed)
    on = rng.random((n, size)) < p  # which bars are on
    images = np.repeat(on[:, :, None], size, axis=2)  # horizontal bars: rows
    vertical = rng.random(n) < 0.5
    images[vertical] = images[vertical].transpose(0, 2, 1)
    images ^= rng.random(images.shape) < flip
    x_train, x_test = train_test_split(images.reshape(n, -1).astype(float), test_fraction, seed)
    return Dataset("bars", x_train, x_test, "bernoulli", image_shape=(size, size))


def digits(binarize="dynamic", test_fraction=0.2, seed=0):
    """scikit-learn's 1797 8×8 digits, grey levels scaled to [0, 1] and binarized.

    binarize: "static" (threshold 0.5, fixed) or "dynamic" (x_train is one Bernoulli draw and
    ``Dataset.binarize(rng)`` gives a fresh one each epoch, as Burda et al.); the test set is
    binarized once with ``seed`` either way. Needs the ``data`` extra (scikit-learn).
    """
    check_choice("binarize", binarize, ("static", "dynamic"))
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("dataset: 'digits' needs scikit-learn, which is not installed "
                         "(pip install -e '.[data]')") from None
    grey = load_digits().data / 16.0
    grey_train, grey_test = train_test_split(grey, test_fraction, seed)
    rng = np.random.default_rng(seed)
    if binarize == "static":
        x_train, x_test, probs = (grey_train > 0.5) * 1.0, (grey_test > 0.5) * 1.0, None
    else:
        x_test = (rng.random(grey_test.shape) < grey_test) * 1.0
        x_train, probs = (rng.random(grey_train.shape) < grey_train) * 1.0, grey_train
    return Dataset("digits", x_train, x_test, "bernoulli", probs_train=probs, image_shape=(8, 8))


# ---------------------------------------------------------------- MNIST from IDX files

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Parse one IDX file (the format MNIST ships in), optionally gzip-compressed.

    Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32
    per dimension; then the data, big-endian, row-major. -> ndarray of that shape.
    """
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
        raise ValueError(f"path: expected an IDX file (magic 0x00 0x00 type ndim), got "
                         f"{data[:4].hex() or 'an empty file'} in {path!r}")
    ndim, dtype = data[3], np.dtype(_IDX_TYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"path: expected a {ndim}-dimensional IDX header, got a truncated file {path!r}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"path: expected {expected} data bytes for shape {shape}, got "
                         f"{len(data) - header} in {path!r} (truncated or corrupt)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise ValueError(f"path: expected {stem}[.gz] in {directory!r}, got no such file")


def mnist(path, binarize="dynamic", seed=0):
    """MNIST from the four standard IDX files in the folder ``path`` (train-images-idx3-ubyte,
    t10k-images-idx3-ubyte, optionally .gz). Grey levels / 255, binarized as in ``digits``."""
    check_choice("binarize", binarize, ("static", "dynamic"))
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path: expected a folder holding the MNIST IDX files, got {path!r}")
    grey_train = read_idx(_find(path, "train-images-idx3-ubyte")).reshape(-1, 784) / 255.0
    grey_test = read_idx(_find(path, "t10k-images-idx3-ubyte")).reshape(-1, 784) / 255.0
    rng = np.random.default_rng(seed)
    x_test = (rng.random(grey_test.shape) < grey_test) * 1.0
    if binarize == "static":
        return Dataset("mnist", (grey_train > 0.5) * 1.0, (grey_test > 0.5) * 1.0, "bernoulli",
                       image_shape=(28, 28))
    x_train = (rng.random(grey_train.shape) < grey_train) * 1.0
    return Dataset("mnist", x_train, x_test, "bernoulli", probs_train=grey_train,
                   image_shape=(28, 28))


DATASETS = ("bars", "digits", "mnist", "banana", "linear")


def load(name, seed=0, mnist_path=None, n=1000):
    """A Dataset by name, as the CLI asks for it."""
    check_choice("dataset", name, DATASETS)
    if name == "bars":
        return bars(n=n, seed=seed)
    if name == "digits":
        return digits(seed=seed)
    if name == "mnist":
        if mnist_path is None:
            raise ValueError("mnist_path: expected a folder with the MNIST IDX files, got none")
        return mnist(mnist_path, seed=seed)
    toy = banana(n=n, seed=seed) if name == "banana" else linear_gaussian(n=n, seed=seed)
    x_train, x_test = train_test_split(toy.x, 0.2, seed)
    return Dataset(name, x_train, x_test, "gaussian")
