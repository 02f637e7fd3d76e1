"""``python -m iwae_np bench``: how fast iwae_np is, side by side with PyTorch when installed.

Workloads (Burda et al.'s MNIST architecture: 784-200-200-50 encoder, 50-200-200-784 decoder,
tanh, Bernoulli likelihood, on random binary data):

    W1  one IWAE gradient step, batch 20, k ∈ {1, 5, 50}, float64 and float32
    W2  one VAE gradient step, batch 100, k = 1
    W3  log p(x) with k = 5000 (and k = 1000, to show time linear in k) for 200 points, with
        peak memory
    W4  inference for new points: classic VI (100 Adam steps) vs the encoder, seconds per point

How it measures: each side runs in its own worker process, and the two take turns, one round
of repeats at a time, after a pause that lets the other side's thread pool go to sleep. In one
process, OpenBLAS's and torch's thread pools keep spinning after their work and slow whichever
library runs next (docs/design.md §9). Both use the same number of threads. Both run with
``runtime.tune_malloc()``: torch's CPU allocator also gets its memory from glibc. Without the
switch, torch's time for the same step varied from 27 to 41 ms within one process, depending on
what it had allocated before. Each timing is the median over all repeats; the ratio is numpy's
median over torch's. Before any timing counts, both sides compute the loss from the same θ, x and
ε, and the table flags any disagreement.

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
    w1 = [("W1", {"k": k, "n": 20, "dtype": dtype}) for dtype in ("float64", "float32")
          for k in (1, 5, 50)]
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
    """Prepares each workload once (``prepare``), then times it on request."""

    def __init__(self):
        from ..app.runtime import tune_malloc

        tune_malloc()  # both sides run with the same allocator settings
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
        return {"times": _times(fn, repeats), "value": fn()}


class NumpySide(_Side):

    def prepare(self, workload, config):
        import autograd
        import autograd.numpy as anp

        from .. import evaluate, vi
        from ..bounds import BOUNDS

        model, theta, x, eps = _setup(config)
        if workload in ("W1", "W2"):
            bound = BOUNDS["iwae" if config["k"] > 1 else "elbo"]
            step = autograd.value_and_grad(lambda t: -anp.mean(bound(model.log_weights(t, x, eps))))
            return lambda: float(step(theta)[0])
        if workload == "W3":
            return lambda: float(np.mean(evaluate.log_marginal(model, theta, x, k=config["k"])))
        classic = lambda: vi.fit_local(model, theta, x, steps=config["steps"], eval_replicates=1)
        return {"classic": classic, "amortized": lambda: model.encode(theta, x)}

    def measure(self, workload, config, fn, repeats):
        if workload == "W3":
            tracemalloc.start()
            value = fn()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return {"times": _times(fn, repeats), "value": value, "peak_mb": peak / 1e6}
        return {"times": _times(fn, repeats), "value": fn(), "gemm_floor": _times(_gemm_floor(config), repeats)}


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
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            A, W, G = (rng.standard_normal(s).astype(dtype) for s in ((rows, d_in), (d_in, d_out), (rows, d_out)))
            products.append((A, W))  # forward
            products.append((A.T, G))  # ∂/∂W
            if not (first_into_data and i == 0):
                products.append((G, W.T))  # ∂/∂A
    return lambda: [a @ b for a, b in products]


class TorchSide(_Side):
    def __init__(self, threads):
        import torch

        super().__init__()
        torch.set_num_threads(threads)
        self.torch = torch

    def _tensors(self, config):
        torch = self.torch
        model, theta, x, eps = _setup(config)
        dtype = getattr(torch, config["dtype"])
        blocks = {name: torch.tensor(value, dtype=dtype, requires_grad=True)
                  for name, value in model.layout.unflatten(theta).items()}
        return model, blocks, torch.tensor(x, dtype=dtype), torch.tensor(eps, dtype=dtype)

    def _mlp(self, blocks, prefix, layers, h):
        for i in range(layers):
            h = h @ blocks[f"{prefix}.{i}.W"] + blocks[f"{prefix}.{i}.b"]
            if i < layers - 1:
                h = self.torch.tanh(h)
        return h

    def _log_weights(self, model, blocks, x, eps):
        torch, z_dim = self.torch, model.z_dim
        h = self._mlp(blocks, "encoder", model.encoder.n_layers, x)
        mean, log_std = h[:, :z_dim], h[:, z_dim:]
        z = mean + torch.exp(log_std) * eps
        logits = self._mlp(blocks, "decoder", model.decoder.n_layers, z)
        log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        log_prior = (-0.5 * z * z - half_log_2pi).sum(-1)
        log_q = (-0.5 * eps * eps - half_log_2pi - log_std).sum(-1)
        return log_lik + log_prior - log_q

    def prepare(self, workload, config):
        torch = self.torch
        model, blocks, x, eps = self._tensors(config)
        params = list(blocks.values())
        k = config.get("k", 1)
        if workload in ("W1", "W2"):
            def step():
                for p in params:
                    p.grad = None
                log_w = self._log_weights(model, blocks, x, eps)
                loss = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
                loss.backward()
                return float(loss.detach())
            return step
        if workload == "W3":
            def log_marginal():
                with torch.no_grad():
                    per_chunk = max(1, 5000 // k)
                    out = []
                    for start in range(0, len(x), per_chunk):
                        xb = x[start:start + per_chunk]
                        running = torch.full((len(xb),), -math.inf, dtype=x.dtype)
                        for done in range(0, k, 5000):
                            e = torch.randn(min(5000, k - done), len(xb), model.z_dim, dtype=x.dtype)
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
                mean, log_std = lam[:, :model.z_dim], lam[:, model.z_dim:]
                e = torch.randn(1, config["n"], model.z_dim, dtype=x.dtype)
                z = mean + torch.exp(log_std) * e
                logits = self._mlp(blocks, "decoder", decoder_layers, z)
                log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, x.expand_as(logits), reduction="none").sum(-1)
                elbo = log_lik + (-0.5 * z * z).sum(-1) + (0.5 * e * e + log_std).sum(-1)
                (-elbo.sum()).backward()
                optimizer.step()

        def amortized():
            with torch.no_grad():
                self._mlp(blocks, "encoder", model.encoder.n_layers, x)
        return {"classic": classic, "amortized": amortized}


def worker(side, threads):
    """A worker process: reads one JSON request per line, answers one JSON line each."""
    runner = NumpySide() if side == "numpy" else TorchSide(threads)
    for line in sys.stdin:
        request = json.loads(line)
        result = runner.run(request["workload"], request["config"], request["repeats"])
        print(json.dumps(result), flush=True)


# ------------------------------------------------------------------ the driver


class _Worker:
    def __init__(self, side, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "iwae_np.bench.runner", "--worker", side, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, workload, config, repeats):
        self.process.stdin.write(json.dumps({"workload": workload, "config": config,
                                             "repeats": repeats}) + "\n")
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


def run(repeats=15, rounds=3, quick=False, use_torch=True, threads=None, settle=0.5, out=print):
    """Run every workload on both sides, alternating; return the rows and print a table.

    settle: seconds to wait before each turn. After its work, a thread pool keeps its threads
    spinning for a while (OpenBLAS's thread timeout, OpenMP's spin count); on 2 cores those
    spinning threads would steal time from the other side's first repeats."""
    threads = threads or os.cpu_count() or 1
    sides = {"numpy": _Worker("numpy", threads)}
    if use_torch and torch_available():
        sides["torch"] = _Worker("torch", threads)
    elif use_torch:
        out("PyTorch is not installed: numpy side only (pip install torch==2.13.0 for the reference)")
    out(f"threads per side: {threads}; rounds: {rounds}; repeats per round: {repeats}; "
        f"{settle} s settle before each turn")
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
    return rows


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
        if "gemm_floor" in results[0]:
            row["gemm_floor_ms"] = 1e3 * float(np.median(_merge(results, "gemm_floor")))
        if "peak_mb" in results[0]:
            row["peak_mb"] = results[0]["peak_mb"]
    if "torch_ms" in row:
        row["ratio"] = row["numpy_ms"] / row["torch_ms"]
        if workload in ("W1", "W2"):  # the same θ, x, ε: the same loss, or the timing is moot
            tolerance = 1e-4 if config["dtype"] == "float32" else 1e-9
            row["same_value"] = bool(abs(row["numpy_value"] - row["torch_value"])
                                     <= tolerance * max(1.0, abs(row["torch_value"])))
    if "torch_classic_ms_per_point" in row:
        row["classic_ratio"] = row["numpy_classic_ms_per_point"] / row["torch_classic_ms_per_point"]
    return row


