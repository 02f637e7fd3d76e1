"""Two stochastic layers (Burda et al. 2016, section 5): x → h1 → h2.

    q(h1, h2 | x) = q(h1 | x) q(h2 | h1)             both diagonal Gaussians from MLPs
    p(x, h1, h2)  = p(h2) p(h1 | h2) p(x | h1)        p(h2) = N(0, I), p(h1|h2) Gaussian MLP
    log w = log p(x|h1) + log p(h1|h2) + log p(h2) − log q(h1|x) − log q(h2|h1)

The interface is the VAE's, so every bound, the trainer, evaluation and checkpoints work
unchanged: ε has shape (k, n, h1_dim + h2_dim), its first h1_dim columns draw h1 and the rest h2,
and ``z_dim`` is h1_dim + h2_dim.
"""

import autograd.numpy as np

from .checks import check_int
from .distributions import _normal_logpdf, _reparameterize, _std_normal_logpdf
from .models import MODELS, VAE
from .nets import MLP
from .params import Layout


class TwoLayerVAE(VAE):
    """x_dim → h1_dim → h2_dim. hidden1: the MLPs between x and h1 (decoder: reversed);
    hidden2: the MLPs between h1 and h2. The encoder's blocks are "encoder.*" (q(h1|x)) and
    "encoder.h2.*" (q(h2|h1)); the decoder's "decoder.*" (p(x|h1)) and "decoder.h1.*" (p(h1|h2)),
    so ``layout.mask("encoder.")`` still selects all of q."""

    def __init__(self, x_dim, h1_dim, h2_dim, hidden1=(100, 100), hidden2=(50, 50),
                 likelihood="bernoulli", activation="tanh", dtype="float64"):
        super().__init__(x_dim, h1_dim, hidden=hidden1, likelihood=likelihood,
                         activation=activation, dtype=dtype)
        self.h1_dim, self.h2_dim = self.z_dim, check_int("h2_dim", h2_dim, minimum=1)
        self.hidden2 = tuple(check_int("hidden2", h, minimum=1) for h in hidden2)
        self.encoder_h2 = MLP("encoder.h2", (self.h1_dim, *self.hidden2, 2 * self.h2_dim), activation)
        self.decoder_h1 = MLP("decoder.h1", (self.h2_dim, *self.hidden2[::-1], 2 * self.h1_dim), activation)
        layout = Layout()  # rebuilt: the q blocks first, then the p blocks
        for net in (self.encoder, self.encoder_h2, self.decoder_h1, self.decoder):
            net.register(layout)
        if self.likelihood == "gaussian":
            layout.add("decoder.log_std", (self.x_dim,))
        self.layout = layout
        self.z_dim = self.h1_dim + self.h2_dim  # ε carries both layers

    def config(self):
        return {"class": "TwoLayerVAE", "x_dim": self.x_dim, "h1_dim": self.h1_dim,
                "h2_dim": self.h2_dim, "hidden1": list(self.hidden), "hidden2": list(self.hidden2),
                "likelihood": self.likelihood, "activation": self.activation, "dtype": self.dtype.name}

    def init(self, seed=0, x=None):
        theta = super().init(seed=seed, x=x)
        # as for the first layer: the log σ outputs of q(h2|h1) and p(h1|h2) start at σ = 1
        for net, size in ((self.encoder_h2, self.h2_dim), (self.decoder_h1, self.h1_dim)):
            self.layout.get(theta, f"{net.name}.{net.n_layers - 1}.W")[:, size:] = 0
        return theta

    def encode(self, theta, x):
        """q(h1|x)'s parameters (used for active units). x: (n, x_dim) -> 2 × (n, h1_dim)."""
        h = self.encoder(theta, self.layout, x)
        return h[..., :self.h1_dim], h[..., self.h1_dim:]

    def _split(self, out, size):
        return out[..., :size], out[..., size:]

    def _log_weights(self, theta, x, eps):
        eps1, eps2 = eps[..., :self.h1_dim], eps[..., self.h1_dim:]
        mean1, log_std1 = self.encode(theta, x)  # (n, h1): once per point, broadcast over k
        h1 = _reparameterize(mean1, log_std1, eps1)  # (k, n, h1)
        mean2, log_std2 = self._split(self.encoder_h2(theta, self.layout, h1), self.h2_dim)
        h2 = _reparameterize(mean2, log_std2, eps2)  # (k, n, h2)
        log_q = _normal_logpdf(h1, mean1, log_std1) + _normal_logpdf(h2, mean2, log_std2)
        prior_mean1, prior_log_std1 = self._split(self.decoder_h1(theta, self.layout, h2), self.h1_dim)
        log_p = (_std_normal_logpdf(h2) + _normal_logpdf(h1, prior_mean1, prior_log_std1)
                 + self.log_likelihood(theta, x, h1))
        return log_p - log_q

    def _log_weights_given(self, theta, x, mean, log_std, eps):
        raise ValueError("model: expected a one-layer VAE for a given λ (classic VI), got a TwoLayerVAE")

    def sample(self, theta, rng, n):
        """Ancestral samples: h2 ~ p(h2), h1 ~ p(h1|h2), x ~ p(x|h1) -> (x, (h1, h2))."""
        from .distributions import check_rng

        check_rng(rng)
        theta = self._check_theta(theta)
        h2 = rng.standard_normal((n, self.h2_dim), dtype=self.dtype)
        mean1, log_std1 = self._split(self.decoder_h1(theta, self.layout, h2), self.h1_dim)
        h1 = mean1 + np.exp(log_std1) * rng.standard_normal(mean1.shape, dtype=self.dtype)
        x, _ = super()._sample_x(theta, rng, h1)
        return x, (h1, h2)


MODELS["TwoLayerVAE"] = TwoLayerVAE
