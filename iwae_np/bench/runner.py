"""``python -m iwae_np bench``: how fast iwae_np is, side by side with PyTorch when installed.

Workloads (Burda et al.'s MNIST architecture: 784-200-200-50 encoder, 50-200-200-784 decoder,
tanh, Bernoulli likelihood, on random binary data):

    W1  one IWAE gradient step, batch 20, k ∈ {1, 5, 50}, float64 and float32
    W2  one VAE gradient step, batch 100, k = 1
    W3  log p(x) with k = 5000 (and k = 1000, to show time linear in k) for 200 points, with
        peak memory
    W4  inference for new points: classic VI (100 Adam steps) vs the encoder, seconds per point

iwae_np is timed two ways, both without any process-level switch:
- the notebook path: ``autograd.value_and_grad`` of ``iwae_bound(model.log_weights(θ, x, ε))``,
  exactly as the README's usage writes it;
- the trainer path: one ``train.make_step`` step (gradient, checks, Adam update), as ``train``
  runs it.
The peer is the fastest idiomatic PyTorch a practitioner would write: ``F.linear`` layers, the
Bernoulli log-likelihood as x·ℓ − softplus(ℓ), ``torch.logsumexp``, and (for the trainer path)
``torch.optim.Adam``. Its allocator setting and Adam implementation are chosen by measurement:
before the timings, torch runs a calibration with and without the malloc switch
(``runtime.tune_malloc``), and with Adam's default (foreach) and fused implementations, and keeps
the fastest.

How it measures: each side runs in its own worker process, and the sides take turns, one round
of repeats at a time, after a pause that lets the other side's thread pool go to sleep. In one
process, OpenBLAS's and torch's thread pools keep spinning after their work and slow whichever
library runs next (docs/design.md §9). Both use the same number of threads: torch's is set
by ``--threads``; iwae_np's worker, at the machine's full core count, gets no thread variables at
all and sizes its pools itself, as a user's process does. Each timing is the
median over all repeats; a ratio is iwae_np's median over torch's. Before any timing counts, both
sides compute the loss from the same θ, x and ε, and the table flags any disagreement. The run
records the CPU, the core count, the date and the load average, and warns when the machine was
loaded (load average above the core count before the run, or other programs using more than half
a core during it, measured from /proc/stat): a table is never to be taken from such a run.

The "GEMM floor" is the time of the step's matrix products alone (forward and backward, same
shapes), done with NumPy: no implementation of the step can be faster.
"""

import json
import math
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

BURDA = {"x_dim": 784, "z_dim": 50, "hidden": (200, 200)}


def _workloads(quick):
    w1 = [
        ("W1", {"k": k, "n": 20, "dtype": dtype})
        for dtype in ("float64", "float32")
        for k in (1, 5, 50)
    ]
    rest = [("W2", {"k": 1, "n": 100, "dtype": "float64"})]
    points = 20 if quick else 200
    rest += [("W3", {"k": k, "n": points, "dtype": "float64"}) for k in (1000, 5000)]
    rest += [("W4", {"n": 100, "steps": 100, "dtype": "float64"})]
    return w1 + rest


def _setup(config, seed=0):
    """The shared starting point of both sides: model, θ, x, ε (numpy arrays)."""
    from ..models import VAE

    model = VAE(dtype=config["dtype"], **BURDA)
    rng = np.random.default_rng(seed)
    x = (rng.random((config["n"], BURDA["x_dim"])) < 0.3).astype(config["dtype"])
    theta = model.init(seed=seed, x=x)
    eps = model.draw_eps(rng, config.get("k", 1), config["n"])
    return model, theta, x, eps


# ------------------------------------------------------------------ the two sides


