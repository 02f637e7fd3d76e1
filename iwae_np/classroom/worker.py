"""The worker: a fresh process that runs one submission's code for the grader (``judge``) and
answers its requests with plain data.

The grader starts it as ``python -I -B -c "…worker import main; main()" REQUEST_FD REPLY_FD``,
with a scrubbed environment, in a session of its own and an empty temporary folder. The first
request configures it; it then confines itself (``sandbox``: Landlock, resource limits) before
it runs any student code. Requests:

    ("run", label, code, forbidden)        execute one cell (setup from the source, or an answer)
    ("names", [name, …])                   what each name is: a function, a value (sent), missing
    ("call", name, args, kwargs, substitutes, forbidden)
                                           call the student's function; send back its result
    ("quit",)

Anything here can be undone by the submission, since it runs in the same process: nothing the
worker says is trusted. The grader only compares the plain results with its own expected values.
The tripwires on forbidden functions (``Tripwires``) are the one exception that the submission
could defeat; the grader also checks the code itself before running it (``notebooks``).
"""

import builtins
import linecache
import os
import pickle
import sys
import traceback
import types

from . import sandbox, wire


class ForbiddenCall(Exception):
    """Raised in the worker when an answer calls a function its exercise does not allow."""


class CallbackError(Exception):
    """The grader's function (passed as an argument) raised: its message."""


class Shell:
    """Stands for IPython's ``get_ipython()``: magics and shell escapes in an answer cell
    (``%matplotlib inline``, ``!pip …``) do nothing, and ``set_custom_exc`` changes nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


OWN_MODULES = (__name__, sandbox.__name__, wire.__name__)


class Tripwires:
    """Wrappers around the forbidden functions, installed wherever a loaded module or the
    notebook's namespace holds them. A wrapper raises ForbiddenCall, and records the name, when it
    is called while its entry is active (during the exercise that forbids it)."""

    def __init__(self, entries=()):
        self.entries = list(entries)
        self.active, self.used, self.wrappers = set(), [], {}

    def install(self):
        """Wrap every function the entries name, in every module loaded so far (again after each
        cell, for modules it imported): a function or method ("autograd.grad",
        "iwae_np.models.VAE.log_weights") or a module (every function defined in it)."""
        wanted = []
        for entry in self.entries:
            target, owner, attribute = resolve(entry)
            if target is None:
                continue
            if isinstance(target, types.ModuleType):
                for module in list(sys.modules.values()):
                    name = getattr(module, "__name__", "") or ""
                    if name == entry or name.startswith(entry + "."):
                        for value in list(vars(module).values()):
                            if is_function(value) and defined_in(value, entry):
                                wanted.append((entry, value, None, None))
            elif is_function(target):
                wanted.append((entry, target, owner, attribute))
        self.replace(wanted)

    def replace(self, wanted):
        """Put the wrappers in place of the originals in every module's namespace."""
        for entry, original, owner, attribute in wanted:
            if getattr(original, "is_tripwire", False) or defined_in_any(original, OWN_MODULES):
                continue
            if id(original) not in self.wrappers:
                self.wrappers[id(original)] = (original, self.wrap(entry, original))
            if owner is not None:
                try:
                    setattr(owner, attribute, self.wrappers[id(original)][1])
                except (AttributeError, TypeError):
                    pass
        if not self.wrappers:
            return
        for module in list(sys.modules.values()):
            try:
                namespace = vars(module)
            except TypeError:
                continue
            for name, value in list(namespace.items()):
                found = self.wrappers.get(id(value))
                if found is not None and found[0] is value:
                    try:
                        setattr(module, name, found[1])
                    except (AttributeError, TypeError):
                        pass

    def wrap(self, entry, original):
        tripwires = self

        def tripwire(*args, **kwargs):
            if entry in tripwires.active:
                name = getattr(original, "__qualname__", None) or getattr(original, "__name__", "")
                module = getattr(original, "__module__", "") or ""
                full = f"{module}.{name}" if module and name else entry
                tripwires.used.append(entry if full == entry else f"{entry} ({full})")
                raise ForbiddenCall(f"{entry} is not allowed in this exercise")
            return original(*args, **kwargs)

        tripwire.__name__ = getattr(original, "__name__", "function")
        tripwire.__qualname__ = getattr(original, "__qualname__", tripwire.__name__)
        tripwire.__doc__ = getattr(original, "__doc__", None)
        tripwire.is_tripwire = True
        return tripwire

    def take_used(self):
        used, self.used = self.used, []
        return sorted(set(used))


def defined_in_any(value, modules):
    return any(defined_in(value, module) for module in modules)


def is_function(value):
    """A function-like object a tripwire can stand for (not a class, not a module)."""
    return callable(value) and not isinstance(value, (type, types.ModuleType))


def defined_in(value, module_name):
    """Whether ``value`` comes from the module (or a submodule): by its ``__module__``, or that
    of a function it wraps (an autograd primitive says it comes from autograd.tracer)."""
    for _ in range(4):
        try:
            module = getattr(value, "__module__", None)
            if isinstance(module, str) and (
                module == module_name or module.startswith(module_name + ".")
            ):
                return True
            value = getattr(value, "__wrapped__", None) or getattr(value, "fun", None)
        except Exception:  # an object whose attributes raise
            return False
        if value is None:
            return False
    return False


