"""The benchmark runs on a fresh install, with or without PyTorch; its workloads are the same
computation on both sides, and evaluation memory does not grow with the number of points. No
assertion here is about speed: speed is reported by `python -m iwae_np bench`, not tested."""

import numpy as np
import pytest

from iwae_np.app import runtime
from iwae_np.bench import runner as bench


def test_bench_runs_and_reports_every_workload():
    lines = []
    rows = bench.run(repeats=1, rounds=1, quick=True, use_torch=bench.torch_available(),
                     settle=0.0, out=lines.append)
    assert [r["workload"] for r in rows] == ["W1"] * 6 + ["W2", "W3", "W3", "W4"]
    for row in rows:
        if row["workload"] in ("W1", "W2"):
            assert row["numpy_ms"] > 0 and row["gemm_floor_ms"] > 0
            assert np.isfinite(row["numpy_value"])
            if "torch_ms" in row:
                assert row["same_value"], row
        if row["workload"] == "W3":
            assert row["peak_mb"] < 300
    assert len(lines) >= len(rows)


def test_evaluation_memory_does_not_depend_on_the_number_of_points():
    numpy_side = bench.NumpySide()
    peaks = [numpy_side.run("W3", {"k": 5000, "n": n, "dtype": "float64"}, 1)["peak_mb"] for n in (4, 12)]
    assert peaks[1] == pytest.approx(peaks[0], rel=0.1) and max(peaks) < 300


def test_torch_side_computes_the_same_loss():
    pytest.importorskip("torch")
    config = {"k": 5, "n": 4, "dtype": "float64"}
    numpy_value = bench.NumpySide().run("W1", config, 1)["value"]
    torch_value = bench.TorchSide(1).run("W1", config, 1)["value"]
    assert torch_value == pytest.approx(numpy_value, rel=1e-12)


def test_tune_malloc_is_idempotent():
    first = runtime.tune_malloc()
    assert runtime.tune_malloc() == first