class _Side:
    """Prepares each workload once (``prepare``), then times it on request.
    malloc: turn on the allocator switch in this worker process (torch's calibration only)."""

    def __init__(self, malloc=False):
        if malloc:
            from ..runtime import tune_malloc

            tune_malloc()
        self.cache = {}

    def run(self, workload, config, repeats):
        key = (workload, json.dumps(config, sort_keys=True))
        if key not in self.cache:
            self.cache[key] = self.prepare(workload, config)
        fn = self.cache[key]
        if workload == "W4":
            return {name: _per_point(_times(f, repeats), config["n"]) for name, f in fn.items()}
        return self.measure(workload, config, fn, repeats)

    def measure(self, workload, config, fn, repeats):
        if isinstance(fn, dict):  # a gradient step, on the notebook and the trainer path
            result = {
                "times": _times(fn["notebook"], repeats),
                "value": fn["notebook"](),
                "trainer_times": _times(fn["trainer"], repeats),
            }
            if "trainer_fused" in fn:
                result["trainer_fused_times"] = _times(fn["trainer_fused"], repeats)
            return result
        return {"times": _times(fn, repeats), "value": fn()}


class NumpySide(_Side):
    def prepare(self, workload, config):
        import autograd
        import autograd.numpy as anp

        from .. import evaluate, vi
        from ..bounds import BOUNDS
        from ..optim import Adam
        from ..train import Bound, make_step

        model, theta, x, eps = _setup(config)
        if workload in ("W1", "W2"):
            name = "iwae" if config["k"] > 1 else "elbo"
            bound = BOUNDS[name]
            notebook = autograd.value_and_grad(
                lambda t: anp.mean(bound(model.log_weights(t, x, eps)))
            )
            trainer = make_step(model, Bound(name), Adam(1e-3))
            return {
                "notebook": lambda: float(notebook(theta)[0]),
                "trainer": lambda: trainer(theta, x, eps)[1],
            }
        if workload == "W3":
            return lambda: float(np.mean(evaluate.log_marginal(model, theta, x, k=config["k"])))
        classic = lambda: vi.fit_local(  # the same algorithm as the PyTorch side: Adam, k = 1
            model,
            theta,
            x,
            steps=config["steps"],
            method="adam",
            k=1,
            tol=None,
            eval_replicates=1,
        )
        return {"classic": classic, "amortized": lambda: model.encode(theta, x)}

    def measure(self, workload, config, fn, repeats):
        if workload == "W3":
            tracemalloc.start()
            value = fn()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return {"times": _times(fn, repeats), "value": value, "peak_mb": peak / 1e6}
        return {
            "times": _times(fn["notebook"], repeats),
            "value": fn["notebook"](),
            "trainer_times": _times(fn["trainer"], repeats),
            "gemm_floor": _times(_gemm_floor(config), repeats),
        }


