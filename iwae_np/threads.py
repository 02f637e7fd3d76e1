"""How many threads the matrix products get, decided by how busy the machine is.

NumPy's BLAS (OpenBLAS) runs a matrix product on every core, and its threads spin while they
wait for each other. On an idle 2-core machine that halves a large product's time. On a machine
where another program keeps a core busy, the spinning threads fight it for the core, and one
training step was measured 19× slower with two threads than with one (docs/design.md §8).

So the package's long loops (``train``, ``fit_local``, ``log_marginal``, ``expected_bound``) run
inside ``adaptive()``: every ``interval`` seconds it estimates how many cores *other* processes
are using, from the machine's busy time (``/proc/stat``) minus this process's own CPU time, and
gives BLAS the cores that are left, at least one, and never more than the limit in force when
the loop started (so ``threadpoolctl.threadpool_limits(1)`` around a call pins it to one thread:
bit-for-bit results need a fixed thread count). Nothing changes outside those loops, and
importing the package changes no setting. Where the busy time cannot be read (not Linux), the
thread count is left alone.
"""

import os
import time

_CONTROLLER = []  # one threadpoolctl controller, made on first use (it scans loaded libraries)
_MARK = []  # (monotonic time, machine busy seconds, own CPU seconds) at the last measurement


def _controller():
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _machine_busy_seconds():
    """CPU-seconds all processes have spent busy since boot (None where /proc/stat is absent)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    times = os.times()
    return times.user + times.system


def others_busy(min_window=0.05):
    """Cores' worth of CPU that *other* processes used since the last call (the first call
    samples a ``min_window``-second window). None where it cannot be measured."""
    now, busy, own = time.monotonic(), _machine_busy_seconds(), _own_cpu_seconds()
    if busy is None:
        return None
    if not _MARK:
        time.sleep(min_window)
        _MARK.append((now, busy, own))
        now, busy, own = time.monotonic(), _machine_busy_seconds(), _own_cpu_seconds()
    then, busy_then, own_then = _MARK[0]
    if now - then < min_window:
        return None  # too short a window to say anything: keep the last decision
    _MARK[0] = (now, busy, own)
    return max(0.0, ((busy - busy_then) - (own - own_then)) / (now - then))


class adaptive:  # noqa: N801 (a context manager, named like threadpoolctl's)
    """Context manager: BLAS gets the cores other processes leave free, re-decided when the loop
    calls ``update()`` and ``interval`` seconds have passed.

    >>> with adaptive() as threads:
    ...     for step in range(3):
    ...         threads.update()  # cheap: a real decision at most every `interval` seconds
    """

    def __init__(self, interval=2.0, cores=None):
        self.interval = interval
        self.cores = cores or os.cpu_count() or 1
        self.threads = None  # the current decision, None before the first
        self._limit = None
        self._decided_at = 0.0

    def __enter__(self):
        # Never more threads than the caller allows: a limit set outside (threadpoolctl, or
        # OPENBLAS_NUM_THREADS) is kept, so a run pinned to one thread stays reproducible.
        allowed = [
            pool["num_threads"] for pool in _controller().info() if pool["user_api"] == "blas"
        ]
        if allowed:
            self.cores = max(1, min(self.cores, min(allowed)))
        self._decide()
        return self

    def update(self):
        """Re-decide if ``interval`` seconds have passed since the last decision."""
        if time.monotonic() - self._decided_at >= self.interval:
            self._decide()

    def _decide(self):
        self._decided_at = time.monotonic()
        if self.cores == 1:
            return
        others = others_busy()
        if others is None:
            return
        threads = max(1, min(self.cores, self.cores - round(others)))
        if threads != self.threads:
            self._release()
            self._limit = _controller().limit(limits=threads, user_api="blas")
            self.threads = threads

    def _release(self):
        if self._limit is not None:
            self._limit.restore_original_limits()
            self._limit = None

    def __exit__(self, *exc):
        self._release()
