"""Training: maximize a bound over θ with minibatches and Adam.

    θ ← θ + Adam( ∇_θ (1/B) Σ_{x ∈ batch} L(x; θ) ),   L = ELBO or L_k

Training the whole θ learns the model and amortized inference together (a VAE or IWAE);
``update="encoder"`` freezes the decoder and learns only x → λ, amortized inference for a
fixed model. Per epoch the history records the training bound (the running mean over batches)
and the test bound; a checkpoint is written atomically after every epoch, and ``resume=True``
continues from it exactly as if the run had never stopped (same θ, optimizer state and random
stream).
"""

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from autograd import value_and_grad
from tqdm import tqdm

from . import checkpoint as ckpt
from .bounds import BOUNDS
from .checks import check_choice, check_int, check_positive
from .datasets import Dataset
from .evaluate import expected_bound
from .optim import Adam, clip_by_norm
from .runtime import tune_malloc
from .vi import semi_amortized_elbo

UPDATES = ("all", "encoder")


class TrainingDiverged(RuntimeError):
    """The bound or its gradient stopped being finite. ``theta`` and ``history`` hold the last
    good state; the last checkpoint on disk (if any) is untouched."""

    def __init__(self, message, theta, history):
        super().__init__(message)
        self.theta, self.history = theta, history


@dataclass
class TrainResult:
    """theta: the trained parameters; history: one dict per epoch (epoch, train_bound,
    test_bound, seconds); seconds: training time of this call (not of resumed epochs)."""

    theta: np.ndarray
    history: list = field(repr=False)
    seconds: float = 0.0


OBJECTIVES = ("elbo", "iwae", "sa-elbo", "svi")


def train(model, theta, data, *, objective="iwae", k=5, epochs=10, batch_size=20, lr=1e-3,
          seed=0, update="all", clip_norm=None, checkpoint=None, resume=False, progress=True,
          refine_steps=5, refine_lr=0.1):
    """Train ``theta`` on ``data`` (a Dataset, or an (n, x_dim) training array).

    objective: "elbo" or "iwae"; k: samples per point (k = 1 with "iwae" is the VAE's ELBO).
      "sa-elbo": semi-amortized (Kim et al. 2018), the ELBO after ``refine_steps`` gradient steps
      of size ``refine_lr`` from the encoder's λ, differentiated through the steps; "svi": the same
      steps from the prior, the model trained on the final λ (stochastic VI without an encoder).
    batch_size, lr: minibatch size and Adam step size; seed: batches, ε and binarization.
    update: "all" (encoder and decoder) or "encoder" (the decoder stays fixed).
    clip_norm: rescale each gradient to at most this norm (None: no clipping).
    checkpoint: a path; written after each epoch. resume: continue from it if it exists.
    Returns a TrainResult; raises TrainingDiverged if the bound or gradient becomes non-finite.
    """
    if not isinstance(data, Dataset):
        x = model._check_x(data)
        data = Dataset("array", x, x[:0], model.likelihood)
    x_train = model._check_x(data.x_train)
    x_test = model._check_x(data.x_test) if len(data.x_test) else None
    theta = model._check_theta(theta).copy()
    check_choice("objective", objective, OBJECTIVES)
    check_int("k", k, minimum=1)
    check_int("refine_steps", refine_steps, minimum=0)
    check_positive("refine_lr", refine_lr)
    check_int("epochs", epochs, minimum=0)
    batch_size = min(check_int("batch_size", batch_size, minimum=1), len(x_train))
    check_positive("lr", lr)
    check_choice("update", update, UPDATES)
    if clip_norm is not None:
        check_positive("clip_norm", clip_norm)
    config = {"objective": objective, "k": k, "batch_size": batch_size, "lr": lr, "seed": seed,
              "update": update, "clip_norm": clip_norm, "dataset": data.name}
    refined = objective in ("sa-elbo", "svi")
    if refined:
        config.update(refine_steps=refine_steps, refine_lr=refine_lr)
    tune_malloc()  # keep the step's large temporaries in the process (runtime.py measures why)

    rng = np.random.default_rng(seed)
    adam = Adam(lr)
    history, start_epoch = [], 0
    if resume:
        theta, history, start_epoch = _resume(checkpoint, model, config, adam, rng)

    if refined:
        semi = objective == "sa-elbo"
        step_fn = value_and_grad(lambda t, xb, eps: np.mean(semi_amortized_elbo(
            model, t, xb, eps, refine_lr, from_encoder=semi, through_steps=semi)))
    else:
        bound = BOUNDS[objective]
        step_fn = value_and_grad(lambda t, xb, eps: np.mean(bound(model._log_weights(t, xb, eps))))
    eps_lead = (refine_steps + 1, k) if refined else (k,)  # a fresh ε for every refinement step
    frozen = ~model.layout.mask("encoder.") if update == "encoder" else None
    n_batches = math.ceil(len(x_train) / batch_size)
    started = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        epoch_start = time.perf_counter()
        x_epoch = data.binarize(rng) if data.probs_train is not None else x_train
        order = rng.permutation(len(x_train))
        running = 0.0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False, mininterval=0.5)
        for b in bar:
            batch = x_epoch[order[b * batch_size:(b + 1) * batch_size]]
            eps = rng.standard_normal(eps_lead + (len(batch), model.z_dim), dtype=model.dtype)
            value, grad = step_fn(theta, batch, eps)
            _check_step(value, grad, epoch, b, n_batches, theta, history, checkpoint, lr)
            if frozen is not None:
                grad[frozen] = 0.0
            if clip_norm is not None:
                grad = clip_by_norm(grad, clip_norm)
            theta = adam.step(theta, grad)
            running += (float(value) - running) / (b + 1)
            bar.set_postfix({f"{objective}(k={k})": f"{running:.3f}"}, refresh=False)
        record = {"epoch": epoch + 1, "train_bound": running,
                  "test_bound": _test_bound(model, theta, x_test, objective if objective in BOUNDS
                                            else "elbo", k, seed, epoch),
                  "seconds": time.perf_counter() - epoch_start}
        history.append(record)
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{epochs}: train {objective}(k={k}) {running:.3f}"
                       + (f", test {record['test_bound']:.3f}" if x_test is not None else ""))
        if checkpoint is not None:
            ckpt.save(checkpoint, model, {"theta": theta, **_adam_arrays(adam)},
                      {"epoch": epoch + 1, "train_config": config, "history": history,
                       "rng_state": rng.bit_generator.state, "adam_t": _adam_t(adam)})
    return TrainResult(theta, history, time.perf_counter() - started)


