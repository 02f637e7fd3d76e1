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

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from . import checkpoint as ckpt
from . import threads
from .bounds import BOUNDS
from .checks import (
    check_array,
    check_choice,
    check_fits,
    check_output_file,
    check_positive,
    checked,
    entered,
    flag,
    inside,
    integer,
    one_of,
    outside,
    positive,
)
from .evaluate import expected_bound
from .models import THETA
from .optim import Adam, clip_by_norm

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


@dataclass(frozen=True)
class Bound:
    """A training objective: a bound of the log-weights, L(x) = bound(log w(θ, x, ε)), with
    ε: (k, n, eps_dim). name: "elbo" or "iwae" (see bounds.BOUNDS)."""

    name: str

    def __post_init__(self):
        check_choice("name", self.name, tuple(BOUNDS))

    def eps_shape(self, k):
        """Leading shape of the ε one step draws."""
        return (k,)

    def __call__(self, model, theta, x, eps):
        return BOUNDS[self.name](model.log_weights(theta, x, eps))

    def config(self):
        return {"objective": self.name}


def as_objective(objective):
    """An objective for ``train``: "elbo" or "iwae" by name, or an object with ``name``,
    ``eps_shape(k)``, ``config()`` and ``__call__(model, θ, x, ε) -> (n,)`` (for example
    ``semi_amortized.sa_elbo()``)."""
    if isinstance(objective, str):
        return Bound(check_choice("objective", objective, tuple(BOUNDS)))
    if all(
        hasattr(objective, attribute) for attribute in ("name", "eps_shape", "config")
    ) and callable(objective):
        return objective
    raise ValueError(
        f"objective: expected 'elbo', 'iwae' or an objective such as "
        f"semi_amortized.sa_elbo(), got {objective!r}"
    )


class NonFiniteStep(FloatingPointError):
    """One step's bound or gradient is not finite (``quantity`` says which)."""

    def __init__(self, quantity):
        super().__init__(f"the {quantity} is not finite")
        self.quantity = quantity


def check_step_eps(model, objective, eps, n):
    """ε for one step of ``objective``: objective.eps_shape(k) + (n, eps_dim), finite, in the
    model's dtype (e.g. (k, n, eps_dim) for a bound)."""
    eps = check_array("eps", eps)
    shape, lead = np.shape(eps), len(objective.eps_shape(1))
    if len(shape) != lead + 2 or shape[-2:] != (n, model.eps_dim) or 0 in shape[:lead]:
        raise ValueError(
            f"eps: expected shape objective.eps_shape(k) + ({n}, {model.eps_dim}), "
            f"{lead} leading axes of draws for {objective.name} and x's {n} rows, got {shape}"
        )
    return eps.astype(model.dtype, copy=False)


