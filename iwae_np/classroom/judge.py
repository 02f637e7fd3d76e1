"""The trusted side of grading one notebook: scores are computed here, never in the student's
process.

For a submission the judge starts a worker (``worker``), a fresh isolated process
(``sandbox``), and has it run the source's setup cells and the student's answer cells. It then
runs the source's test cells, hidden tests included, in its own namespace, where each function
the student defined is a ``FunctionProxy``: a call sends the arguments to the worker and gets back
plain data (``wire``). Checks compare that data with expected values computed here. So nothing the
submission does in its own process (patching the checks, reading the caller's frames, a custom
exception handler, a background process) can reach a score.

A test cell is worth the points the source gives it. Its checks carry points that add up to them
(a visible check and a hidden one, say), which gives partial credit; a cell that raised with no
check recorded scores 0. A forbidden name in the answers a test uses scores the test 0; dynamic
code or introspection in any answer cell (``notebooks.dynamic_uses``) scores every test of the
notebook 0, since it runs in the process that every answer shares.

When the worker dies or runs out of time during a test, that test keeps the points its checks had
earned, is marked "crashed" or "timeout", and a new worker runs the remaining tests (the answer
cell that crashed is left out from then on). When the notebook's own time limit is reached, the
tests not yet run score 0 as "timeout".
"""

import contextlib
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import checks, notebooks, sandbox, wire

BOOT = "from iwae_np.classroom.worker import main; main()"
DYNAMIC = " dynamic"  # the key of dynamic code in grade_notebook's static findings
STARTUP_SECONDS = 60  # importing NumPy and the package in a fresh process, on a busy machine
MAX_RESTARTS = 6


@dataclass
class Limits:
    """What a submission may use. cell_timeout: seconds of CPU time for one cell (an answer
    cell, or all the calls of one test cell), and three times that (plus 5 s) of wall time, for
    code that waits; notebook_timeout: seconds of wall time for the whole notebook, restarts
    included; memory_mb: the worker's address space; file_mb: the largest file it may write;
    isolation: the Landlock ABI to apply (0: none, see sandbox).

    A cell's limit counts CPU time so that a busy grading machine (many workers at once, other
    users) does not fail a correct submission: its CPU time does not depend on the load."""

    cell_timeout: float = 120.0
    notebook_timeout: float = 900.0
    memory_mb: int = 4096
    file_mb: int = 64
    isolation: int = 0


@dataclass
class TestGrade:
    """The grade of one test cell: points out of max_points, a status (passed, partial, failed,
    forbidden, timeout, crashed, error, missing), and the message for the feedback."""

    notebook: str
    test: str
    points: float
    max_points: float
    status: str
    message: str


@dataclass
class NotebookGrade:
    """The grades of one notebook's tests, notes for the feedback, and the instructor's log."""

    notebook: str
    tests: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    log: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self):
        return sum(t.points for t in self.tests), sum(t.max_points for t in self.tests)


class WorkerGone(BaseException):
    """The worker died, or ran out of time, while the judge waited for it. A BaseException, so
    the checks' ``except Exception`` (meant for the student's errors) lets it through."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


class SubmissionError(Exception):
    """The student's function raised, in the worker: its type, message and line."""

    def __init__(self, record):
        record = record if isinstance(record, dict) else {}
        self.kind = str(record.get("type", "Exception"))[:100]
        self.text = str(record.get("message", ""))[:2000]
        self.lineno = record.get("lineno") if isinstance(record.get("lineno"), int) else None
        self.line = str(record.get("line", ""))[:300] if self.lineno is not None else None
        self.cell = str(record.get("cell", ""))[:100]
        super().__init__(f"{self.kind}: {self.text}")

    def describe(self):
        where = (
            f" (answer cell {self.cell}, line {self.lineno}: {self.line})" if self.lineno else ""
        )
        return f"{self.kind}: {self.text}{where}"


class JudgeLock:
    """One lock for the judge's own computations (autograd and the checks are not thread-safe),
    released while a thread waits for its worker, so several workers run at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.local = threading.local()

    @contextlib.contextmanager
    def held(self):
        self.lock.acquire()
        self.local.held = True
        try:
            yield
        finally:
            self.local.held = False
            self.lock.release()

    @contextlib.contextmanager
    def released(self):
        if not getattr(self.local, "held", False):
            yield
            return
        self.local.held = False
        self.lock.release()
        try:
            yield
        finally:
            self.lock.acquire()
            self.local.held = True


LOCK = JudgeLock()


def minimal_environment(folder):
    """The worker's environment: no PYTHONPATH, no secrets, no path to the course; one BLAS
    thread (workers run side by side); home and temporary files in its own folder."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": folder,
        "TMPDIR": folder,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": folder,
    }