def _test_bound(model, theta, x_test, objective, k, seed, epoch):
    """The test bound with its own random stream, so evaluating never perturbs training."""
    if x_test is None:
        return None
    return float(np.mean(expected_bound(model, theta, x_test, objective, k, replicates=1,
                                        seed=[seed, epoch])))


def _check_step(value, grad, epoch, b, n_batches, theta, history, checkpoint, lr):
    """Stop at the step where the bound or gradient turns non-finite, keeping the last good θ."""
    if np.isfinite(value) and np.all(np.isfinite(grad)):
        return
    quantity = "bound" if not np.isfinite(value) else "gradient"
    kept = (f"the last good checkpoint {checkpoint!r} (epoch {len(history)}) is untouched"
            if checkpoint is not None and os.path.exists(checkpoint) else "no checkpoint was written")
    raise TrainingDiverged(
        f"training stopped at epoch {epoch + 1}, step {epoch * n_batches + b + 1}: the {quantity} "
        f"is not finite; {kept}. Try a lower learning rate (now {lr:g}) or gradient clipping "
        f"(clip_norm, e.g. 100)", theta, history)


def _adam_arrays(adam):
    return {} if adam.state is None else {"adam_m": adam.state["m"], "adam_v": adam.state["v"]}


def _adam_t(adam):
    return 0 if adam.state is None else adam.state["t"]


def _resume(checkpoint, model, config, adam, rng):
    if checkpoint is None:
        raise ValueError("checkpoint: expected a checkpoint path to resume from, got None")
    arrays, metadata = ckpt.load(checkpoint, model)
    saved = metadata["train_config"]
    differing = {key: (saved.get(key), value) for key, value in config.items() if saved.get(key) != value}
    if differing:
        described = ", ".join(f"{key} {old!r} (now {new!r})" for key, (old, new) in differing.items())
        raise ValueError(f"checkpoint: expected the same training settings to resume, got {described}")
    if "adam_m" in arrays:
        adam.state = {"m": arrays["adam_m"], "v": arrays["adam_v"], "t": metadata["adam_t"]}
    rng.bit_generator.state = metadata["rng_state"]
    return arrays["theta"].copy(), metadata["history"], metadata["epoch"]
