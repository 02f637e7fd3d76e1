"""Shared test helpers: a linear-Gaussian model whose answers are known in closed form.

    z ~ N(0, I_dz),   x = z W + b + σ e,   e ~ N(0, I_dx)
    p(x) = N(x; b, WᵀW + σ² I)
    p(z|x) = N(m, Σ),  Σ = (I + W Wᵀ / σ²)⁻¹,  m = (x − b) Wᵀ Σ / σ²

Everything here is computed with numpy/scipy directly, independent of the package's densities.
"""

import numpy as np
import pytest
import scipy.stats as st

import iwae_np as iw


class LinearGaussian:
    def __init__(self, x_dim=3, z_dim=2, noise_std=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(z_dim, x_dim))
        self.b = rng.normal(size=x_dim)
        self.noise_std = noise_std
        self.model = iw.VAE(x_dim, z_dim, hidden=(), likelihood="gaussian")
        self.precision = np.eye(z_dim) + self.W @ self.W.T / noise_std ** 2
        self.cov = np.linalg.inv(self.precision)

    def sample_x(self, n, seed=1):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.W.shape[0]))
        return z @ self.W + self.b + self.noise_std * rng.normal(size=(n, self.W.shape[1]))

    def log_marginal(self, x):
        cov = self.W.T @ self.W + self.noise_std ** 2 * np.eye(self.W.shape[1])
        return st.multivariate_normal(self.b, cov).logpdf(x)

    def posterior_mean(self, x):
        return (x - self.b) @ self.W.T @ self.cov / self.noise_std ** 2

    def theta(self, log_std, mean_shift=0.0):
        """θ with the true decoder and a linear encoder giving the exact posterior mean (+ shift)
        and the constant log_std given (z_dim,)."""
        m, layout = self.model, self.model.layout
        theta = np.zeros(layout.size)
        enc_W = np.zeros((self.W.shape[1], 2 * self.W.shape[0]))
        enc_b = np.zeros(2 * self.W.shape[0])
        A = self.W.T @ self.cov / self.noise_std ** 2  # posterior mean = (x - b) A
        enc_W[:, : m.z_dim] = A
        enc_b[: m.z_dim] = -self.b @ A + mean_shift
        enc_b[m.z_dim:] = log_std
        theta[layout.slice("encoder.0.W")] = enc_W.ravel()
        theta[layout.slice("encoder.0.b")] = enc_b
        theta[layout.slice("decoder.0.W")] = self.W.ravel()
        theta[layout.slice("decoder.0.b")] = self.b
        theta[layout.slice("decoder.log_std")] = np.log(self.noise_std)
        return theta

    def exact_elbo(self, x, log_std, mean_shift=0.0):
        """log p(x) − KL(N(m + shift, diag s²) || N(m, Σ)), all in closed form."""
        s2 = np.exp(2 * np.asarray(log_std)) * np.ones(self.W.shape[0])
        d = self.W.shape[0]
        shift = np.broadcast_to(mean_shift, (d,))
        kl = 0.5 * (np.sum(np.diag(self.precision) * s2) + shift @ self.precision @ shift - d
                    + np.linalg.slogdet(self.cov)[1] - np.sum(np.log(s2)))
        return self.log_marginal(x) - kl


@pytest.fixture
def linear_gaussian():
    return LinearGaussian()


# Property tests: fixed examples (derandomize) so every CI run checks the same cases.
from hypothesis import settings  # noqa: E402

settings.register_profile("iwae_np", derandomize=True, deadline=None, max_examples=60,
                          print_blob=True)
settings.load_profile("iwae_np")


def pytest_terminal_summary(terminalreporter):
    """Print each lesson's run time (CI's log keeps them; the 60 s budget is checked by eye, not
    by a timed test)."""
    from test_lessons import TIMES

    if TIMES:
        terminalreporter.write_sep("-", "lesson run times (s)")
        for name, seconds in sorted(TIMES.items()):
            terminalreporter.write_line(f"{name:<40} {seconds:6.1f}")
