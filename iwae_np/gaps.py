"""The inference gaps of Cremer et al. (2018), measured with classic VI as the best q.

    log p(x) − ELBO[q_encoder] = (log p(x) − ELBO[q*]) + (ELBO[q*] − ELBO[q_encoder])
                               =  approximation gap   +   amortization gap

q* is the best member of q's family for each point, found by classic VI (``vi.fit_local``)
started at the encoder's λ. Its stochastic steps usually improve on it. A point can still show a
small negative gap: either the steps made its q worse, or Monte Carlo noise (the two ELBOs are
estimated from the same draws, which cancels most of their noise, not all of it; compare the
gap with its standard error, or with a quadrature gap where the latent is small). Classic VI
runs until every point has converged (``tol``) or ``steps`` have run; the LocalFit that
``amortization_gap`` returns says which points converged. A bound or gradient that stops being
finite raises ``vi.LocalFitDiverged`` (a ``train.TrainingDiverged``), which keeps the last
good λ.

For a latent of at most 3 units, ``best_diagonal_quadrature`` finds q* without Monte Carlo
noise: Newton's method on the ELBO computed by Gauss–Hermite quadrature
(``evaluate.elbo_quadrature``), so gaps of a few hundredths of a nat can be compared. And
``break_even_n`` gives amortization's price in compute rather than in the bound: how many
points it takes before training an encoder has paid for itself.
"""

import autograd
import autograd.numpy as anp
import numpy as np

