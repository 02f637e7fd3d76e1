"""Classic (per-sample) variational inference, run until it has converged, and saying so.

Classic VI gives every data point its own variational parameters λ_i = (μ_i, log σ_i) and
maximizes that point's bound with the generative model fixed:

    λ_i* = argmax_λ  L(x_i; λ),   L = ELBO or L_k,  q(z|x_i) = N(μ_i, diag σ_i²)

Amortized inference instead learns one map x → λ (the encoder) and pays a single forward pass
for a new point. The price is the amortization gap L[q*] − L[q_encoder] (Cremer et al. 2018),
which is only meaningful if classic VI reaches q*: so ``fit_local`` decides, for every point,
whether it has (docs/design.md §17).

One step, for all n points at once (each λ_i's gradient involves only its own point):

    z_s = μ + σ ⊙ ε_s,  ε_s ~ N(0, I),  s = 1 … k;   g_s = ∇_z log p(x, z_s)   (one backward pass)
    u_s = g_s + ε_s / σ          the path derivative ∇_z log w_s, with q's parameters held fixed
    ∇_μ L ≈ Σ_s a_s u_s,   ∇_{log σ} L ≈ Σ_s a_s u_s ⊙ σ ⊙ ε_s
      a_s = 1/k for the ELBO ("stl", Roeder et al. 2017), a_s = w̃_s² for L_k ("dreg",
      Tucker et al. 2018). Their noise vanishes as q approaches the posterior.
    A ≈ (1/k) Σ_s g_s ε_sᵀ diag(1/σ)   E_q[∇²_z log p(x, z)] by Stein's lemma, from the same g_s

The "newton" step divides the gradient by the bound's Hessian in λ for a locally Gaussian
posterior, −H = blockdiag(−A, 2 diag(σ²) diag(−A)), with −A's eigenvalues taken in absolute value
and floored at 1 (the prior's precision), A averaged over steps:

    λ ← λ + lr · (−H)⁻¹ ∇L   (each coordinate's change capped at 1)

Iterate averaging (Polyak) turns the noisy iterates into an estimate: the iterates are averaged in
windows of 10 steps, and λ is the mean of the last half of the windows. Its standard error comes
from the spread of those window means (batch means). A point has converged when

    2 · (standard error of every coordinate of the averaged λ) ≤ tol   and
    |mean of the tail's second half − mean of its first half| ≤ tol   (no drift left)

so μ is then known to about ±tol and σ to about ±100·tol %. A converged point stops; the others
go on until ``steps``, their step halved each time their averaging window doubles without
converging (after 200, 400, 800, … steps). Nothing else decays, so no iterate is frozen early.
"""

import math
import time
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import grad
from autograd.tracer import getval

from . import threads
from .checks import all_of, check_fits, checked, finite_result, integer, one_of, optional, positive
from .evaluate import expected_bound
from .models import EPS, LAMBDA, THETA, X, one_layer
from .numerics import log_mean_exp
from .optim import Adam
from .train import TrainingDiverged

METHODS = ("newton", "adam")
ESTIMATORS = ("stl", "dreg", "reparam")
DEFAULT_LR = {"newton": 0.5, "adam": 0.05}
WINDOW = 10  # steps per window: the iterates are averaged window by window
MIN_WINDOWS = 10  # windows before convergence is first tested (100 steps)
MAX_CHANGE = 1.0  # the largest change of any coordinate of λ in one Newton step
CURVATURE_MEMORY = 0.9  # the running average of A keeps this fraction of its old value per step


class LocalFitDiverged(TrainingDiverged):
    """Classic VI's bound or gradient stopped being finite. ``mean`` and ``log_std`` (n, z_dim)
    hold the last good λ (``theta`` holds them side by side, (n, 2·z_dim)); ``step`` is the step
    at which it happened; ``history`` the mean bound per step until then. A ``TrainingDiverged``,
    so the command line reports it in one line with exit code 1."""

    def __init__(self, message, mean, log_std, step, history):
        super().__init__(message, np.concatenate([mean, log_std], axis=1), history)
        self.mean, self.log_std, self.step = mean, log_std, step


