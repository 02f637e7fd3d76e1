"""Semi-amortized variational inference (Kim et al. 2018): the encoder proposes λ₀, a few
gradient steps on each point's ELBO refine it, and the model is trained on the refined q.

    λ_{t+1} = λ_t + lr · ∇_λ ELBO(x; λ_t, ε_t),   t = 0 … K−1,     objective: ELBO(x; λ_K)

Differentiating through the K steps (second-order terms included) teaches the encoder a starting
point that refines well. Started at the prior and with λ_K held constant, the same loop is
stochastic VI (SVI) without an encoder. ``sa_elbo`` and ``svi`` are objectives for ``train``.
"""

from dataclasses import dataclass

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .bounds import elbo
from .checks import check_int, check_positive, checked, finite_result, flag, no_nan, positive
from .models import THETA, X, one_layer
from .numerics import stop_gradient


def _point_elbos(model, theta, x, lam, eps):
    d = model.z_dim
    return elbo(model.log_weights_given(theta, x, lam[:, :d], lam[:, d:], eps))


def _refine_eps(name, value, arguments):
    """ε for K refinement steps: (K, k, n, z_dim)."""
    model, x = arguments["model"], arguments["x"]
    shape = np.shape(getval(value))
    if len(shape) != 4:
        raise ValueError(f"{name}: expected shape (K, k, n, z_dim), got {shape}")
    for e in value:
        model.check_eps(e, n=np.shape(getval(x))[0])
    return value


def _final_draw(name, value, arguments):
    """ε for K refinement steps and the final ELBO: (K + 1, k, n, z_dim), so K + 1 >= 1."""
    value = _refine_eps(name, value, arguments)
    if np.shape(getval(value))[0] < 1:
        raise ValueError(
            f"{name}: expected shape (K + 1, k, n, z_dim) with a last draw for the final ELBO, "
            f"got {np.shape(getval(value))}"
        )
    return value


# A step that overflows (too large an lr for this θ) leaves inf or NaN in λ_K.
LAMBDA_FINITE = finite_result("lr", "a refinement step overflowed; try a smaller lr")

# What refine and semi_amortized_elbo check at the door.
REFINEMENT_RULES = dict(
    model=one_layer("semi-amortized refinement (a q given per point)"),
    theta=THETA,
    x=X,
    eps=_refine_eps,
    lr=positive(),
    from_encoder=flag(),
)


@checked(returns=LAMBDA_FINITE, **REFINEMENT_RULES)
def refine(model, theta, x, eps, lr=0.1, from_encoder=True):
    """K gradient-ascent steps on each point's ELBO from λ₀ (the encoder's, or the prior's):

        λ_{t+1} = λ_t + lr · ∇_λ ELBO(x; λ_t, ε_t),   t = 0 … K−1

    eps: (K, k, n, z_dim). Differentiable in θ through every step. -> λ_K (n, 2·z_dim)."""
    d = model.z_dim
    if from_encoder:
        mean, log_std = model.encode(theta, x)
        lam = anp.concatenate([mean, log_std], axis=1)
    else:
        lam = np.zeros((len(x), 2 * d), dtype=model.dtype)
    step = autograd.grad(lambda lam, e: anp.sum(_point_elbos(model, theta, x, lam, e)))
    for e in eps:
        lam = lam + lr * step(lam, e)
    return lam


@checked(
    returns=no_nan("lr, theta", "a refinement step or the final ELBO overflowed"),
    **{**REFINEMENT_RULES, "eps": _final_draw},
    through_steps=flag(),
)
def semi_amortized_elbo(model, theta, x, eps, lr=0.1, from_encoder=True, through_steps=True):
    """Semi-amortized VI (Kim et al. 2018): the ELBO at λ_K, K = len(eps) − 1 refinement steps
    (``refine``) from the encoder's λ₀. eps: (K+1, k, n, z_dim); the last draw estimates the
    final ELBO. -> (n,).

    With through_steps=True autograd differentiates through all K steps, so the encoder learns a
    starting point that refines well. from_encoder=False, through_steps=False is plain SVI: λ
    starts at the prior and the model sees λ_K as a constant.
    """
    lam = refine(model, theta, x, eps[:-1], lr, from_encoder)
    if not through_steps:
        lam = stop_gradient(lam)  # a constant for θ's gradient; outer derivatives still see it
    return _point_elbos(model, theta, x, lam, eps[-1])


@dataclass(frozen=True)
class SemiAmortized:
    """A training objective (see ``train.train``): the ELBO after ``steps`` refinement steps of
    size ``lr``. from_encoder, through_steps: as in ``semi_amortized_elbo``."""

    name: str
    steps: int = 5
    lr: float = 0.1
    from_encoder: bool = True
    through_steps: bool = True

    def eps_shape(self, k):
        """Leading shape of the ε a step draws: a fresh (k,) draw per refinement step, plus one."""
        return (self.steps + 1, k)

    def __call__(self, model, theta, x, eps):
        return semi_amortized_elbo(
            model, theta, x, eps, self.lr, self.from_encoder, self.through_steps
        )

    def config(self):
        return {"objective": self.name, "refine_steps": self.steps, "refine_lr": self.lr}


def sa_elbo(steps=5, lr=0.1):
    """The semi-amortized ELBO (SA-VAE): refine from the encoder, differentiate through."""
    return SemiAmortized(
        "sa-elbo", check_int("steps", steps, minimum=0), check_positive("lr", lr), True, True
    )


def svi(steps=5, lr=0.1):
    """Stochastic VI without an encoder: refine from the prior, train the model on λ_K."""
    return SemiAmortized(
        "svi", check_int("steps", steps, minimum=0), check_positive("lr", lr), False, False
    )
