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