def _format_row(row):
    c = row["config"]
    if row["workload"] == "W4":
        text = (f"W4 new points (n={c['n']}): classic VI ({c['steps']} steps) "
                f"{row['numpy_classic_ms_per_point']:.3f} ms/point, encoder "
                f"{1e3 * row['numpy_amortized_ms_per_point']:.2f} µs/point")
        if "classic_ratio" in row:
            text += (f" | torch classic {row['torch_classic_ms_per_point']:.3f} ms/point "
                     f"(ratio {row['classic_ratio']:.2f}), encoder "
                     f"{1e3 * row['torch_amortized_ms_per_point']:.2f} µs/point")
        return text
    label = (f"{row['workload']} k={c['k']:<4} n={c['n']:<3} {c['dtype']}")
    text = f"{label}: numpy {row['numpy_ms']:8.2f} ms"
    if "gemm_floor_ms" in row:
        text += f" (GEMM floor {row['gemm_floor_ms']:6.2f} ms)"
    if "peak_mb" in row:
        text += f", peak {row['peak_mb']:.0f} MB"
    if "torch_ms" in row:
        text += f" | torch {row['torch_ms']:8.2f} ms | ratio {row['ratio']:.2f}"
        if "same_value" in row:
            text += "" if row["same_value"] else "  (LOSS DIFFERS: not the same computation)"
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("numpy", "torch"), required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    arguments = parser.parse_args()
    worker(arguments.worker, arguments.threads)
