"""Isolation for running a submission's code: what a worker process may touch, and the cleanup
that leaves no process of it behind.

A worker restricts itself before it runs any student code (``confine``):

- Landlock (Linux ≥ 5.13, no privileges needed): the worker may read only the Python
  installation and the ``iwae_np`` package, and write only its own temporary folder. The course
  source, the solutions, other students' submissions, the grader's output and the gradebook are
  out of reach. Where the kernel offers it, TCP is closed (ABI ≥ 4) and the worker cannot signal
  or ptrace a process outside its sandbox (ABI ≥ 6), such as the grader;
- resource limits: address space, CPU time, file size, open files, no core dumps;
- it dies with the grader (``PR_SET_PDEATHSIG``) and runs in a session of its own.

The grader side (``Reaper``) makes the grader a child subreaper for the duration of a batch, so a
process that a submission detaches (double fork, ``setsid``) is re-parented to the grader
instead of init, and is killed with the worker's process group when the worker ends.

Landlock is reported as a level (``landlock_abi``): 0 means the kernel has none, and the grader
then refuses to run unless told that unisolated grading is acceptable.
"""

import ctypes
import os
import resource
import signal
import sys
import threading
import time

# Landlock system calls (the same numbers on every architecture that has them)
CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
RULE_PATH_BENEATH = 1
CREATE_RULESET_VERSION = 1
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
PR_GET_CHILD_SUBREAPER = 37
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4

# file-system rights, by the ABI that introduced them
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_TRUNCATE = 1 << 14
FS_ALL = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | (1 << 15)


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def libc():
    """The C library, with errno kept, or None where there is none to load."""
    try:
        library = ctypes.CDLL(None, use_errno=True)
        library.syscall.restype = ctypes.c_long
        library.prctl.restype = ctypes.c_int
    except (OSError, AttributeError):  # no C library to load, or not Linux (no prctl)
        return None
    return library


def landlock_abi():
    """The Landlock ABI version this kernel offers: 0 for none (not Linux, too old, disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    library = libc()
    if library is None:
        return 0
    version = library.syscall(
        ctypes.c_long(CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1)
    )
    return max(0, int(version))


def fs_rights(abi):
    """Every file-system right this ABI knows (all of them are handled, so all are denied unless
    a rule allows them)."""
    return FS_ALL[max(v for v in FS_ALL if v <= abi)]


def landlock(read, write, abi):
    """Restrict this process and its future children: read (and execute) only beneath the paths
    in ``read``, read and write only beneath those in ``write``; no TCP (ABI ≥ 4); no signals to,
    or abstract sockets of, processes outside the sandbox (ABI ≥ 6). Paths that do not exist are
    skipped. Raises OSError if the kernel refuses."""
    library = libc()
    handled = fs_rights(abi)
    attr = RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0, 0)
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = library.syscall(
        ctypes.c_long(CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        reading = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
        for rights, paths in ((reading, read), (handled, write)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = rights if os.path.isdir(path) else rights & FILE_RIGHTS
                    rule = PathBeneathAttr(allowed & handled, fd)
                    done = library.syscall(
                        ctypes.c_long(ADD_RULE),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    )
                    if done < 0:
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
                finally:
                    os.close(fd)
        if library.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        done = library.syscall(
            ctypes.c_long(RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)
        )
        if done < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def readable_paths():
    """What a worker must read to run Python with NumPy and ``iwae_np``: the interpreter's
    installation and packages, the ``iwae_np`` package itself (not the folder around it, which
    in a development install holds the course), shared libraries, and a few system files."""
    import iwae_np

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(iwae_np.__file__)}
    paths |= {os.path.dirname(os.path.realpath(sys.executable))}
    for entry in sys.path:  # site-packages outside the prefixes (a user site, a system site)
        if entry and os.path.basename(entry) in ("site-packages", "dist-packages"):
            paths.add(entry)
    paths |= {"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache"}
    paths |= {"/sys/devices/system/cpu", "/dev/urandom", "/dev/zero"}
    paths |= {"/proc/cpuinfo", "/proc/meminfo"}
    return sorted(os.path.realpath(p) for p in paths if os.path.exists(p))


def own_proc_paths():
    """The part of /proc a worker may read: its own /proc/PID (what /proc/self leads to), never
    another process's (the grader's environ and cmdline, or another worker's)."""
    return [f"/proc/{os.getpid()}"]


