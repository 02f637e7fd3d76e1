"""The inference gaps of Cremer et al. (2018), measured with classic VI as the best q.

    log p(x) − ELBO[q_encoder] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_encoder])
                               =  approximation gap   +   amortization gap

q* is the best member of q's family for each point, found by classic VI (``vi.fit_local``)
started at the encoder's λ, so it can only improve on it. Classic VI runs until every point has
converged (``tol``) or ``steps`` have run; the LocalFit that ``amortization_gap`` returns says
which points converged. A bound or gradient that stops being finite raises
``vi.LocalFitDiverged`` (a ``train.TrainingDiverged``), which keeps the last good λ.
"""

from .checks import check_array, checked, integer, optional, positive
from .evaluate import expected_bound
from .models import THETA, X, one_layer
from .vi import fit_local

# one stochastic layer only: q* is classic VI's q given per point
RULES = dict(
    model=one_layer("the inference gaps (classic VI's q given per point)"),
    theta=THETA,
    x=X,
    steps=integer(minimum=0),
    tol=optional(positive()),
    lr=optional(positive()),
    seed=integer(minimum=0),
    replicates=integer(minimum=1),
)


@checked(**RULES)
def amortization_gap(model, theta, x, *, steps=2000, tol=0.01, lr=None, seed=0, replicates=200):
    """Cremer et al.'s amortization gap, ELBO[q*] − ELBO[q_encoder], per point.

    q* comes from classic VI started at the encoder's λ (so it can only improve on it), run until
    each point has converged to ``tol`` or ``steps`` have run (``vi.fit_local``'s settings).
    x: (n, x_dim). Returns {"encoder_elbo", "local_elbo", "gap"}, each (n,), and the LocalFit
    (its ``converged`` says which points reached q*).
    """
    encoder_elbo = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed)
    fit = fit_local(
        model,
        theta,
        x,
        steps=steps,
        tol=tol,
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
def inference_gaps(
    model, theta, x, log_px, *, steps=2000, tol=0.01, lr=None, seed=0, replicates=200
):
    """Split the encoder's shortfall log p(x) − ELBO[q_encoder] into Cremer et al.'s two gaps:

        approximation gap  = log p(x) − ELBO[q*]          (the family of q is too poor)
        amortization gap   = ELBO[q*] − ELBO[q_encoder]   (one shared x → λ is too poor)

    q* is classic VI's best diagonal Gaussian, started at the encoder's λ and run to ``tol`` (as
    in ``amortization_gap``). log_px: (n,) exact log p(x) (closed form or quadrature). Returns a
    dict of per-point arrays, with "converged" (n,) bool: whether classic VI reached q* there.
    """
    log_px = check_array("log_px", log_px, ndim=1)
    if log_px.shape != (len(x),):
        raise ValueError(
            f"log_px: expected shape ({len(x)},), one value per row of x, got {log_px.shape}"
        )
    gaps, fit = amortization_gap(
        model, theta, x, steps=steps, tol=tol, lr=lr, seed=seed, replicates=replicates
    )
    return {
        "log_px": log_px,
        "local_elbo": gaps["local_elbo"],
        "encoder_elbo": gaps["encoder_elbo"],
        "approximation_gap": log_px - gaps["local_elbo"],
        "amortization_gap": gaps["gap"],
        "converged": fit.converged,
    }
