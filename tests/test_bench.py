"""The benchmark runs on a fresh install, with or without PyTorch; its workloads are the same
computation on both sides, and evaluation memory does not grow with the number of points. No
assertion here is about speed: speed is reported by `python -m iwae_np bench`, not tested."""

import ctypes
import json
import subprocess
import sys
import time
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def _result(load=0.5, ratio=1.2, notebook=10.0, trainer=11.0):
    """A minimal bench result, as ``bench --json`` writes it."""
    row = {
        "workload": "W1",
        "config": {"k": 5, "n": 20, "dtype": "float64"},
        "numpy_ms": notebook,
        "numpy_trainer_ms": trainer,
        "gemm_floor_ms": 3.0,
        "torch_ms": notebook / ratio,
        "torch_trainer_ms": trainer / ratio,
        "ratio": ratio,
        "trainer_ratio": ratio,
        "notebook_over_trainer": notebook / trainer,
    }
    return {
        "machine": {
            "cpu": "AMD EPYC",
            "cores": 2,
            "date": "2026-11-30 12:00",
            "load_average": load,
            "load_average_after": load,
            "versions": {"numpy": "2.3"},
        },
        "settings": {"repeats": 15, "rounds": 3, "threads": 2},
        "rows": [row],
    }


def test_the_readme_speed_table_is_the_render_of_the_committed_run():
    """The README's table cannot drift from the run it claims: it must be exactly what
    markdown_table renders from docs/bench.json (python -m iwae_np.bench render writes it)."""
    result = json.loads((ROOT / "docs" / "bench.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert bench.readme_table(readme) == bench.readme_section(result)


def test_the_table_states_the_targets_and_a_loaded_run():
    met = bench.markdown_table(_result())
    assert "all 3 met" in met and "Provisional" not in met
    missed = bench.markdown_table(_result(ratio=1.7, notebook=14.0, trainer=10.0))
    assert "3 of 3 missed" in missed
    loaded = bench.markdown_table(_result(load=3.5))
    assert loaded.startswith("**Provisional: measured on a loaded machine (load average 3.5")
    assert bench.loaded(_result(load=3.5)) and not bench.loaded(_result())
    # other programs' CPU measured during the run counts; the load average after it does not
    # (it includes the bench's own workers)
    busy_during = _result()
    busy_during["machine"]["others_cores"] = 0.9
    assert bench.loaded(busy_during)
    assert "other programs' CPU during the run 0.9 cores" in bench.markdown_table(busy_during)
    after_only = _result()
    after_only["machine"].update(load_average_after=3.5, others_cores=0.1)
    assert not bench.loaded(after_only)


def test_others_since_measures_another_process():
    """The bench's measure of other programs' CPU sees a process spinning beside it (measured
    before the spinner is waited for: a waited-for child's CPU counts as the bench's own)."""
    mark = bench.busy_mark()
    if mark is None:
        pytest.skip("no /proc/stat")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        others = bench.others_since(mark)
    finally:
        busy.kill()
        busy.wait()
    assert others > 0.5


def test_render_readme_replaces_only_the_speed_section(tmp_path):
    readme = f"intro\n\n{bench.README_BEGIN}\nold table\n{bench.README_END}\n\nafter\n"
    rendered = bench.render_readme(readme, _result())
    assert rendered.startswith("intro\n\n") and rendered.endswith("\n\nafter\n")
    assert bench.readme_table(rendered) == bench.readme_section(_result())
    with pytest.raises(ValueError, match="readme: expected the markers"):
        bench.render_readme("no markers here", _result())
    from iwae_np.bench.__main__ import main

    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "run.json").write_text(json.dumps(_result()))
    arguments = ["render", "--json", str(tmp_path / "run.json")]
    assert main([*arguments, "--readme", str(tmp_path / "README.md")]) == 0
    assert bench.readme_table((tmp_path / "README.md").read_text()) == bench.readme_section(
        _result()
    )
    assert main([*arguments, "--readme", str(tmp_path / "missing.md")]) == 2


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