def reachable(path, roots):
    """Whether ``path`` lies beneath one of ``roots`` (so a worker could read it)."""
    path = os.path.realpath(path)
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def set_limits(memory_bytes, cpu_seconds, file_bytes, open_files=256):
    """Resource limits of this process (inherited by its children): address space, CPU time,
    size of a written file, open files, no core dumps."""
    limits = [
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, int(cpu_seconds)),
        (resource.RLIMIT_FSIZE, int(file_bytes)),
        (resource.RLIMIT_NOFILE, int(open_files)),
    ]
    if memory_bytes and hasattr(resource, "RLIMIT_AS"):
        limits.append((resource.RLIMIT_AS, int(memory_bytes)))
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # a limit this system does not let a process lower
            resource.setrlimit(which, (value, hard))


def die_with_parent(parent):
    """Ask the kernel to kill this process when its parent (the grader) dies; exit at once if
    it already has."""
    library = libc() if sys.platform.startswith("linux") else None
    if library is not None:
        library.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(3)  # the grader is gone: there is no one to report to


def process_table():
    """{pid: (parent pid, start time)} of every process, from /proc ({} where there is none)."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (command) "
        try:
            table[int(name)] = (int(fields[1]), int(fields[19]))
        except (IndexError, ValueError):
            continue
    return table


class Reaper:
    """The grader's side of cleanup, as a context for one batch.

    While it is open the grader is a child subreaper (Linux): every process a worker leaves
    behind, detached or not, becomes the grader's child. ``spawn`` starts a worker in a session of
    its own; ``finish`` kills that session's process group, then every child of the grader that is
    not a live worker and was not there before the batch, and repeats until none is left."""

    def __init__(self):
        self.lock = threading.Lock()
        self.workers = set()
        self.before = set()
        self.subreaper = False
        self.previous = 0
        self.dumpable = -1

    def __enter__(self):
        library = libc() if sys.platform.startswith("linux") else None
        if library is not None:
            flag = ctypes.c_int(0)
            library.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
            self.previous = flag.value
            self.subreaper = library.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            # not dumpable: a process of the same user (without CAP_SYS_PTRACE) cannot read
            # the grader's /proc/PID/environ, cmdline or memory; Landlock is the main fence
            self.dumpable = library.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
            library.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        me = os.getpid()
        self.before = {pid for pid, (parent, _) in process_table().items() if parent == me}
        return self

    def __exit__(self, *exc):
        with self.lock:
            for pid in list(self.workers):
                kill_group(pid)
        self.sweep()
        if self.subreaper:
            libc().prctl(PR_SET_CHILD_SUBREAPER, self.previous, 0, 0, 0)
        if self.dumpable > 0:
            libc().prctl(PR_SET_DUMPABLE, self.dumpable, 0, 0, 0)
        return False

    def spawn(self, start):
        """Run ``start()`` (which returns a subprocess.Popen started with start_new_session=True)
        under the lock, so no sweep takes the new worker for a leftover."""
        with self.lock:
            process = start()
            self.workers.add(process.pid)
        return process

    def finish(self, process):
        """Kill the worker, its process group, and everything it left behind; reap them."""
        kill_group(process.pid)
        try:
            process.kill()
        except OSError:
            pass
        process.wait()
        with self.lock:
            self.workers.discard(process.pid)
        self.sweep()

    def sweep(self, rounds=200):
        """Kill and reap the grader's children that are neither live workers nor older than the
        batch, until two scans in a row find none."""
        me, quiet = os.getpid(), 0
        for _ in range(rounds):
            with self.lock:
                table = process_table()
                strays = [
                    pid
                    for pid, (parent, _) in table.items()
                    if parent == me and pid not in self.workers and pid not in self.before
                ]
                for pid in strays:
                    kill_group(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                for pid in strays:
                    try:
                        os.waitpid(pid, 0)
                    except (ChildProcessError, OSError):
                        pass
            quiet = 0 if strays else quiet + 1
            if quiet >= 2:
                return
            time.sleep(0.01)


def kill_group(pid):
    """SIGKILL the process group led by ``pid`` (a worker's session), ignoring one that is gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass
