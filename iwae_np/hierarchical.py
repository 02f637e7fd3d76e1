"""Two stochastic layers (Burda et al. 2016, section 5): x → h1 → h2.

    q(h1, h2 | x) = q(h1 | x) q(h2 | h1)             both diagonal Gaussians from MLPs
    p(x, h1, h2)  = p(h2) p(h1 | h2) p(x | h1)        p(h2) = N(0, I), p(h1|h2) Gaussian MLP
    log w = log p(x|h1) + log p(h1|h2) + log p(h2) − log q(h1|x) − log q(h2|h1)

It keeps the model protocol (models.py), so every bound, gradient estimator, the trainer,
evaluation and checkpoints apply: ``layer_dims`` is (h1_dim, h2_dim); ``z_dim`` is h1_dim (what
``encode`` returns and ``decode`` takes); ε and the full latent have ``eps_dim`` = h1_dim + h2_dim
columns (the first h1_dim are h1's, the rest h2's); ``sample_prior`` draws the top layer
h2 ~ p(h2); ``log_joint`` takes the full latent; ``layer_means`` gives both layers' E_q for
active units. A q given per point (``log_weights_given``, ``check_lambda``: classic VI) is defined
for one layer only and is refused with a ValueError.
"""

import autograd.numpy as anp

from .checks import all_of, check_int, check_sizes, checked, flag, generator, integer
from .distributions import normal_logpdf, reparameterize, std_normal_logpdf
from .models import (
    EPS,
    LATENT,
    LOG_P_DEFINED,
    LOG_W_DEFINED,
    MODELS,
    SAMPLED_X_DEFINED,
    SAMPLES,
    THETA,
    VAE,
    X,
)
from .nets import MLP
from .numerics import stop_gradient
from .params import Layout