from .checks import all_of, broadcasting, check_array, checked, integer, optional, positive
from .evaluate import elbo_quadrature, expected_bound, quadrature_order
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

    q* comes from classic VI started at the encoder's λ, run until each point has converged to
    ``tol`` or ``steps`` have run (``vi.fit_local``'s settings). Both ELBOs are then estimated
    from the same ``replicates`` draws ε per point (common random numbers, as in
    ``amortization_gap_given``), so their noise largely cancels in the gap. Classic VI's
    stochastic steps usually improve on the start, but need not, and the shared draws cancel
    most of the estimates' noise, not all of it: a small negative gap is either of the two.
    x: (n, x_dim). Returns {"encoder_elbo", "local_elbo", "gap"}, each (n,), and the LocalFit
    (its ``converged`` says which points reached q*).
    """
    fit = fit_local(
        model,
        theta,
        x,
        steps=steps,
        tol=tol,
        lr=lr,
        seed=seed,
        init=model.encode(theta, x),
        eval_replicates=1,
    )
    shared = {"replicates": replicates, "seed": seed}
    encoder_elbo = expected_bound(model, theta, x, "elbo", 1, **shared)
    lam = (fit.mean, fit.log_std)
    local_elbo = expected_bound(model, theta, x, "elbo", 1, lam=lam, **shared)
    return {
        "encoder_elbo": encoder_elbo,
        "local_elbo": local_elbo,
        "gap": local_elbo - encoder_elbo,
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


@checked(
    model=one_layer("the amortization gap (classic VI's q given per point)"),
    theta=THETA,
    x=X,
    replicates=integer(minimum=1),
    seed=integer(minimum=0),
)
def amortization_gap_given(model, theta, x, fit, replicates=500, seed=0):
    """The amortization gap ELBO[q*] − ELBO[q_encoder] per point, for a q* you give (e.g. classic
    VI's result), both ELBOs estimated from the same draws ε (common random numbers), so that
    much of their noise cancels in the difference:

        gap_i = (1/R) Σ_r [log w(x_i, μ*_i + σ*_i ⊙ ε_ri) − log w(x_i, μ_i + σ_i ⊙ ε_ri)],
        ε_ri ~ N(0, I),  r = 1 … R,  log w(x, z) = log p(x, z) − log q(z|x) under each q,

    with (μ_i, σ_i) the encoder's output for x_i and (μ*_i, σ*_i) = q*'s.
    fit: q*, a LocalFit from ``vi.fit_local`` (its ``mean`` and ``log_std``) or a pair
    (mean, log_std), each (n, z_dim). x: (n, x_dim). replicates: R. seed: for ε. -> (n,).
    """
    lam = (fit.mean, fit.log_std) if hasattr(fit, "mean") and hasattr(fit, "log_std") else fit
    lam = model.check_lambda(lam, len(x), name="fit")
    encoder = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed)
    given = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed, lam=lam)
    return given - encoder


# Newton on the quadrature ELBO: −H's eigenvalues are floored here (a flat direction gets a
# bounded step), each coordinate moves at most MAX_CHANGE per step, and the step is halved up to
# len(STEP_SIZES) − 1 times until the ELBO rises.
CURVATURE_FLOOR = 1e-2
MAX_CHANGE = 1.0
STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
# The largest |ELBO at order − ELBO at 2·order| for which a q* counts as converged: a wide q
# needs more nodes, and Newton can climb a maximum that only the coarse quadrature has.
QUADRATURE_TOLERANCE = 1e-4


def _order_and_check(name, value, arguments):
    """Rule for ``order``: the order and twice it (the check) both fit (``quadrature_order``)."""
    value = quadrature_order(name, value, arguments)
    quadrature_order(name, 2 * value, arguments)
    return value


@checked(
    model=one_layer("classic VI by quadrature (a q given per point)"),
    theta=THETA,
    x=X,
    order=_order_and_check,
    steps=integer(minimum=0),
    tol=positive(),
)
def best_diagonal_quadrature(model, theta, x, inits=None, order=20, steps=50, tol=1e-6):
    """Classic VI without Monte Carlo noise, for latents of at most 3 units: each point's best
    diagonal Gaussian q* = argmax_λ ELBO(x; λ), λ = (μ, log σ), with the ELBO computed by
    Gauss–Hermite quadrature (``evaluate.elbo_quadrature``) and maximized by Newton's method:

        λ ← λ + a · (−H)⁺ ∇_λ ELBO,   H = ∇²_λ ELBO (2·z_dim Hessian-vector products)
        (−H)⁺: the inverse of −H with its eigenvalues taken in absolute value, floored at 0.01
        each coordinate's change capped at 1; a = 1, 1/2, …, 1/32: the largest that raises the ELBO

    A point stops when max |∇_λ ELBO| ≤ tol, when no step size raises its ELBO, or after
    ``steps`` steps. Each result is then evaluated again with twice the nodes: that value is the
    ELBO returned, and the difference is the quadrature's error (a wide q needs more nodes, and
    Newton can climb a maximum that only the coarser quadrature has). The ELBO can have several
    local maxima (a posterior with two arms), so Newton runs from every start in ``inits`` and
    each point keeps the λ whose ELBO (with twice the nodes) is highest.

    x: (n, x_dim). inits: a list of starts (mean, log_std), each (n, z_dim), e.g. the encoder's
    output; default [the prior N(0, I)]. order: quadrature nodes per latent unit. It runs in the
    model's dtype; in float32, rounding can keep the gradient above a small tol, and such a point
    is reported as not converged.
    Returns a dict of the λ kept: "mean", "log_std" (n, z_dim), "elbo" (n,),
    "quadrature_error" (n,), "converged" (n,) bool (max |∇| ≤ tol and quadrature error ≤
    QUADRATURE_TOLERANCE), "start" (n,) the index in ``inits`` of the start that won.
    """
    n, d = len(x), model.z_dim
    if inits is None:
        inits = [(np.zeros((n, d)), np.zeros((n, d)))]
    if not isinstance(inits, (list, tuple)) or len(inits) == 0:
        raise ValueError(
            f"inits: expected a non-empty list of (mean, log_std) pairs, got {type(inits).__name__}"
        )
    starts = [
        np.concatenate(model.check_lambda(init, n, name=f"inits[{i}]"), axis=1)
        for i, init in enumerate(inits)
    ]
    best = None
    for index, start in enumerate(starts):
        lam, coarse, stationary = _newton(model, theta, x, start, order, steps, tol)
        fine = elbo_quadrature(model, theta, x, 2 * order, (lam[:, :d], lam[:, d:]))
        error = np.abs(fine - coarse)
        found = {
            "mean": lam[:, :d],
            "log_std": lam[:, d:],
            "elbo": fine,
            "quadrature_error": error,
            "converged": stationary & (error <= QUADRATURE_TOLERANCE),
            "start": np.full(n, index),
        }
        if best is None:
            best = found
            continue
        better = found["elbo"] > best["elbo"]
        for key, value in found.items():
            best[key][better] = value[better]
    return best


def _newton(model, theta, x, lam, order, steps, tol):
    """Newton's method on every point's quadrature ELBO (see ``best_diagonal_quadrature``).
    lam: (n, 2·z_dim), changed in place. -> (λ, ELBO (n,), converged (n,))."""
    d, p = model.z_dim, 2 * model.z_dim

    def elbos(lam, rows):
        return elbo_quadrature(model, theta, x[rows], order, (lam[:, :d], lam[:, d:]))

    value = elbos(lam, np.arange(len(x)))
    converged = np.zeros(len(x), dtype=bool)
    active = np.arange(len(x))  # the points still stepping

    def total(lam, rows):  # Σ_i ELBO_i: point i's gradient involves only its own λ_i
        return anp.sum(elbos(lam, rows))

    for _ in range(steps):
        current = lam[active]
        hvp, _ = autograd.make_hvp(total)(current, active)
        gradient = autograd.grad(total)(current, active)
        small = np.max(np.abs(gradient), axis=1) <= tol
        converged[active[small]] = True
        # column c of every point's Hessian: one product with the c-th unit vector for all points
        hessian = np.stack([hvp(np.tile(np.eye(p)[c], (len(active), 1))) for c in range(p)], axis=2)
        values, vectors = np.linalg.eigh(-0.5 * (hessian + hessian.swapaxes(1, 2)))
        inverse = np.matmul(
            vectors / np.maximum(np.abs(values), CURVATURE_FLOOR)[:, None, :],
            vectors.swapaxes(1, 2),
        )
        direction = np.matmul(inverse, gradient[:, :, None])[:, :, 0]
        largest = np.max(np.abs(direction), axis=1, keepdims=True)
        direction *= np.minimum(1.0, MAX_CHANGE / np.maximum(largest, 1e-300))
        moved = np.zeros(len(active), dtype=bool)
        for size in STEP_SIZES:  # the largest step that raises each point's ELBO
            candidate = current + size * direction
            candidate_value = elbos(candidate, active)
            raised = ~moved & ~small & (candidate_value > value[active])
            lam[active[raised]] = candidate[raised]
            value[active[raised]] = candidate_value[raised]
            moved |= raised
            if moved[~small].all():
                break
        active = active[moved]  # converged points, and points no step raises, stop
        if len(active) == 0:
            break
    else:  # out of steps: test the points still stepping at the λ they reached
        if len(active):
            gradient = autograd.grad(total)(lam[active], active)
            converged[active] = np.max(np.abs(gradient), axis=1) <= tol
    return lam, value, converged


def _seconds(name, value, arguments):
    """Rule: a time in seconds >= 0, or an array of them."""
    value = check_array(name, value)
    if np.any(value < 0):
        raise ValueError(f"{name}: expected seconds >= 0, got {np.min(value)}")
    return value


@checked(
    train_seconds=_seconds,
    encode_seconds=_seconds,
    classic_seconds=all_of(
        _seconds, broadcasting("train_seconds", "encode_seconds", "classic_seconds")
    ),
)
def break_even_n(train_seconds, encode_seconds, classic_seconds):
    """The price of amortization in compute: the number of points n* at which amortized
    inference (train the encoder once, then encode each point) has cost as much as classic VI
    (fit each point's λ on its own),

        T_train + n · t_encode = n · t_classic   ⇒   n* = T_train / (t_classic − t_encode).

    Beyond n* points the encoder has paid for its training; n* = +inf where t_classic ≤ t_encode
    (it never does). train_seconds T_train, encode_seconds t_encode (per point), classic_seconds
    t_classic (per point): seconds >= 0, numbers or arrays (e.g. one per timing round) that
    broadcast together -> n*, of the broadcast shape (a float for numbers).
    """
    saving = classic_seconds - encode_seconds  # what each point saves once the encoder exists
    positive_saving = saving > 0
    n = np.where(positive_saving, train_seconds / np.where(positive_saving, saving, 1.0), np.inf)
    return n[()]  # a float for numbers
