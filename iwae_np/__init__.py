"""iwae_np: variational inference and the Importance Weighted Autoencoder, from scratch in NumPy.

Read the package as a textbook, in this order: numerics -> distributions -> params -> nets ->
models -> bounds -> gradcheck, then vi -> optim -> train -> evaluate -> gaps -> estimators ->
semi_amortized -> hierarchical. ``kernels`` holds the fast forms of a few of these, tested
equal to them.

``import iwae_np`` loads the core only. What surrounds it lives in subpackages, imported on
first use: ``iwae_np.data`` (toys with exact answers, image sets, IDX files), ``iwae_np.app``
(command line, experiments, tables, plots), ``iwae_np.classroom`` (assignment checks, release,
grading) and ``iwae_np.bench`` (speed against PyTorch).
"""

import importlib

from . import checkpoint, estimators, evaluate, gaps, kernels, optim, semi_amortized, train, vi
from .bounds import ciwae_bound, elbo, iwae_bound, miwae_bound, vr_bound
from .distributions import (
    bernoulli_logpmf,
    normal_logpdf,
    reparameterize,
    sample_normal,
    std_normal_logpdf,
)
from .gradcheck import GradcheckReport, StepSweep, check_vjp, gradcheck
from .hierarchical import TwoLayerVAE
from .models import VAE
from .nets import MLP
from .numerics import log_mean_exp, log_sigmoid, logsumexp, sigmoid, softplus
from .params import Layout, block, glorot_uniform, init_theta

__version__ = "0.2.0.dev0"

_SUBPACKAGES = ("data", "app", "classroom", "bench")


def __getattr__(name):
    """``iw.data`` and the other subpackages load on first use: ``import iwae_np`` stays light."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "elbo",
    "iwae_bound",
    "vr_bound",
    "miwae_bound",
    "ciwae_bound",
    "bernoulli_logpmf",
    "normal_logpdf",
    "reparameterize",
    "sample_normal",
    "std_normal_logpdf",
    "GradcheckReport",
    "gradcheck",
    "check_vjp",
    "StepSweep",
    "VAE",
    "TwoLayerVAE",
    "MLP",
    "log_mean_exp",
    "log_sigmoid",
    "logsumexp",
    "sigmoid",
    "softplus",
    "Layout",
    "block",
    "glorot_uniform",
    "init_theta",
    "checkpoint",
    "estimators",
    "evaluate",
    "gaps",
    "kernels",
    "optim",
    "semi_amortized",
    "train",
    "vi",
]
