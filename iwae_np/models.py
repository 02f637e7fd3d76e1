"""The variational autoencoder: encoder q(z|x), decoder p(x|z), prior p(z), and log-weights.

    q(z|x) = N(z; μ_φ(x), diag σ_φ(x)²)          encoder MLP -> (μ, log σ)
    p(z)   = N(z; 0, I)
    p(x|z) = Bern(x; sigmoid(f_θ(z)))            or N(x; f_θ(z), diag σ_x²) ("gaussian")
    log w  = log p(x|z) + log p(z) − log q(z|x)  with z = μ + σ ⊙ ε,  ε ~ N(0, I)

``log_weights`` is the central interface: every bound is a function of log w (k, n) alone, so
the VAE and the IWAE are this same model trained with different bounds (Burda et al. 2016).

The model protocol
------------------
``VAE`` and ``TwoLayerVAE`` (hierarchical.py, x → h1 → h2) keep one contract, so the bounds, the
gradient estimators, the trainer, evaluation and checkpoints take either. A model has one or more
stochastic layers, numbered from the one next to x (layer 0) to the top one. "The full latent"
puts every layer's units side by side in that order, exactly as ε does: for the VAE it is z, for
the TwoLayerVAE (h1, h2).

    layer_dims                 the layers' sizes, bottom first: VAE (z_dim,); TwoLayerVAE
                               (h1_dim, h2_dim)
    z_dim = layer_dims[0]      the layer next to x: what ``encode`` gives and ``decode`` takes
    eps_dim = sum(layer_dims)  columns of ε and of the full latent: one per latent unit
    init(seed, x=None)         -> θ (P,), with ``layout`` naming its blocks; every block of q is
                               under "encoder." (``layout.mask("encoder.")``), all of p elsewhere
    encode(θ, x)               x (n, x_dim) -> q(layer 0 | x) as (mean, log_std), each (n, z_dim)
    decode(θ, z)               layer 0, z (..., z_dim) -> p(x|z)'s logits or mean (..., x_dim)
    log_weights(θ, x, ε, stop_q=False)
                               ε (k, n, eps_dim) -> log w (k, n). stop_q: log q evaluated with
                               q's parameters held constant while the samples stay live (the
                               path derivative of the STL and DReG estimators)
    log_joint(θ, x, z)         the full latent z (k, n, eps_dim) -> log p(x, z) (k, n)
    draw_eps(rng, k, n)        -> ε (k, n, eps_dim) ~ N(0, I), in the model's dtype
    sample_prior(rng, n)       -> the top layer from its prior N(0, I): (n, layer_dims[-1]). For
                               the VAE that is z, so decode(θ, sample_prior(rng, n)) is p(x|z)'s
                               parameter; a TwoLayerVAE's top layer is h2, which decode does not
                               take (``sample`` runs the layers in between)
    sample(θ, rng, n)          ancestral sampling -> (x (n, x_dim), the full latent (n, eps_dim))
    split_layers(z)            the full latent (..., eps_dim) -> [layer 0 (..., layer_dims[0]), …]
    layer_means(θ, x)          -> [E_q of layer l given x, (n, layer_dims[l]) for each layer l]:
                               Burda et al.'s active units, per layer

One layer only: a q given per point instead of the encoder's (``log_weights_given``,
``check_lambda``; so classic VI, the inference gaps, semi-amortized refinement and ``lam=`` in
evaluation). A model with more layers refuses them with a ValueError that names it.
"""

import numpy as np
from autograd.tracer import getval

from . import kernels
from .checks import (
    all_of,
    as_float_array,
    check_array,
    check_binary,
    check_bool,
    check_choice,
    check_fits,
    check_int,
    check_last_dim,
    check_sizes,
    checked,
    finite_result,
    flag,
    generator,
    integer,
    no_nan,
)
from .distributions import bernoulli_logpmf, normal_logpdf, reparameterize, std_normal_logpdf
from .nets import ACTIVATIONS, MLP
from .numerics import sigmoid, stop_gradient
from .params import Layout, init_theta