def _all_finite(array):
    """Is every entry finite? One pass that allocates nothing in the usual case: a finite sum
    means no entry is NaN or ±inf (they propagate). Only a sum that is not finite (an entry that
    is not, or an overflow of the sum itself) pays for the entry-by-entry check."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(array, axis=None)):
            return True
    return bool(np.isfinite(array).all())


def make_step(model, objective, optimizer, frozen=None, clip_norm=None):
    """The update the trainer repeats: with the batch objective

        objective(θ, x, ε) = (1/B) Σ_b L(x_b; θ, ε_b),

    ``step(θ, x, ε)`` returns (θ + Adam(∇_θ objective), objective's value). frozen: a boolean mask
    of θ whose gradient is zeroed (the decoder, for encoder-only training); clip_norm: rescale the
    gradient to at most this norm. Raises NonFiniteStep before changing anything."""
    if not (hasattr(model, "layout") and hasattr(model, "log_weights")):
        raise ValueError(f"model: expected a VAE or TwoLayerVAE, got {type(model).__name__}")
    objective = as_objective(objective)
    if not callable(getattr(optimizer, "step", None)):
        raise ValueError(
            f"optimizer: expected an optimizer with step(θ, gradient), such as optim.Adam(1e-3), "
            f"got {type(optimizer).__name__}"
        )
    if frozen is not None:
        frozen = np.asarray(frozen)
        if frozen.dtype != bool or frozen.shape != (model.layout.size,):
            raise ValueError(
                f"frozen: expected a boolean mask of shape ({model.layout.size},), got "
                f"{frozen.dtype} {frozen.shape}"
            )
    if clip_norm is not None:
        clip_norm = check_positive("clip_norm", clip_norm)
    package_objective = isinstance(objective, Bound) or type(objective).__module__.startswith(
        "iwae_np."
    )

    def batch_objective(theta, x, eps):
        """(1/B) Σ_b L(x_b; θ, ε_b): the number one step ascends."""
        if package_objective:  # the package's own objectives: arguments checked once, by train
            return anp.mean(objective(model, theta, x, eps))
        with outside():  # an objective the user wrote: its calls into the package are checked
            return anp.mean(objective(model, theta, x, eps))

    value_and_gradient = value_and_grad(batch_objective)

    def step(theta, x, eps):
        if not entered():  # called by the user: check once here, not in every call below
            theta, x = model.check_theta(theta), model.check_x(x)
            eps = check_step_eps(model, objective, eps, len(x))
        with inside():
            return checked_step(theta, x, eps)

    def checked_step(theta, x, eps):
        # Overflow on the way to a non-finite value is reported once, by NonFiniteStep below,
        # not as a screenful of NumPy RuntimeWarnings first.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value, grad = value_and_gradient(theta, x, eps)
        if not np.isfinite(value):
            raise NonFiniteStep("bound")
        if not _all_finite(grad):
            raise NonFiniteStep("gradient")
        if frozen is not None:
            grad[frozen] = 0.0
        if clip_norm is not None:
            grad = clip_by_norm(grad, clip_norm)
        with np.errstate(over="ignore", invalid="ignore"):
            return optimizer.step(theta, grad), float(value)

    return step


@checked(
    theta=THETA,
    k=integer(minimum=1),
    epochs=integer(minimum=0),
    seed=integer(minimum=0),
    batch_size=integer(minimum=1),
    lr=positive(),
    update=one_of(*UPDATES),
    resume=flag(),
    progress=flag(),
)
def train(
    model,
    theta,
    data,
    *,
    objective="iwae",
    k=5,
    epochs=10,
    batch_size=20,
    lr=1e-3,
    seed=0,
    update="all",
    clip_norm=None,
    checkpoint=None,
    resume=False,
    progress=True,
):
    """Maximize a bound over θ with minibatches and Adam; the loop is

        for each epoch: (re-binarize x), shuffle, and for each batch x_b with fresh ε:
            θ ← step(θ, x_b, ε)            (``make_step``)
        then record the train and test bound, and write the checkpoint.

    model, theta: the model and its starting θ. data: an (n, x_dim) training array, or a data set
      with ``x_train``, ``x_test``, ``name`` and optionally ``probs_train`` and ``binarize(rng)``
      (``iwae_np.data.Dataset``).
    objective: "elbo", "iwae" (k = 1 with "iwae" is the VAE's ELBO), or an objective object such
      as ``semi_amortized.sa_elbo(steps=5, lr=0.1)``; k: samples per point.
    batch_size, lr: minibatch size and Adam step size; seed: batches, ε and binarization.
    update: "all" (encoder and decoder) or "encoder" (the decoder stays fixed).
    clip_norm: rescale each gradient to at most this norm (None: no clipping).
    checkpoint: a path; written after each epoch. resume: continue from it if it exists.
    Returns a TrainResult; raises TrainingDiverged if the bound or gradient becomes non-finite.
    """
    data = _as_data(model, data)
    x_train = model.check_x(data.x_train, name="data.x_train")
    dynamic = getattr(data, "probs_train", None) is not None  # re-binarized every epoch
    if dynamic and not callable(getattr(data, "binarize", None)):
        raise ValueError(
            "data: expected a binarize(rng) method beside probs_train (iwae_np.data.Dataset), "
            f"got {type(data).__name__} without one"
        )
    no_test = data.x_test is None or (np.ndim(data.x_test) == 2 and np.shape(data.x_test)[0] == 0)
    x_test = None if no_test else model.check_x(data.x_test, name="data.x_test")
    theta = np.array(theta, copy=True)
    objective = as_objective(objective)
    batch_size = min(batch_size, len(x_train))
    # one step holds about four (k, batch, width) arrays per layer and their gradients
    widths = model.x_dim + model.eps_dim + sum(getattr(model, "hidden", ()))
    check_fits("k, batch_size", k, (k, batch_size, 2 * widths), model.dtype, copies=4)
    if clip_norm is not None:
        check_positive("clip_norm", clip_norm)
    if checkpoint is None and resume:
        raise ValueError("checkpoint: expected a checkpoint path to resume from, got None")
    if checkpoint is not None:
        checkpoint = check_output_file("checkpoint", checkpoint)
    config = {
        **objective.config(),
        "k": k,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "update": update,
        "clip_norm": clip_norm,
        "dataset": getattr(data, "name", "array"),
    }

    rng = np.random.default_rng(seed)
    adam = Adam(lr)
    history, start_epoch = [], 0
    if resume:
        theta, history, start_epoch = _resume(checkpoint, model, config, adam, rng, x_train)
    frozen = ~model.layout.mask("encoder.") if update == "encoder" else None
    step = make_step(model, objective, adam, frozen, clip_norm)
    test_bound = objective.name if objective.name in BOUNDS else "elbo"
    n_batches = math.ceil(len(x_train) / batch_size)
    label = f"{objective.name}(k={k})"
    from tqdm import tqdm  # here, not at import: it is slow to load and only shows progress

    started = time.perf_counter()
    with threads.adaptive() as blas:  # BLAS gets the cores other processes leave free
        for epoch in range(start_epoch, epochs):
            epoch_start = time.perf_counter()
            x_epoch = binarized(model, data, rng, x_train.shape) if dynamic else x_train
            order = rng.permutation(len(x_train))
            running = 0.0
            bar = tqdm(
                range(n_batches),
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not progress,
                leave=False,
                mininterval=0.5,
            )
            for b in bar:
                blas.update()
                batch = x_epoch[order[b * batch_size : (b + 1) * batch_size]]
                eps = rng.standard_normal(
                    objective.eps_shape(k) + (len(batch), model.eps_dim), dtype=model.dtype
                )
                try:
                    new_theta, value = step(theta, batch, eps)
                    if not _all_finite(new_theta):  # a finite gradient, a step too large
                        raise NonFiniteStep("parameter vector θ after the step")
                except NonFiniteStep as error:
                    raise _diverged(
                        error.quantity,
                        epoch,
                        epoch * n_batches + b + 1,
                        theta,
                        history,
                        checkpoint,
                        lr,
                    ) from None
                theta = new_theta
                running += (value - running) / (b + 1)
                bar.set_postfix({label: f"{running:.3f}"}, refresh=False)
            record = {
                "epoch": epoch + 1,
                "train_bound": running,
                "test_bound": _test_bound(model, theta, x_test, test_bound, k, seed, epoch),
                "seconds": time.perf_counter() - epoch_start,
            }
            if record["test_bound"] is not None and not np.isfinite(record["test_bound"]):
                raise _diverged(
                    "test bound", epoch, (epoch + 1) * n_batches, theta, history, checkpoint, lr
                )
            history.append(record)
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1}/{epochs}: train {label} {running:.3f}"
                    + (f", test {record['test_bound']:.3f}" if x_test is not None else "")
                )
            if checkpoint is not None:
                ckpt.save(
                    checkpoint,
                    model,
                    {"theta": theta, **_adam_arrays(adam)},
                    {
                        "epoch": epoch + 1,
                        "train_config": config,
                        "history": history,
                        "rng_state": rng.bit_generator.state,
                        "adam_t": _adam_t(adam),
                    },
                )
    return TrainResult(theta, history, time.perf_counter() - started)


@dataclass
class _ArrayData:
    """A plain training array seen as a data set with no test split."""

    x_train: np.ndarray
    x_test: np.ndarray
    name: str = "array"
    probs_train: None = None


def binarized(model, data, rng, shape):
    """This epoch's binary draw of the training set, x ~ Bernoulli(probs_train), checked (a data
    set the user wrote may return grey levels or another shape) and in the model's dtype."""
    x = model.check_x(data.binarize(rng), name="data.binarize(rng)")
    if np.shape(x) != shape:
        raise ValueError(f"data.binarize(rng): expected shape {shape}, got {np.shape(x)}")
    return x


def _as_data(model, data):
    if hasattr(data, "x_train") and hasattr(data, "x_test"):
        return data
    x = model.check_x(data, name="data")
    return _ArrayData(x, x[:0])


def _test_bound(model, theta, x_test, objective, k, seed, epoch):
    """The test bound with its own random stream, so evaluating never perturbs training."""
    if x_test is None:
        return None
    return float(
        np.mean(
            expected_bound(model, theta, x_test, objective, k, replicates=1, seed=[seed, epoch])
        )
    )


def _diverged(quantity, epoch, step_number, theta, history, checkpoint, lr):
    """The error for a step whose bound or gradient turned non-finite, keeping the last good θ."""
    kept = (
        f"the last good checkpoint {checkpoint!r} (epoch {len(history)}) is untouched"
        if checkpoint is not None and os.path.exists(checkpoint)
        else "no checkpoint was written"
    )
    return TrainingDiverged(
        f"training stopped at epoch {epoch + 1}, step {step_number}: the {quantity} "
        f"is not finite; {kept}. Try a lower learning rate (now {lr:g}) or gradient clipping "
        f"(clip_norm, e.g. 100)",
        theta,
        history,
    )


def _adam_arrays(adam):
    return {} if adam.state is None else {"adam_m": adam.state["m"], "adam_v": adam.state["v"]}


def _adam_t(adam):
    return 0 if adam.state is None else adam.state["t"]


def _check_history(history, epochs, checkpoint):
    """A resumed history must be what ``train`` writes: one record per epoch done, numbered
    1 … epochs, with a finite train bound and a finite test bound or None."""

    def is_number(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            return math.isfinite(float(value))
        except OverflowError:  # an int beyond the float range
            return False

    if len(history) != epochs:
        raise ValueError(
            f"checkpoint: expected a history of {epochs} epochs in {checkpoint!r}, "
            f"got {len(history)} records"
        )
    for number, record in enumerate(history, start=1):
        if not (
            isinstance(record, dict)
            and record.get("epoch") == number
            and is_number(record.get("train_bound"))
            and (record.get("test_bound") is None or is_number(record.get("test_bound")))
            and is_number(record.get("seconds"))
            and record["seconds"] >= 0
        ):
            raise ValueError(
                f"checkpoint: expected history record {number} as train writes it "
                f"(epoch, train_bound, test_bound, seconds) in {checkpoint!r}, got {record!r:.80}"
            )


def _resume(checkpoint, model, config, adam, rng, data_rows):
    arrays, metadata = ckpt.load(checkpoint, model)
    expected = {
        "train_config": dict,
        "history": list,
        "epoch": int,
        "rng_state": dict,
        "adam_t": int,
    }
    wrong = [
        key
        for key, kind in expected.items()
        if not isinstance(metadata.get(key), kind) or isinstance(metadata.get(key), bool)
    ]
    if wrong:
        raise ValueError(
            f"checkpoint: expected training state ({', '.join(expected)}) in "
            f"{checkpoint!r}, got missing or malformed {', '.join(wrong)}"
        )
    saved = metadata["train_config"]
    differing = {
        key: (saved.get(key), value) for key, value in config.items() if saved.get(key) != value
    }
    if differing:
        described = ", ".join(
            f"{key} {old!r} (now {new!r})" for key, (old, new) in differing.items()
        )
        raise ValueError(
            f"checkpoint: expected the same training settings to resume, got {described}"
        )
    steps_done = metadata["epoch"] * math.ceil(len(data_rows) / config["batch_size"])
    if "adam_m" in arrays and not 1 <= metadata["adam_t"] <= max(1, steps_done):
        raise ValueError(
            f"checkpoint: expected an Adam step count in [1, {steps_done}] after "
            f"{metadata['epoch']} epochs in {checkpoint!r}, got {metadata['adam_t']}"
        )
    if metadata["epoch"] < 0:
        raise ValueError(f"checkpoint: expected a non-negative epoch, got {metadata['epoch']}")
    _check_history(metadata["history"], metadata["epoch"], checkpoint)
    if "adam_m" in arrays:
        if np.any(arrays["adam_v"] < 0):  # a mean of squares: √v̂ of a negative is NaN
            raise ValueError(
                f"checkpoint: expected a non-negative Adam second moment in {checkpoint!r}, "
                f"got a minimum of {arrays['adam_v'].min():.3g}"
            )
        adam.state = {"m": arrays["adam_m"], "v": arrays["adam_v"], "t": metadata["adam_t"]}
    try:
        rng.bit_generator.state = metadata["rng_state"]
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ValueError(
            f"checkpoint: expected a valid random generator state in {checkpoint!r}, got {error}"
        ) from None
    return arrays["theta"].copy(), metadata["history"], metadata["epoch"]
