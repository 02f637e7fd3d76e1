"""The variational autoencoder: encoder q(z|x), decoder p(x|z), prior p(z), and log-weights.

    q(z|x) = N(z; μ_φ(x), diag σ_φ(x)²)          encoder MLP -> (μ, log σ)
    p(z)   = N(z; 0, I)
    p(x|z) = Bern(x; sigmoid(f_θ(z)))            or N(x; f_θ(z), diag σ_x²) ("gaussian")
    log w  = log p(x|z) + log p(z) − log q(z|x)  with z = μ + σ ⊙ ε,  ε ~ N(0, I)

``log_weights`` is the central interface: every bound is a function of log w (k, n) alone, so
the VAE and the IWAE are this same model trained with different bounds (Burda et al. 2016).
"""

import numpy as onp
from autograd.tracer import getval

from .checks import check_array, check_binary, check_choice, check_int, check_last_dim
from .distributions import (_bernoulli_logpmf, _normal_logpdf, _reparameterize,
                            _std_normal_logpdf, check_rng)
from .nets import ACTIVATIONS, MLP
from .numerics import _sigmoid
from .params import Layout, init_theta

LIKELIHOODS = ("bernoulli", "gaussian")
MODELS = {}  # class name -> class, for rebuilding a model from a checkpoint's config
DTYPES = ("float64", "float32")


