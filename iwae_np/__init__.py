"""iwae_np: variational inference and the Importance Weighted Autoencoder, from scratch in NumPy.

Read the package as a textbook, in this order: numerics -> distributions -> params -> nets ->
models -> bounds -> gradcheck, then vi -> optim -> train -> evaluate -> datasets.
"""

from .bounds import ciwae_bound, elbo, iwae_bound, miwae_bound, vr_bound
from .distributions import bernoulli_logpmf, normal_logpdf, sample_normal, std_normal_logpdf
from .gradcheck import GradcheckReport, gradcheck
from .models import VAE
from .hierarchical import TwoLayerVAE
from .nets import MLP
from .numerics import log_mean_exp, log_sigmoid, logsumexp, sigmoid, softplus
from .params import Layout, block, glorot_uniform, init_theta

# The layers above the core, as submodules: iw.datasets, iw.vi, iw.train, iw.evaluate, ...
# (plots is imported on use: it pulls in matplotlib.pyplot.)
from . import checkpoint, datasets, estimators, evaluate, experiments, optim, train, vi  # noqa: E402, F401

__version__ = "0.1.0"

__all__ = [
    "elbo", "iwae_bound", "vr_bound", "miwae_bound", "ciwae_bound",
    "bernoulli_logpmf", "normal_logpdf", "sample_normal", "std_normal_logpdf",
    "GradcheckReport", "gradcheck",
    "VAE", "TwoLayerVAE", "MLP",
    "log_mean_exp", "log_sigmoid", "logsumexp", "sigmoid", "softplus",
    "Layout", "block", "glorot_uniform", "init_theta",
]
