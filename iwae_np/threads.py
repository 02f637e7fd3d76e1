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

import math
import os
import time

_CONTROLLER = []  # one threadpoolctl controller, made on first use (it scans loaded libraries)
_MARK = []  # (monotonic time, machine busy seconds, own CPU seconds) at the last measurement
_ELEMENTWISE = []  # the threads an adaptive() loop allows the kernels' elementwise passes


def cores():
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def elementwise():
    """How many threads the kernels may split a large elementwise pass over: the decision of the
    innermost ``adaptive()`` loop running, else every core this process may use. (Those threads
    sleep while they wait, so unlike BLAS's spinning ones they cost nothing on a busy machine
    beyond the gain they no longer bring.)"""
    return _ELEMENTWISE[-1] if _ELEMENTWISE else _CORES[1]


def pinned():
    """Has the environment fixed the thread count (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or
    MKL_NUM_THREADS set)? Then a kernel call keeps it whatever the load: the benchmark's workers
    pin both sides this way, and must not read the other side's turn as load."""
    return any(name in os.environ for name in _THREAD_VARIABLES)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def allowed_cores():
    """The cores this process may use, or fewer if the environment limits the thread pools
    (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS: the smallest set), as the
    benchmark's workers do: the elementwise passes' threads outside ``adaptive()``."""
    limits = []
    for name in _THREAD_VARIABLES:
        try:
            limits.append(int(os.environ[name]))
        except (KeyError, ValueError):
            pass
    return max(1, min([cores(), *[limit for limit in limits if limit > 0]]))


def _controller():
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def machine_busy_seconds():
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


def others_busy(min_window=0.05, wait=True):
    """Cores' worth of CPU that *other* processes used since the last call (the first call
    samples a ``min_window``-second window, or with ``wait=False`` only starts one and returns
    None). None where it cannot be measured."""
    now, busy, own = time.monotonic(), machine_busy_seconds(), _own_cpu_seconds()
    if busy is None:
        return None
    if not _MARK:
        if not wait:
            _MARK.append((now, busy, own))
            return None
        time.sleep(min_window)
        _MARK.append((now, busy, own))
        now, busy, own = time.monotonic(), machine_busy_seconds(), _own_cpu_seconds()
    then, busy_then, own_then = _MARK[0]
    if now - then < min_window:
        return None  # too short a window to say anything: keep the last decision
    _MARK[0] = (now, busy, own)
    return max(0.0, ((busy - busy_then) - (own - own_then)) / (now - then))


def others_running():
    """How many tasks other than the calling thread are runnable right now (the running count of
    ``/proc/loadavg``, minus one), or None where it cannot be read. An instant's snapshot: cheap,
    but noisy, so it only seeds a decision until a measured window replaces it."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - 1)


# A kernel call's view of the load: [start of the current window (monotonic seconds), machine
# busy seconds then, own CPU seconds then, the cores other processes left free (None: all), when
# the last kernel call ended]
_KERNEL = [-math.inf, 0.0, 0.0, None, -math.inf]


class kernel_call:  # noqa: N801 (a context manager, like adaptive)
    """Context for one kernel call made outside any ``adaptive()`` loop (a notebook calling
    ``autograd.grad`` itself): when other processes keep cores busy, BLAS and the elementwise
    passes get only the cores left free for the duration of the call, and BLAS's setting is
    restored at once afterwards. On an idle machine, inside ``adaptive()`` (which already
    decides), or when the environment pins the thread count (``pinned()``), nothing changes; the
    count is never raised.

    How the load is read: only while this process is calling kernels. Calls close together (a
    training loop in a notebook) measure the other processes' CPU time over a window of
    ``window`` seconds and decide from that. After a pause (no kernel call for ``pause``
    seconds), the time before it says nothing about now: another program's burst of work that
    has since stopped would count as load for the whole next run of calls. So the first call
    after a pause decides from an instant's count of runnable tasks and opens a fresh window."""

    window = 0.25
    pause = 0.1

    def __enter__(self):
        self._restore, self._pushed = None, False
        if _ELEMENTWISE or _CORES[0] == 1 or pinned():
            return self
        now = time.monotonic()
        paused = now - _KERNEL[4] > self.pause
        if paused or now - _KERNEL[0] >= self.window:
            busy, own = machine_busy_seconds(), _own_cpu_seconds()
            if busy is None:
                return self  # cannot be measured: leave the count alone
            if paused:
                others = others_running()
            else:
                others = ((busy - _KERNEL[1]) - (own - _KERNEL[2])) / (now - _KERNEL[0])
            free = None if others is None else max(1, _CORES[0] - round(max(0.0, others)))
            _KERNEL[:4] = [now, busy, own, free]
        free = _KERNEL[3]
        if free is None or free >= _CORES[0]:
            return self
        self._restore = blas_threads(free)
        self._restore.__enter__()
        _ELEMENTWISE.append(free)
        self._pushed = True
        return self

    def __exit__(self, *exc):
        if self._restore is not None:
            self._restore.__exit__(*exc)
        if self._pushed:
            _ELEMENTWISE.pop()
        _KERNEL[4] = time.monotonic()


class blas_threads:  # noqa: N801 (a context manager)
    """Context: every BLAS library held to at most ``count`` threads, its own count restored on
    exit (a lower count set outside is kept)."""

    def __init__(self, count):
        self.count = count
        self._restore = []

    def __enter__(self):
        for library in _controller().lib_controllers:
            if library.user_api == "blas" and library.num_threads > self.count:
                self._restore.append((library, library.num_threads))
                library.set_num_threads(self.count)
        return self

    def __exit__(self, *exc):
        for library, count in self._restore:
            library.set_num_threads(count)
        self._restore = []


class adaptive:  # noqa: N801 (a context manager, named like threadpoolctl's)
    """Context manager: BLAS gets the cores other processes leave free, re-decided when the loop
    calls ``update()`` and ``interval`` seconds have passed.

    >>> with adaptive() as threads:
    ...     for step in range(3):
    ...         threads.update()  # cheap: a real decision at most every `interval` seconds
    """

    def __init__(self, interval=2.0, cores=None):
        self.interval = interval
        self.cores = cores or _CORES[0]
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
        _ELEMENTWISE.append(self.cores)
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
        _ELEMENTWISE[-1] = threads
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
        _ELEMENTWISE.pop()


_CORES = [cores(), allowed_cores()]  # the cores, and those the environment allows