class TwoLayerVAE(VAE):
    """x_dim → h1_dim → h2_dim. hidden1: the MLPs between x and h1 (decoder: reversed);
    hidden2: the MLPs between h1 and h2. The encoder's blocks are "encoder.*" (q(h1|x)) and
    "encoder.h2.*" (q(h2|h1)); the decoder's "decoder.*" (p(x|h1)) and "decoder.h1.*" (p(h1|h2)),
    so ``layout.mask("encoder.")`` still selects all of q."""

    SIZE_ARGUMENTS = "x_dim, h1_dim, h2_dim, hidden1, hidden2"  # what sets θ's length

    @checked()
    def __init__(
        self,
        x_dim,
        h1_dim,
        h2_dim,
        hidden1=(100, 100),
        hidden2=(50, 50),
        likelihood="bernoulli",
        activation="tanh",
        dtype="float64",
        fast=True,
    ):
        # named as the caller wrote them, not as the VAE's z_dim and hidden
        check_int("h1_dim", h1_dim, minimum=1)
        check_sizes("hidden1", hidden1)
        super().__init__(
            x_dim,
            h1_dim,
            hidden=hidden1,
            likelihood=likelihood,
            activation=activation,
            dtype=dtype,
            fast=fast,
        )
        self.h1_dim, self.h2_dim = self.z_dim, check_int("h2_dim", h2_dim, minimum=1)
        self.hidden2 = check_sizes("hidden2", hidden2)
        self.encoder_h2 = MLP(
            "encoder.h2", (self.h1_dim, *self.hidden2, 2 * self.h2_dim), activation, fast=self.fast
        )
        self.decoder_h1 = MLP(
            "decoder.h1",
            (self.h2_dim, *self.hidden2[::-1], 2 * self.h1_dim),
            activation,
            fast=self.fast,
        )
        layout = Layout()  # rebuilt: the q blocks first, then the p blocks
        for net in (self.encoder, self.encoder_h2, self.decoder_h1, self.decoder):
            net.register(layout)
        if self.likelihood == "gaussian":
            layout.add("decoder.log_std", (self.x_dim,))
        self.layout = layout

    @property
    def layer_dims(self):
        """The stochastic layers' sizes, bottom first: (h1_dim, h2_dim). ε carries both:
        ``eps_dim`` = h1_dim + h2_dim columns."""
        return (self.h1_dim, self.h2_dim)

    def config(self):
        return {
            "class": "TwoLayerVAE",
            "x_dim": self.x_dim,
            "h1_dim": self.h1_dim,
            "h2_dim": self.h2_dim,
            "hidden1": list(self.hidden),
            "hidden2": list(self.hidden2),
            "likelihood": self.likelihood,
            "activation": self.activation,
            "dtype": self.dtype.name,
        }

    def init(self, seed=0, x=None):
        theta = super().init(seed=seed, x=x)
        # as for the first layer: the log σ outputs of q(h2|h1) and p(h1|h2) start at σ = 1
        blocks = self.layout.unflatten(theta)
        for net, size in ((self.encoder_h2, self.h2_dim), (self.decoder_h1, self.h1_dim)):
            blocks[f"{net.name}.{net.n_layers - 1}.W"][:, size:] = 0
        return theta

    def _split(self, out, size):
        return out[..., :size], out[..., size:]

    @checked(z=LATENT)
    def split_layers(self, z):
        """The full latent (..., h1_dim + h2_dim) as [h1 (..., h1_dim), h2 (..., h2_dim)]."""
        return list(self._split(z, self.h1_dim))

    def _q_h2(self, theta, h1):
        """q(h2|h1)'s (mean, log_std), each (..., h2_dim)."""
        return self._split(self.encoder_h2(theta, self.layout, h1), self.h2_dim)

    def _p_h1(self, theta, h2):
        """p(h1|h2)'s (mean, log_std), each (..., h1_dim)."""
        return self._split(self.decoder_h1(theta, self.layout, h2), self.h1_dim)

    def _log_p(self, theta, x, h1, h2):
        """log p(x, h1, h2) = log p(x|h1) + log p(h1|h2) + log p(h2)."""
        return (
            self.log_likelihood(theta, x, h1)
            + normal_logpdf(h1, *self._p_h1(theta, h2))
            + std_normal_logpdf(h2)
        )

    @checked(returns=LOG_W_DEFINED, theta=THETA, x=X, eps=EPS, stop_q=flag())
    def log_weights(self, theta, x, eps, stop_q=False):
        """log w_i for both layers. theta: (P,); x: (n, x_dim); eps: (k, n, h1_dim + h2_dim)
        -> (k, n).

        stop_q: evaluate log q(h1, h2 | x) with q's parameters held constant (STL, DReG), the
        samples still live. q(h2|h1) depends on the sample h1 as well as on its parameters, so it
        is re-evaluated with a constant θ at the live h1: stopping its (mean, log_std) wholesale
        would also drop ∂ log q(h2|h1) / ∂h1, and the estimators would be biased.
        """
        eps1, eps2 = self.split_layers(eps)
        mean1, log_std1 = self.encode(theta, x)  # (n, h1): once per point, broadcast over k
        h1 = reparameterize(mean1, log_std1, eps1)  # (k, n, h1)
        mean2, log_std2 = self._q_h2(theta, h1)
        h2 = reparameterize(mean2, log_std2, eps2)  # (k, n, h2)
        if stop_q:
            mean1, log_std1 = stop_gradient(mean1), stop_gradient(log_std1)  # of x and θ only
            mean2, log_std2 = self._q_h2(stop_gradient(theta), h1)
        log_q = normal_logpdf(h1, mean1, log_std1) + normal_logpdf(h2, mean2, log_std2)
        return self._log_p(theta, x, h1, h2) - log_q

    @checked(theta=THETA, x=X, z=LATENT, returns=LOG_P_DEFINED)
    def log_joint(self, theta, x, z):
        """log p(x, h1, h2). x: (n, x_dim); z: the full latent (k, n, h1_dim + h2_dim), h1 then
        h2 -> (k, n)."""
        h1, h2 = self.split_layers(z)
        return self._log_p(theta, x, h1, h2)

    def log_weights_given(self, theta, x, mean, log_std, eps, stop_q=False):
        """Refused: a q given per point (classic VI's λ) is defined for one layer only."""
        self.check_one_layer("log_weights_given (a q given per point)")

    def check_lambda(self, lam, n, name="lam"):
        """Refused: a q given per point (classic VI's λ) is defined for one layer only."""
        self.check_one_layer(f"{name} (a q given per point)")

    @checked(theta=THETA, x=X)
    def layer_means(self, theta, x):
        """E_q[h1|x] (n, h1_dim), and E_q[h2|h1] at h1 = E_q[h1|x] (n, h2_dim): the plug-in
        mean of the top layer, deterministic, as for active units per layer."""
        mean1, _ = self.encode(theta, x)
        return [mean1, self._q_h2(theta, mean1)[0]]

    @checked(rng=generator(), n=all_of(integer(minimum=1), SAMPLES))
    def sample_prior(self, rng, n):
        """The top layer h2 ~ p(h2) = N(0, I): (n, h2_dim). ``decode`` takes h1, not h2: use
        ``sample`` for the layers in between."""
        return rng.standard_normal((n, self.h2_dim), dtype=self.dtype)

    @checked(
        theta=THETA,
        rng=generator(),
        n=all_of(integer(minimum=1), SAMPLES),
        returns=SAMPLED_X_DEFINED,
    )
    def sample(self, theta, rng, n):
        """Ancestral samples: h2 ~ p(h2), h1 ~ p(h1|h2), x ~ p(x|h1) -> (x (n, x_dim), the full
        latent (n, h1_dim + h2_dim)); ``split_layers`` gives h1 and h2."""
        h2 = self.sample_prior(rng, n)
        mean1, log_std1 = self._p_h1(theta, h2)
        h1 = mean1 + anp.exp(log_std1) * rng.standard_normal(mean1.shape, dtype=self.dtype)
        return self.sample_x(theta, rng, h1), anp.concatenate([h1, h2], axis=-1)


MODELS["TwoLayerVAE"] = TwoLayerVAE