LIKELIHOODS = ("bernoulli", "gaussian")
MODELS = {}  # class name -> class, for rebuilding a model from a checkpoint's config
DTYPES = ("float64", "float32")


# At the door, log w must be defined: a finite θ whose σ = exp(log σ) overflows, or an ε so large
# that z² overflows, is refused by name rather than returned as NaN.
LOG_W_DEFINED = no_nan("theta, eps", "σ = exp(log σ), z = μ + σ·ε or a square overflowed")


def SAMPLES(name, value, arguments):
    """Rule for a number of draws (k, n): the draws (and the x they decode to) fit in memory."""
    model = _model_of(arguments)
    k = arguments.get("k", 1)
    blame = "k, n" if "k" in arguments else name
    return check_fits(blame, value, (k, value, model.eps_dim + model.x_dim), model.dtype, 2)


LOGITS_FINITE = finite_result("theta, z", "a sum in the decoder overflowed the dtype")
SAMPLED_X_DEFINED = finite_result("theta", "the decoder's output or exp(log σ_x) overflowed")
Q_FINITE = finite_result("theta", "a sum in the encoder overflowed the dtype")
LOG_P_DEFINED = no_nan("theta, z", "the decoder's output, exp(log σ_x) or a square overflowed")


# Rules for @checked functions of a model: the model (the call's ``self`` in a method, else its
# ``model`` argument) checks its own arguments.
def _model_of(arguments):
    model = arguments.get("self", arguments.get("model"))
    if not isinstance(model, VAE):
        raise ValueError(f"model: expected a VAE or TwoLayerVAE, got {type(model).__name__}")
    return model


def THETA(name, value, arguments):
    return _model_of(arguments).check_theta(value)


def X(name, value, arguments):
    return _model_of(arguments).check_x(value, name=name)


def EPS(name, value, arguments):
    return _model_of(arguments).check_eps(value, n=np.shape(getval(arguments["x"]))[0])


def Z(name, value, arguments):
    """Layer 0, the latent ``decode`` takes: (..., z_dim)."""
    return _model_of(arguments).check_z(value, name=name)


def LATENT(name, value, arguments):
    """The full latent, every layer side by side: (..., eps_dim)."""
    return _model_of(arguments).check_latent(value, name=name)


def one_layer(purpose):
    """Rule for a function's ``model``: a model with one stochastic layer, for ``purpose`` (what
    needs a q given per point). Any other model is refused with a ValueError naming it."""
    return lambda name, value, arguments: _model_of(arguments).check_one_layer(purpose)


def LAMBDA(name, value, arguments):
    """One half of λ = (mean, log_std): (n, z_dim) for the n rows of x."""
    model = _model_of(arguments)
    value = check_array(name, value, ndim=2)
    n = np.shape(getval(arguments["x"]))[0]
    if np.shape(getval(value)) != (n, model.z_dim):
        raise ValueError(
            f"{name}: expected shape ({n}, {model.z_dim}), got {np.shape(getval(value))}"
        )
    return _in_dtype(value, model.dtype)