class VAE:
    """Encoder, decoder and prior over one flat parameter vector θ.

    x_dim, z_dim: data and latent sizes; hidden: the encoder's hidden sizes; decoder_hidden: the
    decoder's (default: ``hidden`` reversed); () gives a linear map. likelihood: "bernoulli"
    (x in {0, 1}) or "gaussian" (with a learned per-dimension noise scale ``decoder.log_std``).
    """

    def __init__(self, x_dim, z_dim, hidden=(200, 200), likelihood="bernoulli",
                 activation="tanh", dtype="float64", decoder_hidden=None):
        self.x_dim = check_int("x_dim", x_dim, minimum=1)
        self.z_dim = check_int("z_dim", z_dim, minimum=1)
        self.hidden = tuple(check_int("hidden", h, minimum=1) for h in hidden)
        self.decoder_hidden = (self.hidden[::-1] if decoder_hidden is None else
                               tuple(check_int("decoder_hidden", h, minimum=1) for h in decoder_hidden))
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.dtype = onp.dtype(check_choice("dtype", onp.dtype(dtype).name, DTYPES))

        # The encoder's last layer outputs (μ, log σ) side by side: 2·z_dim numbers per point.
        self.encoder = MLP("encoder", (self.x_dim, *self.hidden, 2 * self.z_dim), activation)
        self.decoder = MLP("decoder", (self.z_dim, *self.decoder_hidden, self.x_dim), activation)
        self.layout = Layout()
        self.encoder.register(self.layout)
        self.decoder.register(self.layout)
        if self.likelihood == "gaussian":
            self.layout.add("decoder.log_std", (self.x_dim,))

    # ------------------------------------------------------------------ configuration

    def config(self):
        """The constructor arguments, JSON-ready (stored in checkpoints)."""
        return {"class": "VAE", "x_dim": self.x_dim, "z_dim": self.z_dim, "hidden": list(self.hidden),
                "decoder_hidden": list(self.decoder_hidden), "likelihood": self.likelihood,
                "activation": self.activation, "dtype": self.dtype.name}

    @staticmethod
    def from_config(config):
        """The model a ``config()`` describes (a VAE or a registered subclass)."""
        config = dict(config)
        name = config.pop("class", "VAE")
        if name not in MODELS:
            raise ValueError(f"config: expected a model class in {sorted(MODELS)}, got {name!r}")
        return MODELS[name](**config)

    def __repr__(self):
        config = self.config()
        name = config.pop("class")
        return f"{name}({', '.join(f'{key}={value!r}' for key, value in config.items())})"

    def init(self, seed=0, x=None):
        """A fresh θ (1-D, length ``layout.size``): Glorot-uniform weights, zero biases, and
        zero weights into the encoder's log σ outputs (q starts at σ = 1).

        x: optional training data (n, x_dim). With it, the decoder's output bias starts at the
        data mean (for Bernoulli: the logit of the mean, clipped to [1e-3, 1 − 1e-3]), so the
        first steps learn structure instead of the average image.
        """
        theta = init_theta(self.layout, onp.random.default_rng(seed), self.dtype)
        # The log σ half of the encoder's output layer starts at 0, so every q starts with σ = 1,
        # the prior's scale. σ = exp(·) amplifies a random start exponentially: with Glorot
        # weights on un-centred data, a linear-Gaussian run began at σ ≈ e⁵ and ELBO ≈ −8653.
        out_W = self.layout.get(theta, f"encoder.{self.encoder.n_layers - 1}.W")
        out_W[:, out_W.shape[1] // 2:] = 0  # a view into theta: the columns that give log σ
        if x is not None:
            x = self._check_x(x)
            out_bias = self.layout.slice(f"decoder.{self.decoder.n_layers - 1}.b")
            x_mean = x.mean(axis=0)
            if self.likelihood == "bernoulli":
                p = onp.clip(x_mean, 1e-3, 1 - 1e-3)
                theta[out_bias] = onp.log(p) - onp.log1p(-p)
            else:
                theta[out_bias] = x_mean
                theta[self.layout.slice("decoder.log_std")] = onp.log(x.std(axis=0) + 1e-3)
        return theta

    # ------------------------------------------------------------------ the model's pieces

    def encode(self, theta, x):
        """q(z|x)'s parameters. x: (..., x_dim) -> (mean, log_std), each (..., z_dim)."""
        h = self.encoder(theta, self.layout, x)
        return h[..., : self.z_dim], h[..., self.z_dim:]

    def decode(self, theta, z):
        """p(x|z)'s parameter: logits (Bernoulli) or mean (Gaussian). z: (..., z_dim) -> (..., x_dim)."""
        return self.decoder(theta, self.layout, z)

    def log_likelihood(self, theta, x, z):
        """log p(x|z), summed over x's dimensions. x: (n, x_dim), z: (k, n, z_dim) -> (k, n)."""
        out = self.decode(theta, z)
        if self.likelihood == "bernoulli":
            return _bernoulli_logpmf(x, out)
        return _normal_logpdf(x, out, self.layout.get(theta, "decoder.log_std"))

    def log_joint(self, theta, x, z):
        """log p(x, z) = log p(x|z) + log p(z). x: (n, x_dim), z: (k, n, z_dim) -> (k, n)."""
        return self.log_likelihood(theta, x, z) + _std_normal_logpdf(z)

    def _log_weights_given(self, theta, x, mean, log_std, eps):
        """log w for a given λ = (mean, log_std), each (n, z_dim): classic VI's free λ_i."""
        z = _reparameterize(mean, log_std, eps)  # (k, n, z_dim)
        return self.log_joint(theta, x, z) - _normal_logpdf(z, mean, log_std)

    def _log_weights(self, theta, x, eps):
        """log w = log p(x|z) + log p(z) − log q(z|x) for checked inputs; see ``log_weights``."""
        mean, log_std = self.encode(theta, x)  # (n, z_dim): encode x once, broadcast over k
        return self._log_weights_given(theta, x, mean, log_std, eps)

    def log_weights(self, theta, x, eps):
        """Importance log-weights log w_i = log p(x, z_i) − log q(z_i|x), z_i = μ + σ ⊙ ε_i.

        theta: (P,); x: (n, x_dim); eps: (k, n, z_dim) standard normal draws -> log_w: (k, n).
        """
        theta = self._check_theta(theta)
        x = self._check_x(x)
        eps = self._check_eps(eps, n=x.shape[0])
        return self._log_weights(theta, x, eps)

    def log_weights_given(self, theta, x, mean, log_std, eps):
        """log w_i for a q(z|x) = N(mean, diag exp(log_std)²) you give instead of the encoder's:
        classic VI's per-point λ. theta: (P,); x: (n, x_dim); mean, log_std: (n, z_dim);
        eps: (k, n, z_dim) -> log_w: (k, n)."""
        theta = self._check_theta(theta)
        x = self._check_x(x)
        eps = self._check_eps(eps, n=x.shape[0])
        check_array("mean", mean)
        check_array("log_std", log_std)
        for name, value in (("mean", mean), ("log_std", log_std)):
            if onp.shape(value) != (x.shape[0], self.z_dim):
                raise ValueError(f"{name}: expected shape ({x.shape[0]}, {self.z_dim}), "
                                 f"got {onp.shape(value)}")
        return self._log_weights_given(theta, x, mean, log_std, eps)

    # ------------------------------------------------------------------ sampling

    def draw_eps(self, rng, k, n):
        """ε ~ N(0, I) of shape (k, n, z_dim) in the model's dtype, from ``rng``."""
        check_rng(rng)
        check_int("k", k, minimum=1)
        check_int("n", n, minimum=1)
        return rng.standard_normal((k, n, self.z_dim), dtype=self.dtype)

    def sample_prior(self, rng, n):
        """z ~ p(z) = N(0, I): (n, z_dim)."""
        check_rng(rng)
        check_int("n", n, minimum=1)
        return rng.standard_normal((n, self.z_dim), dtype=self.dtype)

    def sample(self, theta, rng, n):
        """Ancestral samples z ~ p(z), x ~ p(x|z) -> (x (n, x_dim), z (n, z_dim))."""
        theta = self._check_theta(theta)
        return self._sample_x(theta, rng, self.sample_prior(rng, n))

    def _sample_x(self, theta, rng, z):
        """x ~ p(x|z) for z: (n, z_dim) -> (x, z)."""
        out = self.decode(theta, z)
        if self.likelihood == "bernoulli":
            x = (rng.random(out.shape, dtype=self.dtype) < _sigmoid(out)).astype(self.dtype)
        else:
            std = onp.exp(self.layout.get(theta, "decoder.log_std"))
            x = out + std * rng.standard_normal(out.shape, dtype=self.dtype)
        return x, z

    # ------------------------------------------------------------------ checks at the door

    def _check_theta(self, theta):
        check_array("theta", theta, ndim=1)
        shape, dtype = onp.shape(theta), _dtype_of(theta)
        if shape != (self.layout.size,):
            raise ValueError(f"theta: expected shape ({self.layout.size},) for {self!r}, "
                             f"got {shape}")
        if dtype != self.dtype:
            raise ValueError(f"theta: expected dtype {self.dtype.name} (the model's dtype), "
                             f"got {dtype}")
        return theta

    def _check_x(self, x):
        x = onp.asarray(x)
        check_array("x", x, ndim=2)
        check_last_dim("x", x, self.x_dim, "the model's x_dim")
        if x.shape[0] < 1:
            raise ValueError(f"x: expected at least one row, got shape {x.shape}")
        if self.likelihood == "bernoulli":
            check_binary("x", x)
        return x.astype(self.dtype, copy=False)  # data follows the model's dtype: no upcast

    def _check_lambda(self, lam, n, name="lam"):
        """λ = (mean, log_std) for n points, each (n, z_dim), in the model's dtype."""
        if not isinstance(lam, (tuple, list)) or len(lam) != 2:
            raise ValueError(f"{name}: expected a pair (mean, log_std), got {type(lam).__name__}")
        checked = []
        for part, value in zip(("mean", "log_std"), lam):
            value = onp.asarray(getval(value))
            check_array(f"{name} {part}", value)
            if value.shape != (n, self.z_dim):
                raise ValueError(f"{name}: expected {part} of shape ({n}, {self.z_dim}), "
                                 f"got {value.shape}")
            checked.append(value.astype(self.dtype, copy=False))
        return tuple(checked)

    def _check_eps(self, eps, n):
        eps = onp.asarray(eps)
        check_array("eps", eps, ndim=3)
        if eps.shape[0] < 1:
            raise ValueError(f"eps: expected k >= 1 samples along axis 0, got shape {eps.shape}")
        if eps.shape[1:] != (n, self.z_dim):
            raise ValueError(f"eps: expected shape (k, {n}, {self.z_dim}) to match x's {n} rows "
                             f"and the model's z_dim, got {eps.shape}")
        return eps.astype(self.dtype, copy=False)


def _dtype_of(array):
    return onp.asarray(getval(array)).dtype


MODELS["VAE"] = VAE
