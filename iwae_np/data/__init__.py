"""Data: generated toys with known answers, small binary image sets, and MNIST from local files.

Nothing here downloads anything; every generator takes a seed and gives the same data for it.

- ``toys``: ``linear_gaussian`` (exact log p(x) and posterior), ``banana`` (curved posterior);
- ``images``: ``bars``, ``digits`` (scikit-learn's 8×8 digits, the ``data`` extra), ``mnist``;
- ``idx``: ``read_idx``, the IDX parser; ``dataset``: ``Dataset`` and ``train_test_split``.
"""

from ..checks import check_choice
from .dataset import Dataset, train_test_split
from .idx import read_idx
from .images import bars, digits, mnist
from .toys import Banana, LinearGaussian, banana, linear_gaussian

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


__all__ = [
    "DATASETS",
    "Banana",
    "Dataset",
    "LinearGaussian",
    "banana",
    "bars",
    "digits",
    "linear_gaussian",
    "load",
    "mnist",
    "read_idx",
    "train_test_split",
]