class VAE:
    """Encoder, decoder and prior over one flat parameter vector θ.

    x_dim, z_dim: data and latent sizes; hidden: the encoder's hidden sizes; decoder_hidden: the
    decoder's (default: ``hidden`` reversed); () gives a linear map. likelihood: "bernoulli"
    (x in {0, 1}) or "gaussian" (with a learned per-dimension noise scale ``decoder.log_std``).
    dtype: "float64" or "float32", end to end. fast: run on the kernels tier (default) or, with
    False, on the readable reference tier; both compute the same numbers.

    It keeps the model protocol (see the module's docstring), shared with ``TwoLayerVAE``; its
    one stochastic layer is z, so ``layer_dims`` is (z_dim,) and the full latent is z.
    """

    SIZE_ARGUMENTS = "x_dim, z_dim, hidden, decoder_hidden"  # what sets θ's length

    @checked()
    def __init__(
        self,
        x_dim,
        z_dim,
        hidden=(200, 200),
        likelihood="bernoulli",
        activation="tanh",
        dtype="float64",
        decoder_hidden=None,
        fast=True,
    ):
        self.x_dim = check_int("x_dim", x_dim, minimum=1)
        self.z_dim = check_int("z_dim", z_dim, minimum=1)
        self.hidden = check_sizes("hidden", hidden)
        self.decoder_hidden = (
            self.hidden[::-1]
            if decoder_hidden is None
            else check_sizes("decoder_hidden", decoder_hidden)
        )
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.dtype = np.dtype(check_choice("dtype", _dtype_name(dtype), DTYPES))
        self.fast = check_bool("fast", fast)

        # The encoder's last layer outputs (μ, log σ) side by side: 2·z_dim numbers per point.
        self.encoder = MLP(
            "encoder", (self.x_dim, *self.hidden, 2 * self.z_dim), activation, fast=self.fast
        )
        self.decoder = MLP(
            "decoder", (self.z_dim, *self.decoder_hidden, self.x_dim), activation, fast=self.fast
        )
        self.layout = Layout()
        self.encoder.register(self.layout)
        self.decoder.register(self.layout)
        if self.likelihood == "gaussian":
            self.layout.add("decoder.log_std", (self.x_dim,))

    @property
    def layer_dims(self):
        """The stochastic layers' sizes, bottom (next to x) first: (z_dim,)."""
        return (self.z_dim,)

    @property
    def eps_dim(self):
        """Columns of ε per sample: one standard normal per latent unit of every layer."""
        return sum(self.layer_dims)

    # ------------------------------------------------------------------ configuration

    def config(self):
        """The constructor arguments, JSON-ready (stored in checkpoints)."""
        return {
            "class": "VAE",
            "x_dim": self.x_dim,
            "z_dim": self.z_dim,
            "hidden": list(self.hidden),
            "decoder_hidden": list(self.decoder_hidden),
            "likelihood": self.likelihood,
            "activation": self.activation,
            "dtype": self.dtype.name,
        }

    @staticmethod
    def from_config(config):
        """The model a ``config()`` describes (a VAE or a registered subclass)."""
        if not isinstance(config, dict):
            raise ValueError(f"config: expected a dict, got {type(config).__name__}")
        config = dict(config)
        name = config.pop("class", "VAE")
        if not isinstance(name, str) or name not in MODELS:
            raise ValueError(f"config: expected a model class in {sorted(MODELS)}, got {name!r}")
        try:
            return MODELS[name](**config)
        except TypeError as error:
            raise ValueError(f"config: expected the arguments of {name}, got {error}") from None

    def __repr__(self):
        config = self.config()
        name = config.pop("class")
        return f"{name}({', '.join(f'{key}={value!r}' for key, value in config.items())})"

    def init(self, seed=0, x=None):
        """A fresh θ (1-D, length ``layout.size``): Glorot-uniform weights, zero biases, and
        zero weights into the encoder's log σ outputs (q starts at σ = 1).

        seed: an integer >= 0. x: optional training data (n, x_dim). With it, the decoder's
        output bias starts at the data mean (for Bernoulli: the logit of the mean, clipped to
        [1e-3, 1 − 1e-3]), so the first steps learn structure instead of the average image.
        """
        seed = check_int("seed", seed, minimum=0)
        # θ and its gradient must fit: blame every size argument (the layout is their product)
        check_fits(self.SIZE_ARGUMENTS, self.layout.size, (self.layout.size,), self.dtype, copies=2)
        theta = init_theta(self.layout, np.random.default_rng(seed), self.dtype)
        # The log σ half of the encoder's output layer starts at 0, so every q starts with σ = 1,
        # the prior's scale. σ = exp(·) amplifies a random start exponentially: with Glorot
        # weights on un-centred data, a linear-Gaussian run began at σ ≈ e⁵ and ELBO ≈ −8653
        # (docs/design.md §10).
        out_W = self.layout.unflatten(theta)[f"encoder.{self.encoder.n_layers - 1}.W"]
        out_W[:, out_W.shape[1] // 2 :] = 0  # a view into theta: the columns that give log σ
        if x is not None:
            x = self.check_x(x)
            out_bias = self.layout.slice(f"decoder.{self.decoder.n_layers - 1}.b")
            x_mean = x.mean(axis=0)
            if self.likelihood == "bernoulli":
                p = np.clip(x_mean, 1e-3, 1 - 1e-3)
                theta[out_bias] = np.log(p) - np.log1p(-p)
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    x_std = x.std(axis=0)
                if not (np.isfinite(x_mean).all() and np.isfinite(x_std).all()):
                    raise ValueError(
                        f"x: expected data whose mean and standard deviation are finite in "
                        f"{self.dtype.name}, got values up to {np.abs(x).max():.3g}"
                    )
                theta[out_bias] = x_mean
                theta[self.layout.slice("decoder.log_std")] = np.log(x_std + 1e-3)
        return theta

    # ------------------------------------------------------------------ the model's pieces

    @checked(theta=THETA, x=X, returns=Q_FINITE)
    def encode(self, theta, x):
        """q(z|x)'s parameters. x: (n, x_dim) -> (mean, log_std), each (n, z_dim)."""
        h = self.encoder(theta, self.layout, x)
        return h[..., : self.z_dim], h[..., self.z_dim :]

    @checked(theta=THETA, z=Z, returns=LOGITS_FINITE)
    def decode(self, theta, z):
        """p(x|z)'s parameter: logits (Bernoulli) or mean (Gaussian).
        z: (..., z_dim) -> (..., x_dim)."""
        return self.decoder(theta, self.layout, z)

    @checked(theta=THETA, x=X, z=Z, returns=LOG_P_DEFINED)
    def log_likelihood(self, theta, x, z):
        """log p(x|z), summed over x's dimensions. x: (n, x_dim), z: (k, n, z_dim) -> (k, n)."""
        out = self.decode(theta, z)
        if self.likelihood == "bernoulli":
            return (kernels.bernoulli_logpmf if self.fast else bernoulli_logpmf)(x, out)
        return normal_logpdf(x, out, self.layout.get(theta, "decoder.log_std", fast=self.fast))

    @checked(theta=THETA, x=X, z=Z, returns=LOG_P_DEFINED)
    def log_joint(self, theta, x, z):
        """log p(x, z) = log p(x|z) + log p(z). x: (n, x_dim), z: (k, n, z_dim) -> (k, n)."""
        return self.log_likelihood(theta, x, z) + std_normal_logpdf(z)

    @checked(theta=THETA, x=X, eps=EPS, stop_q=flag(), returns=LOG_W_DEFINED)
    def log_weights(self, theta, x, eps, stop_q=False):
        """Importance log-weights log w_i = log p(x, z_i) − log q(z_i|x), z_i = μ + σ ⊙ ε_i.

        theta: (P,); x: (n, x_dim); eps: (k, n, z_dim) standard normal draws -> log_w: (k, n).
        stop_q: evaluate log q with (μ, σ) held constant, so φ enters only through z_i (the
        path derivative that the STL and DReG estimators use). The stop holds at every order:
        the Hessian of a stop_q objective is the derivative of the STL gradient, not the
        Hessian of the bound.
        """
        plan = self._fused_plan()
        if plan is not None:  # the same numbers from one fused kernel (docs/design.md §19)
            return kernels.log_weights(theta, x, eps, plan, stop_q, self._layered_log_weights)
        return self._layered_log_weights(theta, x, eps, stop_q)

    def _layered_log_weights(self, theta, x, eps, stop_q=False):
        """log w layer by layer: encode, then ``log_weights_given``. The reference tier's path
        (fast=False), and on the kernels tier what the fused kernel falls back on."""
        mean, log_std = self.encode(theta, x)  # (n, z_dim): encode x once, broadcast over k
        return self.log_weights_given(theta, x, mean, log_std, eps, stop_q=stop_q)

    def _fused_plan(self):
        """Where the networks sit in θ, for ``kernels.log_weights`` (made once per pair of
        networks), or None when the layout is not the VAE's own (a subclass that adds blocks)
        or the networks are not ``MLP``s: such a model keeps the layered path."""
        made = self.__dict__.get("_plan")
        if made is not None and made[0] is self.encoder and made[1] is self.decoder:
            return made[2]
        blocks, plan = self.layout.blocks, None

        def layers(net):
            return [
                (blocks[f"{net.name}.{i}.W"], blocks[f"{net.name}.{i}.b"])
                for i in range(net.n_layers)
            ]

        if type(self.encoder) is MLP and type(self.decoder) is MLP and self.fast:
            try:
                plan = kernels.NetworkPlan(
                    layers(self.encoder),
                    layers(self.decoder),
                    self.activation,
                    self.likelihood,
                    blocks.get("decoder.log_std"),
                    self.z_dim,
                    self.layout.size,
                )
            except (KeyError, ValueError):
                plan = None
        self._plan = (self.encoder, self.decoder, plan)
        return plan

    @checked(
        theta=THETA, x=X, mean=LAMBDA, log_std=LAMBDA, eps=EPS, stop_q=flag(), returns=LOG_W_DEFINED
    )
    def log_weights_given(self, theta, x, mean, log_std, eps, stop_q=False):
        """log w_i for a q(z|x) = N(mean, diag exp(log_std)²) you give instead of the encoder's:
        classic VI's per-point λ. theta: (P,); x: (n, x_dim); mean, log_std: (n, z_dim);
        eps: (k, n, z_dim) -> log_w: (k, n)."""
        z = reparameterize(mean, log_std, eps)  # (k, n, z_dim)
        if stop_q:
            mean, log_std = stop_gradient(mean), stop_gradient(log_std)
        return self.log_joint(theta, x, z) - normal_logpdf(z, mean, log_std)

    @checked(theta=THETA, x=X)
    def layer_means(self, theta, x):
        """E_q[z|x] of each stochastic layer, for active units: [(n, z_dim)]."""
        return [self.encode(theta, x)[0]]

    @checked(z=LATENT)
    def split_layers(self, z):
        """The full latent (..., eps_dim) as a list of its layers: [z (..., z_dim)]."""
        return [z]

    # ------------------------------------------------------------------ sampling

    @checked(rng=generator(), k=integer(minimum=1), n=all_of(integer(minimum=1), SAMPLES))
    def draw_eps(self, rng, k, n):
        """ε ~ N(0, I) of shape (k, n, eps_dim) in the model's dtype, from ``rng``."""
        return rng.standard_normal((k, n, self.eps_dim), dtype=self.dtype)

    @checked(rng=generator(), n=all_of(integer(minimum=1), SAMPLES))
    def sample_prior(self, rng, n):
        """The top layer from its prior, here z ~ p(z) = N(0, I): (n, z_dim), the latent that
        ``decode`` takes."""
        return rng.standard_normal((n, self.z_dim), dtype=self.dtype)

    @checked(
        theta=THETA,
        rng=generator(),
        n=all_of(integer(minimum=1), SAMPLES),
        returns=SAMPLED_X_DEFINED,
    )
    def sample(self, theta, rng, n):
        """Ancestral samples z ~ p(z), x ~ p(x|z) -> (x (n, x_dim), z (n, z_dim))."""
        z = self.sample_prior(rng, n)
        return self.sample_x(theta, rng, z), z

    @checked(theta=THETA, rng=generator(), z=Z, returns=SAMPLED_X_DEFINED)
    def sample_x(self, theta, rng, z):
        """x ~ p(x|z) for z: (n, z_dim) -> x (n, x_dim)."""
        out = self.decode(theta, z)
        if self.likelihood == "bernoulli":
            return (rng.random(out.shape, dtype=self.dtype) < sigmoid(out)).astype(self.dtype)
        std = np.exp(self.layout.get(theta, "decoder.log_std", fast=self.fast))
        return out + std * rng.standard_normal(out.shape, dtype=self.dtype)

    # ------------------------------------------------------------------ checks at the door

    def check_theta(self, theta):
        """θ must be 1-D, of this model's length and dtype, and finite."""
        theta = check_array("theta", theta, ndim=1)
        shape, dtype = np.shape(getval(theta)), np.asarray(getval(theta)).dtype
        if shape != (self.layout.size,):
            raise ValueError(
                f"theta: expected shape ({self.layout.size},) for {self!r}, got {shape}"
            )
        if dtype != self.dtype:
            raise ValueError(
                f"theta: expected dtype {self.dtype.name} (the model's dtype), got {dtype}"
            )
        return theta

    def check_x(self, x, name="x"):
        """x must be (n, x_dim) with n >= 1, finite, binary for a Bernoulli likelihood; returned
        in the model's dtype (data follows the model: no upcast)."""
        x = check_array(name, x, ndim=2)
        check_last_dim(name, x, self.x_dim, "the model's x_dim")
        if np.shape(getval(x))[0] < 1:
            raise ValueError(f"{name}: expected at least one row, got shape {np.shape(x)}")
        if self.likelihood == "bernoulli":
            check_binary(name, x)
        return _in_dtype(x, self.dtype)

    def check_z(self, z, name="z"):
        """z must be (..., z_dim) and finite."""
        z = check_array(name, z)
        what = (
            f"the z_dim of {type(self).__name__}: its layer next to x"
            if len(self.layer_dims) > 1
            else "the model's z_dim"
        )
        check_last_dim(name, z, self.z_dim, what)
        return _in_dtype(z, self.dtype)

    def check_latent(self, z, name="z"):
        """The full latent must be (..., eps_dim), every layer side by side, and finite."""
        z = check_array(name, z)
        check_last_dim(
            name,
            z,
            self.eps_dim,
            f"every latent unit of {type(self).__name__}: "
            f"layers of {'+'.join(map(str, self.layer_dims))}",
        )
        return _in_dtype(z, self.dtype)

    def check_one_layer(self, purpose):
        """Refuse ``purpose`` (something that needs a q given per point) unless the model has one
        stochastic layer; returns the model."""
        if len(self.layer_dims) != 1:
            raise ValueError(
                f"model: expected a model with one stochastic layer (a VAE) for "
                f"{purpose}, got a {type(self).__name__} with "
                f"{len(self.layer_dims)} stochastic layers"
            )
        return self

    def check_eps(self, eps, n):
        """ε must be (k, n, eps_dim) with k >= 1, finite."""
        eps = check_array("eps", eps, ndim=3)
        shape = np.shape(getval(eps))
        if shape[0] < 1:
            raise ValueError(f"eps: expected k >= 1 samples along axis 0, got shape {shape}")
        if shape[1:] != (n, self.eps_dim):
            raise ValueError(
                f"eps: expected shape (k, {n}, {self.eps_dim}) to match x's {n} "
                f"rows and the model's eps_dim, got {shape}"
            )
        return _in_dtype(eps, self.dtype)

    def check_lambda(self, lam, n, name="lam"):
        """λ = (mean, log_std) for n points, each (n, z_dim), in the model's dtype."""
        if not isinstance(lam, (tuple, list)) or len(lam) != 2:
            raise ValueError(f"{name}: expected a pair (mean, log_std), got {type(lam).__name__}")
        checked_parts = []
        for part, value in zip(("mean", "log_std"), lam, strict=True):
            value = check_array(f"{name} {part}", value)
            if np.shape(getval(value)) != (n, self.z_dim):
                raise ValueError(
                    f"{name}: expected {part} of shape ({n}, {self.z_dim}), "
                    f"got {np.shape(getval(value))}"
                )
            checked_parts.append(_in_dtype(value, self.dtype))
        return tuple(checked_parts)


def _dtype_name(dtype):
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}") from None


def _in_dtype(value, dtype):
    """A raw array converted to ``dtype``; a value being differentiated passes unchanged."""
    if value is getval(value):
        return as_float_array("value", value).astype(dtype, copy=False)
    return value


MODELS["VAE"] = VAE
