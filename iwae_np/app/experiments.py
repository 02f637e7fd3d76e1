"""The experiments behind the demo and the README's tables, as plain functions.

1. ``train_family``: a VAE (ELBO, k = 1) and IWAEs (k = 5, 50) with the same architecture,
   initialization, data and number of epochs (Burda et al.'s comparison).
2. ``evaluate_family``: test log p(x) at k = 5000, active units per layer, training time.
3. ``classic_vs_amortized``: for held-out points, the encoder (one forward pass) against classic
   VI (an optimization per point, run to convergence) on the same decoder: each method's ELBO,
   the gap, the seconds per point and steps, including how long classic VI needs to match the
   encoder.
"""

import time

import numpy as np

from ..evaluate import active_units, expected_bound, log_marginal
from ..models import VAE
from ..train import train
from ..vi import fit_local
from .tables import format_table  # noqa: F401  (kept here too: lessons 05 and 09 call it)


def family_label(k):
    return "VAE (k=1)" if k == 1 else f"IWAE (k={k})"


def train_family(
    data,
    ks=(1, 5, 50),
    z_dim=10,
    hidden=(64, 64),
    epochs=20,
    batch_size=20,
    lr=1e-3,
    seed=0,
    progress=True,
):
    """-> {label: (model, TrainResult)}; k = 1 trains the ELBO, k > 1 the IWAE bound L_k."""
    trained = {}
    for k in ks:
        model = VAE(data.x_dim, z_dim, hidden=hidden, likelihood=data.likelihood)
        theta = model.init(seed=seed, x=data.x_train)
        label = family_label(k)
        if progress:
            print(f"training {label}: {epochs} epochs, {len(data.x_train)} points")
        result = train(
            model,
            theta,
            data,
            objective="elbo" if k == 1 else "iwae",
            k=k,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            progress=progress,
        )
        trained[label] = (model, result)
    return trained


def layer_active_units(model, theta, x, threshold=0.01):
    """Active units of every stochastic layer, each with its layer's size: [(count, size)],
    bottom layer first (one pair for a VAE, two for a TwoLayerVAE)."""
    if not isinstance(model, VAE):
        raise ValueError(f"model: expected a VAE or TwoLayerVAE, got {type(model).__name__}")
    return [
        (active_units(model, theta, x, threshold, layer=layer)[0], size)
        for layer, size in enumerate(model.layer_dims)
    ]


def evaluate_family(trained, x_test, k_eval=5000, seed=0, progress=True):
    """-> list of rows: label, test log p(x) (mean and standard error, k = k_eval), its paired
    difference from the first model (with standard error), test ELBO, active units (of the first
    layer, and ``layer_units``: (count, size) per layer), training seconds."""
    rows, first = [], None
    for label, (model, result) in trained.items():
        log_px = log_marginal(model, result.theta, x_test, k=k_eval, seed=seed, progress=progress)
        elbo = expected_bound(model, result.theta, x_test, "elbo", 1, replicates=100, seed=seed)
        layer_units = layer_active_units(model, result.theta, x_test)
        first = log_px if first is None else first
        # the models see the same test points, so differences get a paired standard error
        difference = log_px - first
        rows.append(
            {
                "model": label,
                "log_px": float(log_px.mean()),
                "log_px_se": _standard_error(log_px),
                "elbo": float(elbo.mean()),
                "vs_first": float(difference.mean()),
                "vs_first_se": _standard_error(difference),
                "active_units": layer_units[0][0],
                "layer_units": layer_units,
                "z_dim": model.z_dim,
                "train_seconds": result.seconds,
            }
        )
    return rows


