"""Binary image data: generated bars, scikit-learn's 8×8 digits, and MNIST from local IDX files.

Nothing here downloads anything. Every generator takes a seed and gives the same data for it.
"""

import os

import numpy as np

from ..checks import check_choice, check_fits, check_int, check_real
from .dataset import Dataset, train_test_split
from .idx import find_idx, read_idx


def bars(n=1000, size=8, p=0.25, flip=0.02, seed=0, test_fraction=0.2):
    """Binary size×size images: each picks horizontal or vertical, each bar is on with
    probability p, and each pixel flips with probability ``flip``. -> Dataset (bernoulli)."""
    check_int("n", n, minimum=2)
    check_int("size", size, minimum=2)
    check_fits("n", n, (n, size, size), np.float64, copies=3)
    for name, value in (("p", p), ("flip", flip)):
        check_real(name, value, 0, 1)
    check_int("seed", seed, minimum=0)
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
        raise ValueError(
            "dataset: 'digits' needs scikit-learn, which is not installed "
            "(pip install -e '.[data]')"
        ) from None
    grey = load_digits().data / 16.0
    grey_train, grey_test = train_test_split(grey, test_fraction, seed)
    rng = np.random.default_rng(seed)
    if binarize == "static":
        x_train, x_test, probs = (grey_train > 0.5) * 1.0, (grey_test > 0.5) * 1.0, None
    else:
        x_test = (rng.random(grey_test.shape) < grey_test) * 1.0
        x_train, probs = (rng.random(grey_train.shape) < grey_train) * 1.0, grey_train
    return Dataset("digits", x_train, x_test, "bernoulli", probs_train=probs, image_shape=(8, 8))


def _grey_images(file):
    """An IDX file of 28×28 images with pixel values 0…255 -> grey levels in [0, 1], (n, 784)."""
    images = read_idx(file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.shape[0] < 1:
        raise ValueError(
            f"path: expected 28×28 images (n, 28, 28) in {file!r}, got an array "
            f"of shape {images.shape}"
        )
    images = images.astype(np.float64)
    bad = ~np.isfinite(images) | (images < 0) | (images > 255)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"path: expected pixel values in [0, 255] in {file!r}, got "
            f"{images[index]} at index {index}"
        )
    return images.reshape(-1, 784) / 255.0


def mnist(path, binarize="dynamic", seed=0):
    """MNIST from the four standard IDX files in the folder ``path`` (train-images-idx3-ubyte,
    t10k-images-idx3-ubyte, optionally .gz). Grey levels / 255, binarized as in ``digits``."""
    check_choice("binarize", binarize, ("static", "dynamic"))
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a folder path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path: expected a folder holding the MNIST IDX files, got {path!r}")
    grey_train = _grey_images(find_idx(path, "train-images-idx3-ubyte"))
    grey_test = _grey_images(find_idx(path, "t10k-images-idx3-ubyte"))
    rng = np.random.default_rng(seed)
    x_test = (rng.random(grey_test.shape) < grey_test) * 1.0
    if binarize == "static":
        return Dataset(
            "mnist",
            (grey_train > 0.5) * 1.0,
            (grey_test > 0.5) * 1.0,
            "bernoulli",
            image_shape=(28, 28),
        )
    x_train = (rng.random(grey_train.shape) < grey_train) * 1.0
    return Dataset(
        "mnist", x_train, x_test, "bernoulli", probs_train=grey_train, image_shape=(28, 28)
    )