@dataclass
class LocalFit:
    """The result of ``fit_local``. Shapes for n points and a latent of z_dim:

    mean, log_std: (n, z_dim), each point's λ_i: the average of its iterates over the last half
      of its steps (the last iterate when it took fewer than 2 windows of steps).
    bound: (n,), E[objective] at λ_i, averaged over fresh draws.
    converged: (n,) bool, whether the point met ``criterion`` (all False for a fixed budget).
    steps: (n,) int, the steps each point took (a converged point stops).
    std_error: (n,), the largest estimated standard error of the point's averaged λ coordinates
      (NaN with fewer than 2 windows of steps): μ is known to about ±2·std_error and σ to about
      ±200·std_error %.
    criterion: how convergence was decided, in words.
    history: the mean bound over points at each step (a converged point holds its averaged bound);
    elapsed: seconds since the start at each step; seconds: the optimization's time.
    """

    mean: np.ndarray
    log_std: np.ndarray
    bound: np.ndarray
    objective: str
    k: int
    converged: np.ndarray = field(repr=False, default=None)
    steps: np.ndarray = field(repr=False, default=None)
    std_error: np.ndarray = field(repr=False, default=None)
    criterion: str = ""
    history: list = field(repr=False, default_factory=list)
    elapsed: list = field(repr=False, default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_point(self):
        return self.seconds / len(self.mean)

    @property
    def n_converged(self):
        """How many points met the criterion."""
        return int(np.sum(self.converged))

    @property
    def total_steps(self):
        """Steps the loop ran: those of the slowest point."""
        return int(np.max(self.steps)) if len(self.steps) else 0

    def summary(self):
        """One line: how many points converged, by which rule, in how many steps and seconds."""
        n = len(self.mean)
        if self.criterion.startswith("fixed budget"):
            head = f"{n} points, {self.criterion}"
        else:
            head = f"{self.n_converged} of {n} points converged ({self.criterion})"
        return (
            f"{head}; steps per point median {int(np.median(self.steps))}, max "
            f"{self.total_steps}; {1e3 * self.seconds_per_point:.2f} ms per point"
        )


@checked(objective=one_of("elbo", "iwae"))
def default_estimator(objective):
    """The gradient estimator classic VI uses unless told: "stl" for the ELBO, "dreg" for L_k."""
    return "stl" if objective == "elbo" else "dreg"


def _estimator_for(name, value, arguments):
    """Rule for ``estimator``: None (the default for the objective) or one that fits it."""
    objective = arguments["objective"]
    if value is None:
        return default_estimator(objective)
    value = one_of(*ESTIMATORS)(name, value, arguments)
    if value == "dreg" and objective != "iwae":
        raise ValueError(
            f"{name}: expected 'stl' or 'reparam' for objective 'elbo' (DReG is a gradient of "
            f"L_k: objective 'iwae'), got 'dreg'"
        )
    return value


@checked(
    returns=finite_result("mean, log_std", "σ = exp(log σ), z = μ + σ·ε or log p(x, z) overflowed"),
    model=one_layer("classic VI (a q given per point)"),
    theta=THETA,
    x=X,
    mean=LAMBDA,
    log_std=LAMBDA,
    eps=EPS,
    objective=one_of("elbo", "iwae"),
    estimator=_estimator_for,
)
def local_gradient(model, theta, x, mean, log_std, eps, objective="elbo", estimator=None):
    """One step's estimates for every point, from the draws eps (k, n, z_dim):

        z_s = μ + σ ⊙ ε_s,  g_s = ∇_z log p(x, z_s),  u_s = g_s + ε_s / σ,  w̃ = softmax_s log w_s
        "stl":     ∇_μ = Σ_s a_s u_s,  ∇_{log σ} = Σ_s a_s u_s ⊙ σ ⊙ ε_s   (a_s = 1/k; L_k: w̃_s)
        "dreg":    the same with a_s = w̃_s² (objective "iwae")
        "reparam": ∇_μ = Σ_s a_s g_s,  ∇_{log σ} = Σ_s a_s g_s ⊙ σ ⊙ ε_s + 1
        A = (1/k) Σ_s g_s ε_sᵀ diag(1/σ), symmetrized: E_q[∇²_z log p(x, z)] by Stein's lemma

    mean, log_std: (n, z_dim). estimator: None for "stl" (ELBO) or "dreg" (L_k).
    -> (bound (n,), grad (n, 2·z_dim) = (∇_μ, ∇_{log σ}) side by side, A (n, z_dim, z_dim)).
    Equal to autograd's gradient of the matching surrogate through ``log_weights_given``.
    """
    estimator = default_estimator(objective) if estimator is None else estimator
    k = eps.shape[0]
    std = np.exp(log_std)
    z = mean + std * eps  # (k, n, d)
    joint = []

    def total(z):  # Σ log p(x, z_s): each z_s enters one term, so its gradient is that term's
        values = model.log_joint(theta, x, z)
        joint.append(getval(values))
        return anp.sum(values)

    g = grad(total)(z)  # (k, n, d)
    log_p = joint[0]  # (k, n)
    log_q = -np.sum(log_std + 0.5 * eps**2, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_w = log_p - log_q
    if objective == "elbo":
        bound = log_w.mean(axis=0)
        weights = np.full(log_w.shape, 1.0 / k, dtype=log_w.dtype)
    else:
        bound = log_mean_exp(log_w, axis=0)
        weights = np.exp(log_w - log_w.max(axis=0))
        weights /= weights.sum(axis=0)
        if estimator == "dreg":
            weights = weights**2
    weights = weights[..., None]  # (k, n, 1)
    if estimator == "reparam":
        grad_mean = np.sum(weights * g, axis=0)
        grad_log_std = np.sum(weights * g * std * eps, axis=0) + 1.0
    else:
        path = g + eps / std
        grad_mean = np.sum(weights * path, axis=0)
        grad_log_std = np.sum(weights * path * std * eps, axis=0)
    curvature = np.einsum("kni,knj->nij", g, eps) / k / std[:, None, :]
    curvature = 0.5 * (curvature + np.swapaxes(curvature, 1, 2))
    return bound, np.concatenate([grad_mean, grad_log_std], axis=1), curvature


def _preconditioner(curvature):
    """(−A)⁻¹ made positive definite, and diag(−A) floored: the pieces of the Newton step.

    −A's eigenvalues are taken in absolute value and floored at 1 (the prior's precision).
    curvature A: (n, z_dim, z_dim) -> ((n, z_dim, z_dim), (n, z_dim))."""
    values, vectors = np.linalg.eigh(-curvature)
    inverse = np.matmul(
        vectors / np.maximum(np.abs(values), 1.0)[:, None, :], vectors.swapaxes(1, 2)
    )
    return inverse, np.maximum(-np.diagonal(curvature, axis1=1, axis2=2), 1.0)


def _newton_direction(grad, preconditioner, log_std):
    """The Newton direction (−H)⁻¹ ∇ for λ = (μ, log σ), with the bound's Hessian for a locally
    Gaussian posterior, −H = blockdiag(−A, 2 diag(σ²) diag(−A)) (see ``_preconditioner``).

    grad: (n, 2·z_dim); log_std: (n, z_dim) -> (n, 2·z_dim)."""
    d = log_std.shape[1]
    inverse, diagonal = preconditioner
    step_mean = np.matmul(inverse, grad[:, :d, None])[:, :, 0]
    step_log_std = grad[:, d:] / (2.0 * np.exp(2.0 * log_std) * diagonal)
    return np.concatenate([step_mean, step_log_std], axis=1)


def _tail_statistics(windows):
    """The averaged λ of the last half of the windows, and how well it is known.

    windows: (w, n, p) window means, w >= 2. -> (mean (n, p), standard error (n, p) by batch means,
    drift (n, p): the mean of the tail's second half minus that of its first half)."""
    tail = windows[len(windows) // 2 :]
    count = len(tail)
    mean = tail.mean(axis=0)
    error = np.full(mean.shape, np.nan)
    if count > 1:
        error = tail.std(axis=0, ddof=1) / math.sqrt(count)
    half = count // 2
    drift = tail[half:].mean(axis=0) - tail[: count - half].mean(axis=0)
    return mean, error, drift


def draws_fit(name, value, arguments):
    """Rule for k: one step's k draws for every point, and the decoder's output and activations
    for them (about four (k, n, width) arrays), fit in the memory left."""
    model, x = arguments["model"], arguments["x"]
    width = model.eps_dim + model.x_dim + sum(getattr(model, "hidden", ()))
    return check_fits(name, value, (value, len(x), width), model.dtype, copies=4)


@checked(
    model=one_layer("classic VI (a q given per point)"),
    theta=THETA,
    x=X,
    objective=one_of("elbo", "iwae"),
    k=all_of(integer(minimum=1), draws_fit),
    steps=integer(minimum=0),
    tol=optional(positive()),
    lr=optional(positive()),
    method=one_of(*METHODS),
    estimator=_estimator_for,
    seed=integer(minimum=0),
    eval_replicates=integer(minimum=1),
)
def fit_local(
    model,
    theta,
    x,
    *,
    objective="elbo",
    k=20,
    steps=2000,
    tol=0.01,
    lr=None,
    method="newton",
    estimator=None,
    seed=0,
    init=None,
    eval_replicates=200,
):
    """Classic VI: maximize each row's bound over λ_i = (mean_i, log_std_i), the model fixed,
    until every point has converged or ``steps`` have run (see the module's docstring).

    model, theta: the generative model (its decoder is used; the encoder is not); one
      stochastic layer only (a TwoLayerVAE is refused with a ValueError).
    x: (n, x_dim). objective: "elbo" or "iwae" (L_k). k: samples per step and point.
    steps: the most steps any point takes. tol: a point has converged when twice the standard
      error of each coordinate of its averaged λ, and the drift between the halves of its
      averaging window, are at most tol (μ to about ±tol, σ to about ±100·tol %); it then stops.
      tol=None: a fixed budget, every point takes ``steps`` steps and convergence is not tested.
    method: "newton" (steps scaled by the Hessian for a Gaussian posterior) or "adam".
    lr: the fraction of the Newton step (default 0.5) or Adam's step size (default 0.05).
    estimator: "stl" (default for the ELBO), "dreg" (default for L_k) or "reparam" (the plain
      reparameterized gradient); "stl" on L_k is biased for k > 1 (Tucker et al. 2018).
    init: (mean, log_std), each (n, z_dim), e.g. the encoder's output; default the prior N(0, I).
    seed: for ε. eval_replicates: fresh draws for the final bound.
    Returns a LocalFit; raises LocalFitDiverged (keeping the last good λ) if the bound or its
    gradient stops being finite.

    How far to trust ``converged`` (an independent check on linear-Gaussian models, where q* is
    known): with the defaults, every point flagged converged was within 0.03 of q*'s mean and 3%
    of its σ, and the points that were not (posterior correlations beyond about 0.9, or
    z_dim > x_dim) were reported as not converged. The standard error comes from batch means and
    assumes nearly independent iterates; with method="adam", k below about 10, a looser tol, or
    objective="iwae", the iterates are more correlated, the standard error is too small, and a
    point can be flagged converged while still several standard errors from q*.
    """
    n, d = len(x), model.z_dim
    if init is None:
        lam = np.zeros((n, 2 * d), dtype=model.dtype)  # every q_i starts at the prior N(0, I)
    else:
        lam = np.concatenate(model.check_lambda(init, n, name="init"), axis=1)
    lr = DEFAULT_LR[method] if lr is None else lr
    estimator = default_estimator(objective) if estimator is None else estimator
    rng = np.random.default_rng(seed)
    adam = Adam(lr) if method == "adam" else None
    curvature = preconditioner = None
    active = np.arange(n)  # the points still stepping
    scale = np.ones((n, 1))  # each point's step, halved whenever its averaging window doubles
    converged = np.zeros(n, dtype=bool)
    taken = np.zeros(n, dtype=int)
    result = lam.copy()  # the averaged λ, filled in as points finish
    error = np.full(n, np.nan)
    latest = np.zeros(n)  # each point's latest bound estimate (averaged once it has converged)
    window_sum = np.zeros((n, 2 * d + 1))  # λ and the bound, summed over the current window
    windows = []  # window means, each (n, 2·d + 1)
    history, elapsed = [], []
    start = time.perf_counter()
    with threads.adaptive() as blas, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step in range(steps):
            blas.update()
            rows = active
            eps = rng.standard_normal((k, len(rows), d), dtype=model.dtype)
            bound, gradient, estimate = local_gradient(
                model, theta, x[rows], lam[rows, :d], lam[rows, d:], eps, objective, estimator
            )
            bad = ~(
                np.isfinite(bound)
                & np.all(np.isfinite(gradient), axis=1)
                & np.all(np.isfinite(estimate), axis=(1, 2))
            )
            if bad.any():
                raise _diverged(step, rows[bad], lam, history, lr, d)
            if method == "newton":
                # the step uses A from before this draw: a preconditioner that shares the
                # gradient's noise would bias where the iterates settle. It is refreshed every
                # step of the first window, then once a window (A changes slowly).
                curvature = estimate if curvature is None else curvature
                if step < WINDOW or step % WINDOW == 0:
                    preconditioner = _preconditioner(curvature)
                direction = _newton_direction(gradient, preconditioner, lam[rows, d:])
                change = lr * scale[rows] * direction
                largest = np.max(np.abs(change), axis=1, keepdims=True)
                change *= np.minimum(1.0, MAX_CHANGE / np.maximum(largest, 1e-300))
                new = lam[rows] + change
                curvature = CURVATURE_MEMORY * curvature + (1 - CURVATURE_MEMORY) * estimate
            else:
                new = adam.step(lam[rows], gradient, lr=lr * scale[rows])
            bad = ~np.all(np.isfinite(new), axis=1)
            if bad.any():
                raise _diverged(step, rows[bad], lam, history, lr, d)
            lam[rows] = new
            taken[rows] = step + 1
            latest[rows] = bound
            window_sum[rows, :-1] += new
            window_sum[rows, -1] += bound
            history.append(float(np.mean(latest)))
            elapsed.append(time.perf_counter() - start)
            if (step + 1) % WINDOW:
                continue
            windows.append(window_sum / WINDOW)
            window_sum = np.zeros_like(window_sum)
            if _doubled(len(windows)):
                scale[rows] /= 2  # not settled after 200, 400, 800, … steps: smaller steps
            if tol is None or len(windows) < MIN_WINDOWS:
                continue
            mean, se, drift = _tail_statistics(np.stack(windows)[:, rows])
            done = (2 * np.max(se[:, :-1], axis=1) <= tol) & (
                np.max(np.abs(drift[:, :-1]), axis=1) <= tol
            )
            finished = rows[done]
            result[finished], latest[finished] = mean[done, :-1], mean[done, -1]
            error[finished], converged[finished] = np.max(se[done, :-1], axis=1), True
            active = rows[~done]
            if method == "newton":
                curvature = curvature[~done]
                preconditioner = tuple(part[~done] for part in preconditioner)
            else:  # Adam's moments for the points still stepping
                state = adam.state
                adam.state = {"m": state["m"][~done], "v": state["v"][~done], "t": state["t"]}
            if len(active) == 0:
                break
    seconds = time.perf_counter() - start
    if len(active):  # out of steps (or a fixed budget): the tail average, else the last iterate
        if len(windows) >= 2:
            mean, se, _ = _tail_statistics(np.stack(windows)[:, active])
            result[active], error[active] = mean[:, :-1], np.max(se[:, :-1], axis=1)
        else:
            result[active] = lam[active]
    mean, log_std = result[:, :d].copy(), result[:, d:].copy()
    final = expected_bound(
        model,
        theta,
        x,
        objective,
        k,
        replicates=max(1, eval_replicates // k) if objective == "iwae" else eval_replicates,
        seed=seed + 1,
        lam=(mean, log_std),
    )
    criterion = (
        f"fixed budget of {steps} steps, convergence not tested (tol=None)"
        if tol is None
        else f"2·standard error and drift of the averaged λ ≤ tol={tol:g}"
    )
    return LocalFit(
        mean,
        log_std,
        final,
        objective,
        k,
        converged=converged,
        steps=taken,
        std_error=error,
        criterion=criterion,
        history=history,
        elapsed=elapsed,
        seconds=seconds,
    )


def _doubled(windows):
    """Whether ``windows`` is 2, 4, 8, … times MIN_WINDOWS: the averaging window has doubled."""
    ratio, rest = divmod(windows, MIN_WINDOWS)
    return rest == 0 and ratio >= 2 and ratio & (ratio - 1) == 0


def _diverged(step, points, lam, history, lr, d):
    """The error for a step whose bound or gradient is not finite, keeping the last good λ."""
    shown = ", ".join(str(int(i)) for i in points[:5]) + (" …" if len(points) > 5 else "")
    return LocalFitDiverged(
        f"classic VI stopped at step {step + 1}: the bound or its gradient is not finite for "
        f"point(s) {shown}; the last good λ is kept. Try a lower lr (now {lr:g}) or a start "
        f"nearer the posterior (init)",
        lam[:, :d].copy(),
        lam[:, d:].copy(),
        step,
        history,
    )