def resolve(entry):
    """(object, owner class or None, attribute) named by the dotted ``entry``, found through the
    modules loaded so far (nothing is imported: a module the answers never imported holds
    nothing they can call; the next rescan sees it once they do); (None, None, None) if none."""
    parts = entry.split(".")
    for cut in range(len(parts), 0, -1):
        target = sys.modules.get(".".join(parts[:cut]))
        if target is None:
            continue
        owner = None
        for part in parts[cut:]:
            owner = target
            try:
                target = getattr(target, part)
            except AttributeError:
                return None, None, None
        if isinstance(owner, type):
            return owner.__dict__.get(parts[-1], target), owner, parts[-1]
        return target, None, None
    return None, None, None


class Worker:
    """The request loop: the notebook's namespace, its cells, and calls into it."""

    def __init__(self, request_fd, reply_fd):
        self.request_fd, self.reply_fd = request_fd, reply_fd
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        self.namespace = main.__dict__
        self.namespace.update({"__builtins__": builtins, "get_ipython": Shell})
        self.tripwires = Tripwires()
        self.modules_seen = 0

    def reply(self, message):
        data = wire.encode(message)
        if len(data) > wire.MAX_FRAME:
            data = wire.encode({"error": error_record(ValueError("the result is too large"))})
        wire.send(self.reply_fd, data)

    def serve(self):
        while True:
            request = pickle.loads(wire.receive(self.request_fd))
            kind = request[0]
            if kind == "quit":
                return
            if kind == "run":
                self.reply(self.run(*request[1:]))
            elif kind == "names":
                self.reply({"names": {name: self.describe(name) for name in request[1]}})
            elif kind == "call":
                self.reply(self.call(*request[1:]))
                self.rescan()

    def guarded(self, forbidden, action):
        """Run ``action()`` with the forbidden entries active; -> the reply: its result or its
        error, and the forbidden functions it called."""
        self.tripwires.active = set(forbidden)
        try:
            message = {"result": action()}
        except BaseException as error:  # noqa: BLE001 — the submission's error, whatever it is
            message = {"error": error_record(error)}
        finally:
            self.tripwires.active = set()
        message["forbidden"] = self.tripwires.take_used()
        return message

    def run(self, label, code, forbidden):
        filename = f"<cell {label}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)

        def execute():
            exec(compile(code, filename, "exec"), self.namespace)  # noqa: S102 — the point

        message = self.guarded(forbidden, execute)
        message.pop("result", None)
        self.rescan()
        return message

    def rescan(self):
        """Install the tripwires again if modules were imported since the last time (a cell or a
        call may import a module that holds forbidden names)."""
        if len(sys.modules) != self.modules_seen:
            self.tripwires.install()
            self.modules_seen = len(sys.modules)

    def describe(self, name):
        if name not in self.namespace:
            return {"kind": "missing"}
        value = self.namespace[name]
        if callable(value) and not isinstance(value, type):
            return {"kind": "function"}
        return {"kind": "value", "value": value}

    def call(self, name, args, kwargs, substitutes, forbidden):
        function = self.namespace.get(name)
        if function is None:
            return {"error": error_record(NameError(f"name {name!r} is not defined"))}
        args, kwargs = self.inflate(args), self.inflate(kwargs)
        substitutes = self.inflate(substitutes)
        saved = {n: self.namespace[n] for n in substitutes if n in self.namespace}

        def action():
            self.namespace.update(substitutes)
            try:
                return function(*args, **kwargs)
            finally:
                for n in substitutes:
                    if n in saved:
                        self.namespace[n] = saved[n]
                    else:
                        self.namespace.pop(n, None)

        return self.guarded(forbidden, action)

    def inflate(self, value):
        """Replace each CallbackRef in the arguments by a function that calls the grader."""
        if isinstance(value, wire.CallbackRef):
            return self.callback(value.number)
        if type(value) in (list, tuple):
            return type(value)(self.inflate(v) for v in value)
        if type(value) is dict:
            return {k: self.inflate(v) for k, v in value.items()}
        return value

    def callback(self, number):
        worker = self

        def grader_function(*args, **kwargs):
            wire.send(
                worker.reply_fd,
                wire.encode({"callback": number, "args": list(args), "kwargs": kwargs}),
            )
            outcome, value = pickle.loads(wire.receive(worker.request_fd))
            if outcome == "return":
                return value
            raise CallbackError(value)

        return grader_function


def error_record(error):
    """An exception as plain data: type, message, and where in the student's cells it happened."""
    try:
        text = str(error)
    except BaseException:  # a student's exception whose __str__ fails
        text = "(no message)"
    record = {"type": type(error).__name__, "message": text[:2000]}
    if isinstance(error, SyntaxError):
        record.update(
            cell=str(error.filename or "")[6:-1],
            lineno=error.lineno,
            line=(error.text or "").strip(),
        )
        return record
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<cell")
    ]
    if frames:
        last = frames[-1]
        record.update(cell=last.filename[6:-1], lineno=last.lineno, line=(last.line or "").strip())
    return record


def main():
    """The worker's entry point: configure, confine, then serve requests until told to quit."""
    request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    config = pickle.loads(wire.receive(request_fd))
    os.chdir(config["workdir"])
    sandbox.die_with_parent(config["parent"])
    sandbox.set_limits(config["memory"], config["cpu"], config["file_size"])
    if config["landlock"]:
        read = list(config["read"]) + sandbox.own_proc_paths()
        sandbox.landlock(read, config["write"], config["landlock"])
    worker = Worker(request_fd, reply_fd)
    worker.tripwires.entries = list(config["forbidden"])
    worker.rescan()
    worker.reply({"ready": True})
    try:
        worker.serve()
    except wire.WireError:
        pass  # the grader closed the pipe: done