def _standard_error(values):
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _seconds_per_point_encoder(model, theta, x, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(theta, x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / len(x)


def classic_vs_amortized(model, theta, x, steps=2000, tol=0.01, seed=0, replicates=200):
    """Classic VI against the encoder on held-out points x, with the same decoder.

    Classic VI starts from the prior, so it competes with the encoder rather than refining it,
    and runs until each point has converged to ``tol`` or ``steps`` have run (``vi.fit_local``).
    Returns a dict with: the encoder's mean ELBO and seconds per point; classic VI's mean ELBO
    at convergence, its seconds per point, its steps (those of the slowest point) and how many
    points converged; the mean gap ELBO[q*] − ELBO[q_encoder]; and the seconds per point and
    steps classic VI needed to first match the encoder's mean ELBO (None if it never did).
    One-layer models only (classic VI).
    """
    encoder_elbo = expected_bound(model, theta, x, "elbo", 1, replicates=replicates, seed=seed)
    encoder_seconds = _seconds_per_point_encoder(model, theta, x)
    fit = fit_local(model, theta, x, steps=steps, tol=tol, seed=seed, eval_replicates=replicates)
    target = float(encoder_elbo.mean())
    match_steps, match_seconds = _first_match(fit, target)
    return {
        "points": len(x),
        "encoder_elbo": target,
        "classic_elbo": float(fit.bound.mean()),
        "gap": float(fit.bound.mean() - target),
        "encoder_seconds_per_point": encoder_seconds,
        "classic_seconds_per_point": fit.seconds_per_point,
        "classic_steps": fit.total_steps,
        "classic_converged": fit.n_converged,
        "classic_criterion": fit.criterion,
        "classic_seconds_to_match": match_seconds,
        "classic_steps_to_match": match_steps,
        "per_point": (encoder_elbo, fit.bound),
    }


def _first_match(fit, target, window=10):
    """(steps, seconds per point) at which classic VI's mean bound, averaged over ``window``
    steps (one step's bound is a noisy k-sample estimate), first reaches ``target``; (None, None)
    if it never does."""
    if len(fit.history) < window:
        return None, None
    smoothed = np.convolve(fit.history, np.ones(window) / window, mode="valid")
    reached = np.flatnonzero(smoothed >= target)
    if len(reached) == 0:
        return None, None
    step = int(reached[0]) + window  # the smoothed value at i covers steps i … i + window − 1
    return step, fit.elapsed[step - 1] / len(fit.mean)


def bound_curves(trained, x, ks=(1, 2, 5, 10, 50, 200, 1000), samples=200, seed=0):
    """E[L_k] (mean over points) against k for each trained model: the data of the bound-vs-k
    figure. Each k uses about ``samples`` draws per point (max(1, samples // k) replicates)."""
    return {
        label: [
            float(
                np.mean(
                    expected_bound(
                        model,
                        result.theta,
                        x,
                        "iwae",
                        k,
                        replicates=max(1, samples // k),
                        seed=seed,
                    )
                )
            )
            for k in ks
        ]
        for label, (model, result) in trained.items()
    }


def train_toy_encoder(name="banana", n=300, epochs=200, hidden=(32, 32), seed=0, progress=False):
    """Amortized inference for a toy's *true* model: an encoder (MLP ``hidden``) trained on the
    ELBO with the true decoder copied in and frozen.

    name: "banana" or "linear". -> (toy, model, theta, x_train, x_test)."""
    from ..data import banana, linear_gaussian, train_test_split

    toy = banana(n=n, seed=seed) if name == "banana" else linear_gaussian(n=n, seed=seed)
    true = toy.model
    model = VAE(
        true.x_dim,
        true.z_dim,
        hidden=hidden,
        decoder_hidden=true.decoder_hidden,
        likelihood="gaussian",
    )
    theta = model.init(seed=seed)
    for block in true.layout.blocks:  # the true decoder, copied block by block
        if block.startswith("decoder"):
            theta[model.layout.slice(block)] = toy.theta[true.layout.slice(block)]
    x_train, x_test = train_test_split(toy.x, 0.2, seed)
    result = train(
        model,
        theta,
        x_train,
        objective="elbo",
        k=10,
        epochs=epochs,
        batch_size=50,
        lr=3e-3,
        seed=seed,
        update="encoder",
        progress=progress,
    )
    return toy, model, result.theta, x_train, x_test


def toy_gaps(name="banana", n=300, epochs=200, hidden=(32, 32), seed=0, progress=False):
    """Cremer et al.'s gaps on a toy whose log p(x) is exact, for held-out points, with the
    encoder of ``train_toy_encoder``. log p(x): quadrature (banana) or closed form (linear).
    -> dict of mean gaps."""
    from ..evaluate import log_marginal_quadrature
    from ..gaps import inference_gaps

    toy, model, theta, _, x_test = train_toy_encoder(name, n, epochs, hidden, seed, progress)
    log_px = (
        log_marginal_quadrature(toy.model, toy.theta, x_test)
        if name == "banana"
        else toy.log_marginal(x_test)
    )
    gaps = inference_gaps(model, theta, x_test, log_px, seed=seed)
    return {
        "toy": name,
        "points": len(x_test),
        **{key: float(np.mean(value)) for key, value in gaps.items()},
    }


def trained_model_gaps(data, epochs=50, z_dim=5, hidden=(32,), k_eval=5000, points=100, seed=0):
    """The two gaps for a VAE trained on ``data``, where log p(x) is not known exactly: it is
    estimated with k_eval importance samples (q* as the proposal). -> dict of mean gaps."""
    from ..gaps import amortization_gap

    model = VAE(data.x_dim, z_dim, hidden=hidden, likelihood=data.likelihood)
    theta = train(
        model,
        model.init(seed=seed, x=data.x_train),
        data,
        objective="elbo",
        k=1,
        epochs=epochs,
        lr=3e-3,
        seed=seed,
        progress=False,
    ).theta
    x = data.x_test[:points]
    gaps, fit = amortization_gap(model, theta, x, seed=seed)
    log_px = log_marginal(model, theta, x, k=k_eval, seed=seed, lam=(fit.mean, fit.log_std))
    return {
        "toy": f"{data.name} VAE (log p(x) at k={k_eval})",
        "points": len(x),
        "log_px": float(np.mean(log_px)),
        "local_elbo": float(np.mean(gaps["local_elbo"])),
        "encoder_elbo": float(np.mean(gaps["encoder_elbo"])),
        "approximation_gap": float(np.mean(log_px - gaps["local_elbo"])),
        "amortization_gap": float(np.mean(gaps["gap"])),
        "converged": float(np.mean(fit.converged)),
    }


def semi_amortized_comparison(
    data,
    epochs=30,
    steps=5,
    refine_lr=0.1,
    z_dim=5,
    hidden=(32,),
    k_eval=1000,
    seed=0,
    progress=False,
):
    """VAE vs semi-amortized VAE (Kim et al. 2018) vs SVI alone, same architecture and epochs.

    Each is evaluated on the test set with the q it would use: the encoder's λ (none for SVI), and
    λ after ``steps`` refinement steps (from the encoder; from the prior for SVI). -> rows with
    the mean ELBO of each q, log p(x) with the refined q as proposal (k = k_eval), train seconds."""
    from ..semi_amortized import refine, sa_elbo, svi

    rows = []
    for label, objective in (
        ("VAE", "elbo"),
        ("SA-VAE", sa_elbo(steps, refine_lr)),
        ("SVI", svi(steps, refine_lr)),
    ):
        model = VAE(data.x_dim, z_dim, hidden=hidden, likelihood=data.likelihood)
        result = train(
            model,
            model.init(seed=seed, x=data.x_train),
            data,
            objective=objective,
            k=1,
            epochs=epochs,
            lr=3e-3,
            seed=seed,
            progress=progress,
        )
        x = data.x_test
        from_encoder = label != "SVI"
        eps = np.random.default_rng(seed).standard_normal((steps, 1, len(x), z_dim))
        lam = refine(model, result.theta, x, eps, refine_lr, from_encoder=from_encoder)
        refined = (lam[:, :z_dim], lam[:, z_dim:])
        encoder = (
            None
            if not from_encoder
            else float(
                np.mean(
                    expected_bound(model, result.theta, x, "elbo", 1, replicates=200, seed=seed)
                )
            )
        )
        refined_elbo = expected_bound(
            model, result.theta, x, "elbo", 1, replicates=200, seed=seed, lam=refined
        )
        log_px = log_marginal(model, result.theta, x, k=k_eval, seed=seed, lam=refined)
        rows.append(
            {
                "model": label,
                "encoder_elbo": encoder,
                "refined_elbo": float(np.mean(refined_elbo)),
                "log_px": float(np.mean(log_px)),
                "train_seconds": result.seconds,
            }
        )
    return rows


def median_seconds(f, repeats=21, clock=time.perf_counter):
    """The median time of ``repeats`` calls of ``f()``, in seconds, each call timed by ``clock``:

        t_r = clock() after call r − clock() before it,   median_seconds = median(t_1, …, t_R).

    The median ignores the odd call slowed by something else on the machine; the mean would not.
    f: a function of no arguments; repeats: an integer >= 1; clock: a function returning seconds,
    ``time.perf_counter`` (wall clock, the default) or ``time.process_time`` (this process's CPU
    time, which does not count the time spent waiting for a core on a busy machine)."""
    if not callable(f):
        raise ValueError(f"f: expected a function of no arguments, got {type(f).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats: expected an integer >= 1, got {repeats!r}")
    if not callable(clock):
        raise ValueError(
            f"clock: expected a function returning seconds, got {type(clock).__name__}"
        )
    times = []
    for _ in range(repeats):
        start = clock()
        f()
        times.append(clock() - start)
    return float(np.median(times))
