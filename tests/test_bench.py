"""The benchmark runs on a fresh install, with or without PyTorch; its workloads are the same
computation on both sides, and evaluation memory does not grow with the number of points. No
assertion here is about speed: speed is reported by `python -m iwae_np bench`, not tested."""

import ctypes

import numpy as np
import pytest

from iwae_np import runtime
from iwae_np.bench import runner as bench


@pytest.mark.slow
def test_bench_runs_and_reports_every_workload():
    lines = []
    result = bench.run(
        repeats=1,
        rounds=1,
        quick=True,
        use_torch=bench.torch_available(),
        settle=0.0,
        out=lines.append,
    )
    rows = result["rows"]
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert lines[0].startswith("machine: ")
    assert [r["workload"] for r in rows] == ["W1"] * 6 + ["W2", "W3", "W3", "W4"]
    for row in rows:
        if row["workload"] in ("W1", "W2"):
            assert row["numpy_ms"] > 0 and row["gemm_floor_ms"] > 0
            assert row["numpy_trainer_ms"] > 0
            assert np.isfinite(row["numpy_value"])
            if "torch_ms" in row:
                assert row["same_value"], row
        if row["workload"] == "W3":
            assert row["peak_mb"] < 300
    assert len(lines) >= len(rows)
    table = bench.markdown_table(result)  # the README's table is rendered from this JSON
    assert table.count("\n| W") == len(rows)


def test_a_loaded_machine_is_flagged(monkeypatch):
    lines = []
    bench.warn_if_loaded(3.5, 2, lines.append)
    bench.warn_if_loaded(1.2, 2, lines.append)
    assert len(lines) == 1 and lines[0].startswith("WARNING: the machine is loaded")


@pytest.mark.slow
def test_evaluation_memory_does_not_depend_on_the_number_of_points():
    numpy_side = bench.NumpySide()
    peaks = [
        numpy_side.run("W3", {"k": 5000, "n": n, "dtype": "float64"}, 1)["peak_mb"] for n in (4, 12)
    ]
    assert peaks[1] == pytest.approx(peaks[0], rel=0.1) and max(peaks) < 300


@pytest.mark.slow
def test_torch_side_computes_the_same_loss():
    pytest.importorskip("torch")
    config = {"k": 5, "n": 4, "dtype": "float64"}
    numpy_value = bench.NumpySide().run("W1", config, 1)["value"]
    torch_value = bench.TorchSide(1).run("W1", config, 1)["value"]
    assert torch_value == pytest.approx(numpy_value, rel=1e-12)


class _FakeLibc:
    """Stands in for ctypes.CDLL(libc): records each mallopt(param, value) call."""

    def __init__(self, has_mallopt=True, result=1):
        self.calls = []
        if has_mallopt:
            self.mallopt = self._Mallopt(self.calls, result)

    class _Mallopt:
        def __init__(self, calls, result):
            self.calls, self.result = calls, result
            self.argtypes = self.restype = None

        def __call__(self, param, value):
            self.calls.append((param, value))
            return self.result


@pytest.fixture
def fake_libc(monkeypatch):
    """Make tune_malloc see a fresh process (not yet tuned) and a fake libc; returns a function
    installing a _FakeLibc(**options) as what ctypes.CDLL loads."""
    monkeypatch.setitem(runtime.state, "tuned", False)

    def install(**options):
        libc = _FakeLibc(**options)
        monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
        return libc

    return install


def test_tune_malloc_sets_both_thresholds_once(fake_libc):
    libc = fake_libc()
    assert runtime.tune_malloc(threshold=1 << 20) is True
    # mallopt(M_MMAP_THRESHOLD = -3, ·) and mallopt(M_TRIM_THRESHOLD = -1, ·), glibc's malloc.h
    assert sorted(libc.calls) == [(-3, 1 << 20), (-1, 1 << 20)]
    assert runtime.tune_malloc(threshold=1 << 20) is True
    assert len(libc.calls) == 2  # idempotent: the second call does not ask libc again


def test_tune_malloc_clips_the_threshold_to_a_c_int(fake_libc):
    libc = fake_libc()
    assert runtime.tune_malloc(threshold=1 << 40) is True
    assert {value for _, value in libc.calls} == {2**31 - 1}


def test_tune_malloc_reports_failure_without_glibcs_mallopt(fake_libc, monkeypatch):
    libc = fake_libc(has_mallopt=False)  # musl, macOS: no mallopt
    assert runtime.tune_malloc() is False
    libc = fake_libc(result=0)  # mallopt refused the value: not tuned, and not cached as tuned
    assert runtime.tune_malloc() is False
    assert runtime.tune_malloc() is False and len(libc.calls) >= 2

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)  # Windows: no libc to load
    assert runtime.tune_malloc() is False