def _times(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _per_point(times, n):
    return [t / n for t in times]


def _gemm_floor(config):
    """The matrix products of one gradient step, same shapes: forward A·W, and backward G·Wᵀ
    (except into the data x) and Aᵀ·G for every layer."""
    n, k, dtype = config["n"], config["k"], config["dtype"]
    encoder = [784, 200, 200, 2 * BURDA["z_dim"]]
    decoder = [BURDA["z_dim"], 200, 200, 784]
    rng = np.random.default_rng(0)
    products = []
    for sizes, rows, first_into_data in ((encoder, n, True), (decoder, k * n, False)):
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            A, W, G = (
                rng.standard_normal(s).astype(dtype)
                for s in ((rows, d_in), (d_in, d_out), (rows, d_out))
            )
            products.append((A, W))  # forward
            products.append((A.T, G))  # ∂/∂W
            if not (first_into_data and i == 0):
                products.append((G, W.T))  # ∂/∂A
    return lambda: [a @ b for a, b in products]


class TorchSide(_Side):
    def __init__(self, threads, malloc=False, fused=None):
        """fused: Adam's fused implementation (True), its default one (False), or both, timed
        separately (None: the calibration)."""
        import torch

        super().__init__(malloc)
        torch.set_num_threads(threads)
        self.torch, self.fused = torch, fused

    def _tensors(self, config):
        torch = self.torch
        model, theta, x, eps = _setup(config)
        dtype = getattr(torch, config["dtype"])
        # nn.Linear's layout: weight (out, in), so each layer is F.linear (one addmm)
        blocks = {
            name: torch.tensor(
                value.T.copy() if name.endswith(".W") else value, dtype=dtype, requires_grad=True
            )
            for name, value in model.layout.unflatten(theta).items()
        }
        return model, blocks, torch.tensor(x, dtype=dtype), torch.tensor(eps, dtype=dtype)

    def _mlp(self, blocks, prefix, layers, h):
        linear = self.torch.nn.functional.linear
        for i in range(layers):
            h = linear(h, blocks[f"{prefix}.{i}.W"], blocks[f"{prefix}.{i}.b"])
            if i < layers - 1:
                h = self.torch.tanh(h)
        return h

    def _log_weights(self, model, blocks, x, eps):
        torch, z_dim = self.torch, model.z_dim
        h = self._mlp(blocks, "encoder", model.encoder.n_layers, x)
        mean, log_std = h[:, :z_dim], h[:, z_dim:]
        z = mean + torch.exp(log_std) * eps
        logits = self._mlp(blocks, "decoder", model.decoder.n_layers, z)
        log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
        # log p(z) − log q(z|x) with z = μ + σ·ε: Σ_j (−½ z_j² + ½ ε_j² + log σ_j), the two
        # ½ log 2π per coordinate cancelling (fewer operations than two separate log-densities)
        return log_lik - 0.5 * (z * z).sum(-1) + 0.5 * (eps * eps).sum(-1) + log_std.sum(-1)

    def prepare(self, workload, config):
        torch = self.torch
        model, blocks, x, eps = self._tensors(config)
        params = list(blocks.values())
        k = config.get("k", 1)
        if workload in ("W1", "W2"):

            def notebook():
                for p in params:
                    p.grad = None
                log_w = self._log_weights(model, blocks, x, eps)
                bound = (torch.logsumexp(log_w, 0) - math.log(k)).mean()
                (-bound).backward()
                return float(bound.detach())

            def trainer_with(fused):  # the same step plus Adam's update, as a training loop runs
                optimizer = torch.optim.Adam(params, lr=1e-3, fused=fused)

                def trainer():
                    value = notebook()
                    optimizer.step()
                    return value

                return trainer

            steps = {"notebook": notebook, "trainer": trainer_with(bool(self.fused))}
            if self.fused is None:  # the calibration: time both of Adam's implementations
                steps["trainer"], steps["trainer_fused"] = trainer_with(False), trainer_with(True)
            return steps
        if workload == "W3":

            def log_marginal():
                with torch.inference_mode():
                    per_chunk = max(1, 5000 // k)
                    out = []
                    for start in range(0, len(x), per_chunk):
                        xb = x[start : start + per_chunk]
                        running = torch.full((len(xb),), -math.inf, dtype=x.dtype)
                        for done in range(0, k, 5000):
                            e = torch.randn(
                                min(5000, k - done), len(xb), model.z_dim, dtype=x.dtype
                            )
                            chunk = torch.logsumexp(self._log_weights(model, blocks, xb, e), 0)
                            running = torch.logaddexp(running, chunk)
                        out.append(running - math.log(k))
                    return float(torch.cat(out).mean())

            return log_marginal

        def classic():
            lam = torch.zeros(config["n"], 2 * model.z_dim, dtype=x.dtype, requires_grad=True)
            optimizer = torch.optim.Adam([lam], lr=0.05)
            decoder_layers = model.decoder.n_layers
            for _ in range(config["steps"]):
                optimizer.zero_grad()
                mean, log_std = lam[:, : model.z_dim], lam[:, model.z_dim :]
                e = torch.randn(1, config["n"], model.z_dim, dtype=x.dtype)
                z = mean + torch.exp(log_std) * e
                logits = self._mlp(blocks, "decoder", decoder_layers, z)
                log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
                elbo = log_lik + (-0.5 * z * z).sum(-1) + (0.5 * e * e + log_std).sum(-1)
                (-elbo.sum()).backward()
                optimizer.step()

        def amortized():
            with torch.no_grad():
                self._mlp(blocks, "encoder", model.encoder.n_layers, x)

        return {"classic": classic, "amortized": amortized}


def worker(side, threads, malloc=False, fused=None):
    """A worker process: reads one JSON request per line, answers one JSON line each."""
    runner = NumpySide() if side == "numpy" else TorchSide(threads, malloc, fused)
    for line in sys.stdin:
        request = json.loads(line)
        result = runner.run(request["workload"], request["config"], request["repeats"])
        print(json.dumps(result), flush=True)


# ------------------------------------------------------------------ the driver


class _Worker:
    def __init__(self, side, threads, malloc=False, fused=None):
        from ..threads import cores

        env = dict(os.environ)
        if side != "numpy" or threads < cores():
            # torch's pools are sized by these (and set_num_threads). iwae_np's worker gets them
            # only when asked for fewer threads than the machine has: at the full count it runs
            # as a user's process does, with its own load decision (threads.kernel_call).
            env.update(
                OMP_NUM_THREADS=str(threads),
                OPENBLAS_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads),
            )
        code = (
            "from iwae_np.bench.runner import worker; "
            f"worker({side!r}, {int(threads)}, {bool(malloc)}, {fused!r})"
        )
        command = [sys.executable, "-c", code]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def ask(self, workload, config, repeats):
        self.process.stdin.write(
            json.dumps({"workload": workload, "config": config, "repeats": repeats}) + "\n"
        )
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark worker stopped unexpectedly")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def torch_available():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def machine():
    """What the numbers were measured on: CPU model, cores, date, load average, libraries."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    versions = {"numpy": np.__version__}
    for name in ("autograd", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": _load_average(),
        "versions": versions,
    }


def busy_mark():
    """(time, the machine's busy CPU seconds, this process's and its finished children's CPU
    seconds), or None where /proc/stat is absent."""
    from ..threads import machine_busy_seconds

    busy = machine_busy_seconds()
    if busy is None:
        return None
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def others_since(mark):
    """Cores' worth of CPU that programs other than the bench (this process and its workers,
    all finished by now) used since ``mark``."""
    now = busy_mark()
    if mark is None or now is None or now[0] <= mark[0]:
        return None
    return max(0.0, ((now[1] - mark[1]) - (now[2] - mark[2])) / (now[0] - mark[0]))


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _calibrate_torch(threads, repeats, settle, out):
    """Torch's allocator setting and Adam implementation, by measurement: the W1 k=5, W1 k=50
    and W2 steps, on the notebook and the trainer path, with and without the malloc switch, and
    the trainer path with Adam's default (foreach) and fused implementations; the faster total
    of medians wins. (The large step is in it because that is where the switch matters: without
    it, one run's torch trainer step at W1 k = 50 took 0.8 s instead of 0.06 s, while the small
    steps alone had picked "off" by a 4 % difference.) Returns (malloc, fused, totals in ms)."""
    configs = [
        ("W1", {"k": 5, "n": 20, "dtype": "float64"}),
        ("W1", {"k": 50, "n": 20, "dtype": "float64"}),
        ("W2", {"k": 1, "n": 100, "dtype": "float64"}),
    ]
    totals = {}  # (malloc, fused) -> seconds
    for malloc in (False, True):
        process = _Worker("torch", threads, malloc)
        try:
            for fused in (False, True):
                totals[malloc, fused] = 0.0
            for workload, config in configs:
                time.sleep(settle)
                result = process.ask(workload, config, repeats)
                for fused, key in ((False, "trainer_times"), (True, "trainer_fused_times")):
                    totals[malloc, fused] += float(np.median(result["times"]))
                    totals[malloc, fused] += float(np.median(result[key]))
        finally:
            process.close()
    malloc, fused = min(totals, key=totals.get)
    named = {
        f"malloc {'on' if m else 'off'}, {'fused' if f else 'foreach'} Adam": 1e3 * total
        for (m, f), total in totals.items()
    }
    out(
        "torch calibration (W1 k=5, k=50 and W2 medians, notebook + trainer path): "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in named.items())
        + f": keeping malloc {'on' if malloc else 'off'}, {'fused' if fused else 'foreach'} Adam"
    )
    return malloc, fused, named


def run(repeats=15, rounds=3, quick=False, use_torch=True, threads=None, settle=0.5, out=print):
    """Run every workload on both sides, alternating; print a table and return
    {"machine": …, "settings": …, "rows": [one dict per workload]}.

    settle: seconds to wait before each turn. After its work, a thread pool keeps its threads
    spinning for a while (OpenBLAS's thread timeout, OpenMP's spin count); on 2 cores those
    spinning threads would steal time from the other side's first repeats."""
    threads = threads or os.cpu_count() or 1
    info = machine()
    out(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['date']}, load average "
        f"{info['load_average']}"
    )
    warn_if_loaded(info["load_average"], info["cores"], out)
    mark = busy_mark()
    settings = {
        "repeats": repeats,
        "rounds": rounds,
        "threads": threads,
        "settle": settle,
        "quick": quick,
    }
    use_torch = use_torch and torch_available()
    if not use_torch:
        out(
            "PyTorch is not installed or not asked for: iwae_np side only "
            "(pip install torch==2.13.0 for the reference)"
        )
    else:
        malloc, fused, calibration = _calibrate_torch(threads, repeats, settle, out)
        settings.update(torch_malloc=malloc, torch_fused_adam=fused, torch_calibration=calibration)
    sides = {"numpy": _Worker("numpy", threads)}
    if use_torch:
        sides["torch"] = _Worker("torch", threads, malloc, fused)
    out(
        f"threads per side: {threads}; rounds: {rounds}; repeats per round: {repeats}; "
        f"{settle} s settle before each turn"
    )
    rows = []
    try:
        for workload, config in _workloads(quick):
            reps = max(1, repeats // 5) if workload == "W3" else repeats
            collected = {side: [] for side in sides}
            for _ in range(rounds if workload != "W3" else 1):
                for side, process in sides.items():  # take turns, one round each
                    time.sleep(settle)
                    collected[side].append(process.ask(workload, config, reps))
            rows.append(_summarize(workload, config, collected))
            out(_format_row(rows[-1]))
    finally:
        for process in sides.values():
            process.close()
    info["load_average_after"] = _load_average()
    others = others_since(mark)
    if others is not None:
        info["others_cores"] = round(others, 2)
        if others > OTHERS_LIMIT:
            out(
                f"WARNING: other programs used {others:.2f} cores during the run: these timings "
                f"are not a fair measurement; do not take a table from this run"
            )
    return {"machine": info, "settings": settings, "rows": rows}


def warn_if_loaded(load, cores, out):
    if load is not None and cores and load > cores:
        out(
            f"WARNING: the machine is loaded (load average {load} > {cores} cores): these "
            f"timings are not a fair measurement; do not take a table from this run"
        )


def _merge(results, key):
    return [t for result in results for t in result[key]]


def _summarize(workload, config, collected):
    row = {"workload": workload, "config": config}
    for side, results in collected.items():
        if workload == "W4":
            for name in ("classic", "amortized"):
                row[f"{side}_{name}_ms_per_point"] = 1e3 * float(np.median(_merge(results, name)))
            continue
        row[f"{side}_ms"] = 1e3 * float(np.median(_merge(results, "times")))
        row[f"{side}_value"] = results[0]["value"]
        if "trainer_times" in results[0]:
            row[f"{side}_trainer_ms"] = 1e3 * float(np.median(_merge(results, "trainer_times")))
        if "gemm_floor" in results[0]:
            row["gemm_floor_ms"] = 1e3 * float(np.median(_merge(results, "gemm_floor")))
        if "peak_mb" in results[0]:
            row["peak_mb"] = results[0]["peak_mb"]
    if "numpy_trainer_ms" in row:
        row["notebook_over_trainer"] = row["numpy_ms"] / row["numpy_trainer_ms"]
    if "torch_trainer_ms" in row:
        row["trainer_ratio"] = row["numpy_trainer_ms"] / row["torch_trainer_ms"]
    if "torch_ms" in row:
        row["ratio"] = row["numpy_ms"] / row["torch_ms"]
        if workload in ("W1", "W2"):  # the same θ, x, ε: the same loss, or the timing is moot
            tolerance = 1e-4 if config["dtype"] == "float32" else 1e-9
            row["same_value"] = bool(
                abs(row["numpy_value"] - row["torch_value"])
                <= tolerance * max(1.0, abs(row["torch_value"]))
            )
    if "torch_classic_ms_per_point" in row:
        row["classic_ratio"] = row["numpy_classic_ms_per_point"] / row["torch_classic_ms_per_point"]
    return row


def _format_row(row):
    c = row["config"]
    if row["workload"] == "W4":
        text = (
            f"W4 new points (n={c['n']}): classic VI ({c['steps']} steps) "
            f"{row['numpy_classic_ms_per_point']:.3f} ms/point, encoder "
            f"{1e3 * row['numpy_amortized_ms_per_point']:.2f} µs/point"
        )
        if "classic_ratio" in row:
            text += (
                f" | torch classic {row['torch_classic_ms_per_point']:.3f} ms/point "
                f"(ratio {row['classic_ratio']:.2f}), encoder "
                f"{1e3 * row['torch_amortized_ms_per_point']:.2f} µs/point"
            )
        return text
    label = f"{row['workload']} k={c['k']:<4} n={c['n']:<3} {c['dtype']}"
    text = f"{label}: iwae_np {row['numpy_ms']:8.2f} ms"
    if "numpy_trainer_ms" in row:
        text += f" (trainer path {row['numpy_trainer_ms']:8.2f} ms)"
    if "gemm_floor_ms" in row:
        text += f" (GEMM floor {row['gemm_floor_ms']:6.2f} ms)"
    if "peak_mb" in row:
        text += f", peak {row['peak_mb']:.0f} MB"
    if "torch_ms" in row:
        text += f" | torch {row['torch_ms']:8.2f} ms | ratio {row['ratio']:.2f}"
        if "trainer_ratio" in row:
            text += f" (trainer {row['trainer_ratio']:.2f})"
        if "same_value" in row:
            text += "" if row["same_value"] else "  (LOSS DIFFERS: not the same computation)"
    return text


TARGET = 1.5  # iwae_np within 1.5× PyTorch's time (issue 13)
NOTEBOOK_TARGET = 1.2  # the notebook path within 1.2× the trainer path


def loaded(result):
    """Was the machine loaded: a load average above the core count before the run, or other
    programs using more than half a core during it (``others_cores``, measured)? The load average
    after the run is not used: it counts the bench's own workers."""
    m = result["machine"]
    before = m.get("load_average")
    others = m.get("others_cores")
    return bool(
        (before is not None and m["cores"] and before > m["cores"])
        or (others is not None and others > OTHERS_LIMIT)
    )


OTHERS_LIMIT = 0.5  # cores' worth of other programs' CPU during a run that makes it unfair


def targets(result):
    """The issue's targets, read from one run: [(what, measured, target, met)]."""
    rows = [r for r in result["rows"] if r["workload"] in ("W1", "W2", "W3")]
    checks = []
    for row in rows:
        c = row["config"]
        name = f"{row['workload']} k={c['k']} {c['dtype']}"
        if "ratio" in row:
            checks.append((f"{name}: notebook path / PyTorch", row["ratio"], TARGET))
        if "trainer_ratio" in row:
            checks.append((f"{name}: trainer path / PyTorch", row["trainer_ratio"], TARGET))
        if "notebook_over_trainer" in row:
            checks.append(
                (
                    f"{name}: notebook path / trainer path",
                    row["notebook_over_trainer"],
                    NOTEBOOK_TARGET,
                )
            )
    return [(what, value, target, value <= target) for what, value, target in checks]


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def markdown_table(result):
    """The README's speed table, written from one run's JSON (``bench --json``): the machine, the
    timings, and the targets met or not. A run on a loaded machine says so first."""
    m = result["machine"]
    lines = []
    if loaded(result):
        lines += [
            f"**Provisional: measured on a loaded machine (load average {m['load_average']} "
            f"before, other programs' CPU during the run {m.get('others_cores')} cores, "
            f"{m['cores']} cores). Not a fair "
            f"measurement; to be replaced by a run on an idle machine.**",
            "",
        ]
    others = m.get("others_cores")
    during = "" if others is None else f"; other programs' CPU during the run {others} cores"
    lines += [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores (load average "
        f"{m['load_average']} before, {m.get('load_average_after')} after{during}); "
        f"{', '.join(f'{k} {v}' for k, v in m['versions'].items())}; "
        f"{_count(result['settings']['threads'], 'thread')} per side, medians of "
        f"{result['settings']['rounds']} rounds × {result['settings']['repeats']} repeats.",
        "",
        "| workload | iwae_np, notebook path | iwae_np, trainer path | GEMM floor | "
        "PyTorch eager (trainer) | ratio (trainer) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        c = row["config"]
        if row["workload"] == "W4":
            classic = f"{row['numpy_classic_ms_per_point']:.3f} ms/point"
            torch_side = (
                f"{row['torch_classic_ms_per_point']:.3f} ms/point"
                if "torch_classic_ms_per_point" in row
                else ""
            )
            ratio = f"{row['classic_ratio']:.2f}" if "classic_ratio" in row else ""
            lines.append(
                f"| W4 classic VI, {c['steps']} steps, per new point | {classic} | | | "
                f"{torch_side} | {ratio} |"
            )
            continue
        name = {"W1": "IWAE step", "W2": "VAE step", "W3": "log p(x)"}[row["workload"]]
        label = f"{row['workload']} {name}, k={c['k']}, n={c['n']}, {c['dtype']}"
        unit, scale = ("s", 1e-3) if row["workload"] == "W3" else ("ms", 1.0)
        notebook = f"{scale * row['numpy_ms']:.2f} {unit}"
        trainer = f"{row['numpy_trainer_ms']:.2f} ms" if "numpy_trainer_ms" in row else ""
        floor = f"{row['gemm_floor_ms']:.2f} ms" if "gemm_floor_ms" in row else ""
        if "torch_ms" in row:
            torch_side = f"{scale * row['torch_ms']:.2f} {unit}"
            if "torch_trainer_ms" in row:
                torch_side += f" ({row['torch_trainer_ms']:.2f} ms)"
            ratio = f"{row['ratio']:.2f}"
            if "trainer_ratio" in row:
                ratio += f" ({row['trainer_ratio']:.2f})"
        else:
            torch_side = ratio = ""
        lines.append(f"| {label} | {notebook} | {trainer} | {floor} | {torch_side} | {ratio} |")
    checks = targets(result)
    if checks:
        missed = [(what, value, target) for what, value, target, met in checks if not met]
        worst = max(checks, key=lambda check: check[1] / check[2])
        lines += [
            "",
            f"Targets (iwae_np ≤ {TARGET}× PyTorch on W1–W3, notebook path ≤ "
            f"{NOTEBOOK_TARGET}× trainer path): "
            + (
                f"all {len(checks)} met; the closest is {worst[0]} at {worst[1]:.2f}."
                if not missed
                else f"{len(missed)} of {len(checks)} missed: "
                + "; ".join(
                    f"{what} {value:.2f} (target {target})" for what, value, target in missed
                )
                + "."
            ),
        ]
    return "\n".join(lines)


README_BEGIN = (
    "<!-- speed table: rendered from docs/bench.json by iwae_np.bench.markdown_table "
    "(python -m iwae_np.bench render); do not edit by hand -->"
)
README_END = "<!-- end of speed table -->"


def readme_section(result):
    """The README's speed section between its markers, rendered from one run's JSON."""
    return f"{README_BEGIN}\n{markdown_table(result)}\n{README_END}"


def render_readme(readme, result):
    """``readme``'s text with the speed section replaced by the render of ``result``."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(
            f"readme: expected the markers {README_BEGIN!r} … {README_END!r}, got none"
        )
    return readme[:start] + readme_section(result) + readme[end + len(README_END) :]


def readme_table(readme):
    """The speed section as it stands in ``readme``'s text (markers included), or None."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        return None
    return readme[start : end + len(README_END)]
