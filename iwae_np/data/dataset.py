"""A data set as training code sees it: train and test arrays plus what the model needs to know.

``train`` accepts any object with these attributes (or a plain array), so the core never imports
this subpackage.
"""

from dataclasses import dataclass

import numpy as np

from ..checks import check_array, check_int, check_real, check_rng


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
        """A fresh Bernoulli draw of the training set from its grey levels (dynamic
        binarization)."""
        if self.probs_train is None:
            raise ValueError(
                f"dataset: expected grey levels to binarize, got none for {self.name!r}"
            )
        check_rng("rng", rng)
        return (rng.random(self.probs_train.shape) < self.probs_train).astype(self.x_train.dtype)


def train_test_split(x, test_fraction=0.2, seed=0):
    """Shuffle the rows of x with ``seed`` and split: (x_train, x_test)."""
    x = check_array("x", x, ndim=2)
    check_real("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    check_int("seed", seed, minimum=0)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    if n_test >= len(x):
        raise ValueError(
            f"test_fraction: expected a fraction that leaves training rows, got {test_fraction} "
            f"of {len(x)} rows"
        )
    return x[order[n_test:]], x[order[:n_test]]
