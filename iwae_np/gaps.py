"""The inference gaps of Cremer et al. (2018), measured with classic VI as the best q.

    log p(x) − ELBO[q_encoder] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_encoder])
                               =  approximation gap   +   amortization gap

q* is the best member of q's family for each point, found by classic VI (``vi.fit_local``)
started at the encoder's λ, so it can only improve on it.
"""

from .checks import check_array, checked, integer, positive
from .evaluate import expected_bound
from .models import THETA, X, one_layer
from .vi import fit_local

# one stochastic layer only: q* is classic VI's q given per point
RULES = dict(
    model=one_layer("the inference gaps (classic VI's q given per point)"),
    theta=THETA,
    x=X,
    steps=integer(minimum=0),
    lr=positive(),
    seed=integer(minimum=0),
    replicates=integer(minimum=1),
)


@checked(**RULES)
def amortization_gap(model, theta, x, *, steps=500, lr=0.05, seed=0, replicates=200):
    """Cremer et al.'s amortization gap, ELBO[q*] − ELBO[q_encoder], per point.

    q* comes from classic VI started at the encoder's λ (so it can only improve on it).
    Returns {"encoder_elbo", "local_elbo", "gap"}, each (n,), and the LocalFit.
    """
    encoder_elbo = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed)
    fit = fit_local(
        model,
        theta,
        x,
        steps=steps,
        lr=lr,
        seed=seed,
        init=model.encode(theta, x),
        eval_replicates=replicates,
    )
    return {
        "encoder_elbo": encoder_elbo,
        "local_elbo": fit.bound,
        "gap": fit.bound - encoder_elbo,
    }, fit


@checked(**RULES)
def inference_gaps(model, theta, x, log_px, *, steps=1000, lr=0.05, seed=0, replicates=200):
    """Split the encoder's shortfall log p(x) − ELBO[q_encoder] into Cremer et al.'s two gaps:

        approximation gap  = log p(x) − ELBO[q*]          (the family of q is too poor)
        amortization gap   = ELBO[q*] − ELBO[q_encoder]   (one shared x → λ is too poor)

    q* is classic VI's best diagonal Gaussian, started at the encoder's λ. log_px: (n,) exact
    log p(x) (closed form or quadrature). Returns a dict of per-point arrays.
    """
    log_px = check_array("log_px", log_px, ndim=1)
    if log_px.shape != (len(x),):
        raise ValueError(
            f"log_px: expected shape ({len(x)},), one value per row of x, got {log_px.shape}"
        )
    gaps, _ = amortization_gap(
        model, theta, x, steps=steps, lr=lr, seed=seed, replicates=replicates
    )
    return {
        "log_px": log_px,
        "local_elbo": gaps["local_elbo"],
        "encoder_elbo": gaps["encoder_elbo"],
        "approximation_gap": log_px - gaps["local_elbo"],
        "amortization_gap": gaps["gap"],
    }
