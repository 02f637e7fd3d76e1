"""Toy models whose answers are known exactly, so every method can be checked against the truth.

- ``linear_gaussian``: z ~ N(0, I), x = z W + b + σ e. log p(x) and p(z|x) in closed form.
- ``banana``: a 2-D latent model whose exact posterior is curved (non-Gaussian); log p(x) by
  quadrature on a grid (see evaluate.log_marginal_quadrature).

Each toy carries its true decoder as a ``VAE`` (``.model``, ``.theta``), so classic VI, amortized
inference and the gaps can be run against it.
"""

import numpy as np

from ..checks import check_array, check_fits, check_int, check_last_dim, check_real
from ..models import VAE


def check_noise(name, value):
    """An observation noise σ in (0, 1e6]: log σ, σ² and σ⁻² (the exact posterior's precision)
    stay finite, and samples x = f(z) + σ e cannot overflow."""
    value = check_real(name, value, 0.0, 1e6, low_open=True)
    if value < 1e-6:
        raise ValueError(f"{name}: expected a noise standard deviation in [1e-6, 1e6], got {value}")
    return value


class LinearGaussian:
    """z ~ N(0, I_dz), x = z W + b + σ e with e ~ N(0, I_dx). Everything is known exactly:

        p(x) = N(x; b, WᵀW + σ² I)
        p(z|x) = N(m, Σ),  Σ = (I + W Wᵀ / σ²)⁻¹,  m = (x − b) Wᵀ Σ / σ²

    ``model``/``theta`` hold the true decoder as a linear VAE (hidden=()), so classic VI and
    amortized inference can be run against it; the encoder part of ``theta`` is a fresh init.
    """

    def __init__(self, n, x_dim, z_dim, noise_std, seed):
        check_int("n", n, minimum=1)
        self.noise_std = check_noise("noise_std", noise_std)
        sizes = (check_int("z_dim", z_dim, 1), check_int("x_dim", x_dim, 1))
        check_fits("n, x_dim, z_dim", (n, x_dim, z_dim), (n + z_dim + 2, x_dim + z_dim), float, 4)
        rng = np.random.default_rng(check_int("seed", seed, minimum=0))
        self.W = rng.normal(size=sizes)
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
        return self.W.T @ self.W + self.noise_std**2 * np.eye(self.W.shape[1])

    def log_marginal(self, x):
        """Exact log p(x). x: (n, x_dim) -> (n,)."""
        x = self.check_x(x)
        from scipy.stats import multivariate_normal  # imported here: scipy.stats is slow to load

        return np.atleast_1d(multivariate_normal(self.b, self.marginal_cov).logpdf(x))

    def check_x(self, x):
        """x: (n, x_dim), finite."""
        x = check_array("x", x, ndim=2)
        check_last_dim("x", x, self.W.shape[1], "the model's x_dim")
        return x

    def posterior(self, x):
        """Exact p(z|x) = N(mean, cov). x: (n, x_dim) -> (mean (n, z_dim), cov (z_dim, z_dim))."""
        x = self.check_x(x)
        precision = np.eye(self.W.shape[0]) + self.W @ self.W.T / self.noise_std**2
        cov = np.linalg.inv(precision)
        return (x - self.b) @ self.W.T @ cov / self.noise_std**2, cov

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
        self.noise_std = check_noise("noise_std", noise_std)
        check_int("seed", seed, minimum=0)
        bend = check_real("bend", bend, -1e3, 1e3)
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