class Drain(threading.Thread):
    """Reads a worker's stdout and stderr as they come, keeping the first few kilobytes for the
    instructor's log and counting the rest (a submission that prints gigabytes costs nothing)."""

    def __init__(self, stream, keep=4096):
        super().__init__(daemon=True)
        self.stream, self.keep, self.head, self.size = stream, keep, b"", 0

    def run(self):
        try:
            while True:
                chunk = self.stream.read1(1 << 16)
                if not chunk:
                    return
                self.size += len(chunk)
                if len(self.head) < self.keep:
                    self.head += chunk[: self.keep - len(self.head)]
        except (OSError, ValueError):
            return

    def text(self):
        more = (
            f"\n… ({self.size - len(self.head)} more bytes)" if self.size > len(self.head) else ""
        )
        return self.head.decode("utf-8", "replace") + more


class WorkerProcess:
    """One worker: a fresh Python in a temporary folder, configured and confined, with a pipe for
    requests and one for replies."""

    def __init__(self, limits, forbidden, reaper):
        self.reaper, self.limits = reaper, limits
        self.folder = tempfile.mkdtemp(prefix="iwae_np_grading_")
        request_read, self.request_write = os.pipe()
        self.reply_read, reply_write = os.pipe()
        command = [sys.executable, "-I", "-B", "-c", BOOT, str(request_read), str(reply_write)]

        def start():
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(request_read, reply_write),
                cwd=self.folder,
                env=minimal_environment(self.folder),
                start_new_session=True,
            )

        try:
            self.process = reaper.spawn(start)
        except OSError as error:  # no process could be started: nothing ran
            shutil.rmtree(self.folder, ignore_errors=True)
            raise WorkerGone("crashed", f"the worker could not start: {error}") from None
        finally:
            os.close(request_read)
            os.close(reply_write)
        os.set_blocking(self.request_write, False)
        self.drain = Drain(self.process.stdout)
        self.drain.start()
        write = [self.folder]
        read = sandbox.readable_paths()
        config = {
            "workdir": self.folder,
            "parent": os.getpid(),
            "memory": limits.memory_mb << 20,
            "cpu": int(limits.notebook_timeout) + 30,
            "file_size": limits.file_mb << 20,
            "landlock": limits.isolation,
            "read": read + ["/dev/null"],
            "write": write + ["/dev/null"],
            "forbidden": list(forbidden),
        }
        self.send(pickle.dumps(config), time.monotonic() + STARTUP_SECONDS)
        reply = self.receive(time.monotonic() + STARTUP_SECONDS)
        if not (isinstance(reply, dict) and reply.get("ready")):
            self.stop()
            raise WorkerGone("crashed", "the worker did not start")

    def send(self, payload, deadline):
        data = memoryview(wire.HEADER.pack(len(payload)) + payload)
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail("timeout", "time limit reached")
            _, ready, _ = select.select([], [self.request_write], [], remaining)
            if not ready:
                continue
            try:
                written = os.write(self.request_write, data)
            except BlockingIOError:
                continue
            except OSError:
                self.fail("crashed", "the worker closed its end")
            data = data[written:]

    def cpu_seconds(self):
        """The CPU time the worker has used so far (None where /proc cannot tell)."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
            fields = stat[stat.rfind(")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def wait_readable(self, deadline, cpu_limit):
        """Wait until a reply starts to arrive, checking twice a second that the worker has not
        gone past ``cpu_limit`` (its total CPU seconds) or the wall-clock ``deadline``."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.fail("timeout", "time limit reached")
            ready, _, _ = select.select([self.reply_read], [], [], min(0.5, deadline - now))
            if ready:
                return
            used = self.cpu_seconds() if cpu_limit is not None else None
            if used is not None and used > cpu_limit:
                self.fail("timeout", "CPU time limit reached")

    def receive(self, deadline, cpu_limit=None):
        self.wait_readable(deadline, cpu_limit)
        try:
            message = wire.decode(wire.receive(self.reply_read, deadline))
        except wire.WireError as error:
            self.fail("timeout" if error.timeout else "crashed", error.reason)
        if not isinstance(message, dict):
            self.fail("crashed", "the worker sent something that is not a reply")
        return message

    def request(self, message, deadline, callbacks=None, cpu_limit=None):
        """Send one request and return the reply (a dict), serving the callbacks the worker makes
        meanwhile. Raises WorkerGone (after stopping the worker) when the wall-clock ``deadline``
        passes, the worker's CPU time goes past ``cpu_limit``, or it crashes."""
        self.send(pickle.dumps(message), deadline)
        while True:
            reply = self.receive(deadline, cpu_limit)
            if "callback" not in reply:
                return reply
            self.send(pickle.dumps(serve_callback(reply, callbacks or {})), deadline)

    def fail(self, status, reason):
        """Stop the worker and raise WorkerGone, saying how it ended."""
        if status == "crashed":
            reason = self.exit_reason() or reason
        elif reason.startswith("CPU"):
            reason = f"the time limit of {self.limits.cell_timeout:g} s of CPU time was reached"
        else:
            reason = "the time limit was reached"
        self.stop()
        raise WorkerGone(status, reason)

    def exit_reason(self):
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            why = {
                "SIGXCPU": ": the CPU time limit",
                "SIGXFSZ": ": the file size limit",
                "SIGKILL": ": killed (out of memory?)",
                "SIGSEGV": ": a segmentation fault",
            }.get(name, "")
            return f"the worker was killed by {name}{why}"
        return f"the worker exited with code {code}"

    def stop(self):
        """Kill the worker and everything it started; remove its folder."""
        if self.process is None:
            return
        self.reaper.finish(self.process)
        for fd in (self.request_write, self.reply_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.drain.join(timeout=2)
        self.process.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.process = None


def serve_callback(message, callbacks):
    """Run the judge's function a worker called back, on the plain arguments it sent; -> the
    answer to send: ("return", value) or ("raise", text)."""
    function = callbacks.get(message.get("callback"))
    args, kwargs = message.get("args", []), message.get("kwargs", {})
    if function is None or not isinstance(args, list) or not isinstance(kwargs, dict):
        return ("raise", "no such function")
    try:
        with LOCK.held() if not getattr(LOCK.local, "held", False) else contextlib.nullcontext():
            with np.errstate(all="ignore"):
                return ("return", function(*args, **kwargs))
    except Exception as error:  # the arguments the student passed broke the judge's function
        return ("raise", f"{type(error).__name__}: {error}")


def pack(value, table):
    """The value for a request: each function (the judge's own, e.g. a log-joint density) is
    replaced by a CallbackRef, numbered in ``table``."""
    if type(value) in (list, tuple):
        return type(value)(pack(v, table) for v in value)
    if type(value) is dict:
        return {k: pack(v, table) for k, v in value.items()}
    if isinstance(value, FunctionProxy):
        raise ValueError("a student's function cannot be passed back to the worker")
    if callable(value) and not isinstance(value, (type, np.ndarray)):
        number = len(table) + 1
        table[number] = value
        return wire.CallbackRef(number)
    return value


class FunctionProxy:
    """Stands, in the judge's namespace, for a function the student defined: calling it runs the
    student's function in the worker and returns plain data."""

    isolated = True  # checks.student_code: no process-wide switches for this one

    def __init__(self, session, name, forbidden, substitutes=None):
        self.session, self.name, self.forbidden = session, name, tuple(forbidden)
        self.substitutes = dict(substitutes or {})
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self.session.call(self.name, args, kwargs, self.substitutes, self.forbidden)

    def substitute(self, **names):
        """This function, run with the given names of its globals replaced (checks.substituted)."""
        return FunctionProxy(self.session, self.name, self.forbidden, {**self.substitutes, **names})

    def __repr__(self):
        return f"<your function {self.name}>"


class Session:
    """The grading of one submitted notebook: the worker, the cells it runs, what went wrong."""

    def __init__(self, plan, submission, limits, reaper):
        self.plan, self.submission, self.limits, self.reaper = plan, submission, limits, reaper
        self.started = time.monotonic()
        self.deadline = self.started + limits.notebook_timeout
        self.test_deadline = self.deadline
        self.test_cpu_limit = None
        self.worker = None
        self.restarts = 0
        self.skip = set()  # program steps that crashed or timed out: never run again
        self.cell_errors = {}  # answer grade_id -> message
        self.cell_status = {}  # answer grade_id -> error, timeout or crashed
        self.runtime_forbidden = {}  # answer grade_id -> entries used while its cell ran
        self.used = []  # forbidden entries used by calls during the current test
        self.log = []
        self.output = []

    def forbidden_of(self, cell):
        return tuple(notebooks.ALWAYS_FORBIDDEN) + tuple(cell.forbidden)

    def program(self):
        """(step, label, code, forbidden, answer grade_id or None) in the source's order: its
        setup cells, and the student's code for each answer cell."""
        steps = []
        for cell in self.plan.cells:
            if cell.role == "setup":
                steps.append((f"setup {cell.index}", f"setup-{cell.index}", cell.code, (), None))
            elif cell.role == "answer":
                for number, code in enumerate(self.submission.answers.get(cell.grade_id, [])):
                    label = cell.grade_id if number == 0 else f"{cell.grade_id}#{number + 1}"
                    steps.append((label, label, code, self.forbidden_of(cell), cell.grade_id))
        return steps

    def remaining(self):
        return self.deadline - time.monotonic()

    def unit(self):
        """(wall-clock deadline, CPU limit) for a cell starting now: ``cell_timeout`` seconds of
        the worker's CPU time, three times that of wall time, within the notebook's time."""
        wall = 3 * self.limits.cell_timeout + 5
        deadline = min(time.monotonic() + wall, self.deadline)
        used = self.worker.cpu_seconds() if self.worker is not None else None
        return deadline, None if used is None else used + self.limits.cell_timeout

    def start(self):
        """Start a worker and run the program; a step that kills the worker or runs out of time
        is recorded, left out, and the program starts over in a new worker."""
        while True:
            if self.remaining() <= 0:
                raise WorkerGone("timeout", self.notebook_time_up())
            if self.restarts > MAX_RESTARTS:
                raise WorkerGone("crashed", "the worker crashed too many times")
            step = None
            try:
                self.worker = WorkerProcess(self.limits, self.plan.forbidden, self.reaper)
                for step, label, code, forbidden, grade_id in self.program():
                    if step in self.skip:
                        continue
                    deadline, cpu_limit = self.unit()
                    reply = self.worker.request(
                        ("run", label, code, forbidden), deadline, cpu_limit=cpu_limit
                    )
                    self.record_cell(step, grade_id, reply)
                return
            except WorkerGone as gone:
                self.worker = None
                self.restarts += 1
                if step is None:
                    raise
                self.skip.add(step)
                grade_id = dict((s[0], s[4]) for s in self.program()).get(step)
                what = "ran out of time" if gone.status == "timeout" else "crashed"
                message = f"{what} while running {step}: {gone.reason}"
                self.log.append(message)
                if grade_id is not None:
                    self.cell_errors[grade_id] = f"your answer cell {message}"
                    self.cell_status[grade_id] = gone.status

    def record_cell(self, step, grade_id, reply):
        if grade_id is None:
            if "error" in reply:  # a source setup cell failed in the worker
                self.log.append(f"{step} raised {SubmissionError(reply['error']).describe()}")
            return
        if reply.get("forbidden"):
            self.runtime_forbidden.setdefault(grade_id, []).extend(reply["forbidden"])
        if "error" in reply:
            error = SubmissionError(reply["error"])
            if error.kind == "SystemExit":
                self.cell_errors[grade_id] = f"your answer cell {grade_id} {exit_call(error)}"
                self.cell_status[grade_id] = "crashed"
                return
            self.cell_errors[grade_id] = f"your answer cell {grade_id} raised {error.describe()}"
            self.cell_status[grade_id] = "error"

    def notebook_time_up(self):
        return (
            f"not run: the notebook's time limit of {self.limits.notebook_timeout:g} s was reached"
        )

    def ensure_worker(self):
        if self.worker is None:
            self.start()

    def names(self, names):
        """{name: ("function", None) | ("value", value)} for the names the worker defines."""
        self.ensure_worker()
        deadline, cpu_limit = self.unit()
        try:
            reply = self.worker.request(("names", sorted(names)), deadline, cpu_limit=cpu_limit)
        except WorkerGone:
            self.worker = None
            raise
        found = {}
        described = reply.get("names", {})
        for name in names:
            item = described.get(name) if isinstance(described, dict) else None
            if isinstance(item, dict) and item.get("kind") == "function":
                found[name] = ("function", None)
            elif isinstance(item, dict) and item.get("kind") == "value":
                found[name] = ("value", item.get("value"))
        return found

    def call(self, name, args, kwargs, substitutes, forbidden):
        """The student's ``name``(*args, **kwargs) in the worker -> its plain result; raises
        SubmissionError if it raised, WorkerGone if the worker died or time ran out."""
        with LOCK.released():
            self.ensure_worker()
        table = {}
        request = (
            "call",
            name,
            pack(tuple(args), table),
            pack(dict(kwargs), table),
            pack(dict(substitutes), table),
            forbidden,
        )
        deadline = min(self.test_deadline, self.deadline)
        with LOCK.released():
            try:
                reply = self.worker.request(request, deadline, table, self.test_cpu_limit)
            except WorkerGone:
                self.worker = None  # stopped: the next test starts a new one
                self.restarts += 1
                raise
        if reply.get("forbidden"):
            self.used.extend(str(entry) for entry in reply["forbidden"])
        if "error" in reply:
            error = SubmissionError(reply["error"])
            if error.kind == "SystemExit":  # the worker survives it, but the test cannot go on
                raise WorkerGone("crashed", exit_call(error))
            raise error
        return reply.get("result")

    def close(self):
        if self.worker is not None:
            with contextlib.suppress(WorkerGone):
                self.worker.send(pickle.dumps(("quit",)), time.monotonic() + 1)
            self.output.append(self.worker.drain.text())
            self.worker.stop()
            self.worker = None


def grade_notebook(plan, submission, limits, reaper):
    """Grade one submission of the notebook ``plan`` -> NotebookGrade."""
    result = NotebookGrade(plan.name, notes=list(submission.notes))
    static, dynamic = {}, []
    for cell in plan.answers:
        uses = []
        entries = notebooks.ALWAYS_FORBIDDEN + tuple(cell.forbidden) + cell.forbidden_in_code
        for code in submission.answers.get(cell.grade_id, []):
            uses += notebooks.forbidden_uses(code, entries, plan.setup_code)
            dynamic += [
                f"answer cell {cell.grade_id}, {use}"
                for use in notebooks.dynamic_uses(code, plan.setup_code)
            ]
        if uses:
            static[cell.grade_id] = uses
            result.notes.append(
                f"answer cell {cell.grade_id} uses names it must not: " + "; ".join(uses)
            )
    if dynamic:
        result.notes.append(
            "dynamic code or introspection, which the grader does not accept in answers: "
            + "; ".join(dynamic)
        )
        static[DYNAMIC] = dynamic
    session = Session(plan, submission, limits, reaper)
    began = time.monotonic()
    try:
        namespace = {"__name__": "__grading__"}
        fatal = None
        try:
            session.start()
            wanted = set().union(*(c.defines for c in plan.answers)) if plan.answers else set()
            for name, (kind, value) in session.names(wanted).items():
                cell = plan.answer_for(name)
                forbidden = session.forbidden_of(cell) if cell else notebooks.ALWAYS_FORBIDDEN
                namespace[name] = (
                    FunctionProxy(session, name, forbidden) if kind == "function" else value
                )
        except WorkerGone as gone:
            fatal = gone
        for grade_id, entries in session.runtime_forbidden.items():
            result.notes.append(f"answer cell {grade_id} called {', '.join(sorted(set(entries)))}")
        for cell in plan.cells:
            if cell.role == "setup":
                with LOCK.held(), checks.quietly(), np.errstate(all="ignore"):
                    try:
                        exec(compile(cell.code, f"<source setup {cell.index}>", "exec"), namespace)  # noqa: S102
                    except Exception as error:  # the instructor's setup failed here
                        result.log.append(f"source setup cell {cell.index} raised {error!r}")
            elif cell.role == "test":
                result.tests.append(run_test(session, plan, cell, namespace, static, fatal))
                if fatal is None and session.remaining() <= 0:
                    fatal = WorkerGone("timeout", session.notebook_time_up())
    finally:
        session.close()
    result.notes += list(session.cell_errors.values())
    result.log += session.log
    result.log += [f"output of the submission:\n{text}" for text in session.output if text.strip()]
    result.seconds = time.monotonic() - began
    return result


def run_test(session, plan, cell, namespace, static, fatal):
    """Run one test cell of the source in the judge's namespace and score it -> TestGrade."""

    def grade(points, status, message):
        return TestGrade(plan.name, cell.grade_id, points, cell.points, status, message)

    needs = plan.depends_on(cell)
    if static.get(DYNAMIC):
        return grade(
            0.0,
            "forbidden",
            "not scored: your answers use dynamic code or introspection ("
            + "; ".join(static[DYNAMIC])
            + "). The grader cannot check what such code calls, and it runs in the same process "
            "as every answer, so every test of this notebook scores 0. Call functions by their "
            "names, without exec, eval, importlib, sys.modules, getattr with a computed name, "
            "frames or gc.",
        )
    flagged = [u for c in needs for u in static.get(c.grade_id, [])]
    if flagged:
        return grade(
            0.0, "forbidden", "uses a name this exercise does not allow: " + "; ".join(flagged)
        )
    if fatal is not None:
        reason = fatal.reason if fatal.reason.startswith("not run") else f"not run: {fatal.reason}"
        return grade(0.0, fatal.status, reason)
    if session.worker is None:  # the last one died: start another before the clock runs
        try:
            session.start()
        except WorkerGone as gone:
            return grade(0.0, gone.status, f"not run: {gone.reason}")
    report = namespace.get("report")
    before = len(report.results) if isinstance(report, checks.Report) else 0
    session.used = []
    session.test_deadline, session.test_cpu_limit = session.unit()
    failure, gone = None, None
    with LOCK.held(), checks.quietly(), np.errstate(all="ignore"):
        try:
            exec(compile(cell.code, f"<test {cell.grade_id}>", "exec"), namespace)  # noqa: S102
        except WorkerGone as stopped:
            gone = stopped
        except Exception as error:  # a failed check (AssertionError), or the student's error
            failure = error
    session.test_deadline, session.test_cpu_limit = session.deadline, None
    results = report.results[before:] if isinstance(report, checks.Report) else []
    for result in results:  # a failed hidden test shows the student no input, value or seed
        if result.name.endswith(checks.HIDDEN) and not result.passed:
            checks.conceal(result)
            session.log.append(f"{cell.grade_id}: {result.name} failed:\n{result.detail}")
    earned = min(cell.points, sum(r.points for r in results))
    worth = sum(r.max_points for r in results)
    if gone is None and results and worth != cell.points:
        session.log.append(
            f"source: the checks of {cell.grade_id} are worth {worth:g} points, "
            f"the cell {cell.points:g}"
        )
    messages = [str(r) for r in results]
    used = sorted(set(session.used)) + [
        e for c in needs for e in session.runtime_forbidden.get(c.grade_id, [])
    ]
    if used:
        return grade(
            0.0,
            "forbidden",
            "called a function this exercise does not allow: " + ", ".join(sorted(set(used))),
        )
    if gone is not None:
        messages.append(f"stopped: {gone.reason}")
        return grade(earned, gone.status, "\n".join(messages))
    if failure is not None and not results:
        messages.append(explain(failure, plan, session))
        broken = [
            session.cell_status[c.grade_id] for c in needs if c.grade_id in session.cell_status
        ]
        status = broken[0] if broken else "failed"
        return grade(0.0, status, "\n".join(messages))
    if failure is not None and not isinstance(failure, AssertionError):
        messages.append(explain(failure, plan, session))
    if not results and failure is None:
        earned = cell.points  # a test cell without checks passes by running without error
    status = "passed" if earned >= cell.points else "partial" if earned > 0 else "failed"
    return grade(float(earned), status, "\n".join(messages))


def exit_call(error):
    """What a SystemExit in the worker says, without its message (which the submission chooses,
    and could fill with a hidden test's inputs): only an integer exit code is shown."""
    code = error.text.strip()
    shown = f" with code {code}" if code.lstrip("-").isdigit() and len(code) < 6 else ""
    return f"called sys.exit{shown}: the code stopped itself (no result)"


def explain(error, plan, session):
    """The message for a test cell that raised outside a check."""
    name = getattr(error, "name", None) if isinstance(error, NameError) else None
    cell = plan.answer_for(name) if isinstance(name, str) else None
    if cell is not None:
        why = session.cell_errors.get(
            cell.grade_id, f"your answer cell {cell.grade_id} does not define it"
        )
        return f"  {name} is not defined: {why}"
    if isinstance(error, SubmissionError):
        return f"  your function raised {error.describe()}"
    return f"  {type(error).__name__}: {error}"
