"""The thread policy: BLAS gets the cores other processes leave free, never more than the limit
in force, and the original setting comes back afterwards."""

import subprocess
import sys
import time

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from iwae_np import threads


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.mark.blas_threads
def test_a_busy_core_takes_one_thread_away_and_the_setting_is_restored():
    before = _blas_threads()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        with threads.adaptive(cores=2, interval=0.0) as policy:
            time.sleep(0.5)  # another process burns a whole core meanwhile
            policy.update()
            assert policy.threads == 1 and _blas_threads() == [1] * len(before)
    finally:
        busy.kill()
        busy.wait()
    assert _blas_threads() == before


@pytest.mark.blas_threads
def test_an_outer_limit_is_never_exceeded():
    with threadpool_limits(1, user_api="blas"):
        with threads.adaptive(cores=2) as policy:
            assert policy.cores == 1 and _blas_threads() == [1] * len(_blas_threads())


def test_others_busy_measures_a_spinning_process():
    threads.others_busy()  # start a window
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        measured = threads.others_busy()
    finally:
        busy.kill()
        busy.wait()
    assert measured is not None and measured > 0.6  # at least most of one core, others aside


def _fresh_kernel_state(monkeypatch):
    """As if no kernel call had run yet: the next one starts after a pause."""
    monkeypatch.setattr(threads, "_KERNEL", [-float("inf"), 0.0, 0.0, None, -float("inf")])


@pytest.mark.blas_threads
def test_a_kernel_call_on_a_busy_machine_gets_the_free_cores_and_restores_them(monkeypatch):
    """Outside adaptive() (a notebook's own autograd.grad), a kernel call limits BLAS and its
    elementwise passes to the cores other processes leave free, and restores BLAS afterwards."""
    before = _blas_threads()
    if max(before, default=1) < 2:
        pytest.skip("BLAS already runs on one thread")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # not pinned by the environment
    monkeypatch.setattr(threads, "_CORES", [2, 2])
    _fresh_kernel_state(monkeypatch)
    monkeypatch.setattr(threads, "others_running", lambda: 1)  # another process is running
    with threads.kernel_call():
        assert _blas_threads() == [1] * len(before) and threads.elementwise() == 1
    assert _blas_threads() == before and threads.elementwise() == 2
    monkeypatch.setattr(threads, "others_running", lambda: 0)  # idle: nothing changes
    _fresh_kernel_state(monkeypatch)
    with threads.kernel_call():
        assert _blas_threads() == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # pinned: kept whatever the load
    monkeypatch.setattr(threads, "others_running", lambda: 1)
    _fresh_kernel_state(monkeypatch)
    with threads.kernel_call():
        assert _blas_threads() == before
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    with threads.adaptive(cores=2, interval=1e9) as policy:  # adaptive decides, not the kernel
        decided = _blas_threads()
        with threads.kernel_call():
            assert _blas_threads() == decided
    assert policy.cores == 2


def _clock(monkeypatch, now, busy, own):
    monkeypatch.setattr(threads.time, "monotonic", lambda: now)
    monkeypatch.setattr(threads, "machine_busy_seconds", lambda: busy)
    monkeypatch.setattr(threads, "_own_cpu_seconds", lambda: own)


@pytest.mark.blas_threads
def test_a_kernel_call_reads_the_load_of_the_recent_window_only(monkeypatch):
    """Calls close together decide from the other processes' CPU time over the last window; after
    a pause, a burst of work that happened before it is not counted (the bench's alternating
    sides, or another program that has since stopped)."""
    before = _blas_threads()
    if max(before, default=1) < 2:
        pytest.skip("BLAS already runs on one thread")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_CORES", [2, 2])
    monkeypatch.setattr(threads, "others_running", lambda: 0)  # nothing runnable right now
    # a run of calls: the window opened at t = 100 s; at t = 100.3 s the machine has been busy
    # 0.9 s more, 0.3 s of it this process: others used 0.6 / 0.3 = 2 cores -> 1 thread left
    monkeypatch.setattr(threads, "_KERNEL", [100.0, 50.0, 10.0, None, 100.29])
    _clock(monkeypatch, 100.3, 50.9, 10.3)
    with threads.kernel_call():
        assert _blas_threads() == [1] * len(before)
    # the same busy time, but this process paused for 0.5 s before calling again: the burst is
    # history; the instant's count (nothing else running) decides, and a new window opens
    monkeypatch.setattr(threads, "_KERNEL", [100.0, 50.0, 10.0, None, 99.8])
    _clock(monkeypatch, 100.3, 50.9, 10.3)
    with threads.kernel_call():
        assert _blas_threads() == before
    # that opened a window at t = 100.3 s with the full count: a call at the same moment keeps
    # it without re-reading the machine's busy time
    monkeypatch.setattr(threads, "machine_busy_seconds", lambda: pytest.fail("re-read"))
    with threads.kernel_call():
        assert _blas_threads() == before
    # within a window, the last decision stands without re-reading anything
    monkeypatch.setattr(threads, "machine_busy_seconds", lambda: pytest.fail("re-read"))
    monkeypatch.setattr(threads, "_KERNEL", [100.2, 50.0, 10.0, 1, 100.29])
    with threads.kernel_call():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_elementwise_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.allowed_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert threads.allowed_cores() == threads.cores()


@pytest.mark.blas_threads
def test_blas_threads_holds_the_count_and_restores_it():
    """blas_threads(1) holds every BLAS library to one thread inside, restores each library's own
    count on exit (even after an exception), and never raises a lower count set outside."""
    before = _blas_threads()
    with threads.blas_threads(1):
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before
    with pytest.raises(RuntimeError), threads.blas_threads(1):
        raise RuntimeError("inside")
    assert _blas_threads() == before
    with threadpool_limits(1):
        with threads.blas_threads(2):
            assert _blas_threads() == [1] * len(before)
