"""Reading assignment notebooks for the grader: what each cell of the source is, what a
submission answered, and whether an answer uses a name its exercise forbids.

The source notebook (the instructor's, with solutions and hidden tests) decides everything:

- an *answer* cell (nbgrader ``solution: true``) is where the student's code goes;
- a *test* cell (nbgrader ``grade: true``, with ``points``) holds the checks, hidden ones too;
- a cell marked ``"iwae_np": {"grading": "skip"}`` (the closing self-check) is not run;
- any other code cell is *setup* (imports, data, helper definitions).

A submission contributes only the code of its answer cells, matched to the source by nbgrader's
``grade_id`` (or, if the student's editor dropped that, by the cell's id). Its setup and test
cells, and cells it added, are ignored: the grader runs the source's.

An answer cell can declare names its solution must not use, in its metadata:
``"iwae_np": {"forbidden": ["iwae_np.distributions", "autograd.grad", …]}``; an entry is a
module (anything defined in it), a function, or a method ("iwae_np.models.VAE.log_weights").
``forbidden_uses`` finds them in the code (``worker.Tripwires`` also catches calls at run time).
Entries under ``"forbidden_in_code"`` are checked in the code only (modules such as
``autograd.core``, which the package itself calls internally, so a run-time tripwire on them would
fire on allowed code). Every answer cell also forbids the grading code itself
(``ALWAYS_FORBIDDEN``).

Anything checked at run time can be undone by the submission, which runs in the same process.
What decides is the check of the code, here in the grader: ``dynamic_uses`` refuses answer cells
that use dynamic code or introspection (``exec``, ``eval``, ``importlib``, ``sys.modules``,
``getattr`` with a computed name, ``__closure__``, frames, ``gc``, ``ctypes``, the grading
modules, …), since the code check cannot see what such code reaches.
"""

import ast
import importlib
import importlib.util
import json
import os
import sys
import types
from dataclasses import dataclass, field

from .release import clear_hidden_tests

ALWAYS_FORBIDDEN = (
    "iwae_np.classroom.a1",
    "iwae_np.classroom.a2",
    "iwae_np.classroom.a3",
    "iwae_np.classroom.a4",
    "iwae_np.classroom.checks",
)


@dataclass
class SourceCell:
    """One code cell of the source: its role (setup, answer, test, skip), nbgrader grade_id and
    points, code, the names it defines (answers) or uses (tests), and its forbidden names."""

    index: int
    role: str
    grade_id: str
    points: float
    code: str
    cell_id: str = ""
    defines: set = field(default_factory=set)
    uses: set = field(default_factory=set)
    forbidden: tuple = ()
    forbidden_in_code: tuple = ()


@dataclass
class Plan:
    """The grading plan of one source notebook: its code cells in order."""

    name: str
    path: str
    cells: list

    @property
    def tests(self):
        return [c for c in self.cells if c.role == "test"]

    @property
    def answers(self):
        return [c for c in self.cells if c.role == "answer"]

    @property
    def setup_code(self):
        return "\n".join(c.code for c in self.cells if c.role == "setup")

    @property
    def forbidden(self):
        """Every forbidden entry of the notebook (the worker installs tripwires for all)."""
        entries = list(ALWAYS_FORBIDDEN)
        for cell in self.answers:
            entries += [e for e in cell.forbidden if e not in entries]
        return entries

    def answer_for(self, name):
        """The answer cell that defines ``name``, or None."""
        for cell in self.answers:
            if name in cell.defines:
                return cell
        return None

    def depends_on(self, test):
        """The answer cells whose names the test cell uses."""
        return [c for c in self.answers if c.defines & test.uses]


def top_level_names(code):
    """Names a cell binds at its top level (functions, classes, assignments, imports)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        else:
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    names.add(child.id)
    return names


def used_names(code):
    """Every name a cell reads."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def without_magics(code):
    """The cell's code with IPython syntax made harmless: a line magic or shell escape
    (``%matplotlib inline``, ``!pip install …``) becomes ``pass``; a cell magic (``%%time``)
    leaves the rest of the cell as plain code."""
    lines = code.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        lines = lines[1:]
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            out.append(line[: len(line) - len(stripped)] + "pass  # IPython syntax removed")
        else:
            out.append(line)
    return "\n".join(out)


def metadata(cell, key):
    """The cell's metadata dict ``key`` ("nbgrader", "iwae_np"), {} if absent or malformed."""
    meta = cell.get("metadata")
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def read_cells(path, max_bytes=32 << 20):
    """The cells of the notebook file at ``path`` as dicts, with ``source`` as one string.

    Plain JSON, not nbformat: the grader reads untrusted files, and nbformat's validator takes
    seconds to import. ValueError for a file that is not a version-4 notebook."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"larger than {max_bytes >> 20} MiB")
        notebook = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as error:
        raise ValueError(f"expected a notebook (.ipynb JSON), got {type(error).__name__}") from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise ValueError("expected a notebook in nbformat version 4")
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise ValueError("expected a notebook with a list of cells")
    out = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        out.append(
            {
                "cell_type": cell.get("cell_type")
                if isinstance(cell.get("cell_type"), str)
                else "",
                "source": source if isinstance(source, str) else "",
                "metadata": cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {},
                "id": cell.get("id") if isinstance(cell.get("id"), str) else "",
            }
        )
    return out


def load_source(path):
    """The grading Plan of a source notebook; ValueError if it is not a valid assignment (a
    grade_id used twice, a test cell without points, an answer cell without a grade_id)."""
    try:
        cells_read = read_cells(path)
    except ValueError as error:
        raise ValueError(f"source: {error}, got {path!r}") from None
    cells, seen = [], set()
    for index, cell in enumerate(cells_read):
        if cell["cell_type"] != "code":
            continue
        meta = metadata(cell, "nbgrader")
        grade_id = str(meta.get("grade_id", "") or "")
        is_answer, is_test = bool(meta.get("solution")), bool(meta.get("grade"))
        if is_answer and is_test:
            raise ValueError(
                f"source: expected answer and test cells apart, got cell {grade_id!r} of {path} "
                "that is both (an nbgrader autograded answer)"
            )
        role = "setup"
        if is_answer:
            role = "answer"
        elif is_test:
            role = "test"
        elif metadata(cell, "iwae_np").get("grading") == "skip":
            role = "skip"
        if role in ("answer", "test"):
            if not grade_id:
                raise ValueError(f"source: expected a grade_id on every graded cell of {path}")
            if grade_id in seen:
                raise ValueError(
                    f"source: expected unique grade_ids in {path}, got {grade_id!r} twice"
                )
            seen.add(grade_id)
        points = float(meta.get("points", 0) or 0)
        if role == "test" and not points > 0:
            raise ValueError(f"source: expected points > 0 on test cell {grade_id!r} of {path}")
        forbidden = tuple(str(e) for e in metadata(cell, "iwae_np").get("forbidden", ()))
        in_code = metadata(cell, "iwae_np").get("forbidden_in_code", ())
        in_code = tuple(str(e) for e in in_code) if isinstance(in_code, list) else ()
        code = without_magics(cell["source"])
        cells.append(
            SourceCell(
                index,
                role,
                grade_id,
                points,
                code,
                cell_id=cell["id"],
                defines=top_level_names(code) if role in ("answer", "setup") else set(),
                uses=used_names(code),
                forbidden=forbidden,
                forbidden_in_code=in_code,
            )
        )
    name = os.path.splitext(os.path.basename(path))[0]
    return Plan(name, path, cells)


@dataclass
class Submission:
    """A student's answers: for each answer grade_id, the code of the matching cells (in the
    student's order), and notes for the feedback (cells added, missing, duplicated)."""

    answers: dict
    notes: list


def read_submission(plan, path):
    """The Submission in the notebook at ``path``; ValueError if it cannot be read at all."""
    try:
        cells = read_cells(path)
    except ValueError as error:
        raise ValueError(f"the notebook could not be read: {error}") from None
    by_grade_id = {c.grade_id: c for c in plan.cells if c.grade_id}
    by_cell_id = {c.cell_id: c for c in plan.cells if c.cell_id}
    answers = {c.grade_id: [] for c in plan.answers}
    added, edited = 0, []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        grade_id = metadata(cell, "nbgrader").get("grade_id")
        source = by_grade_id.get(grade_id) if isinstance(grade_id, str) else None
        if source is None:
            source = by_cell_id.get(cell["id"]) if cell["id"] else None
        code = without_magics(cell["source"])
        if source is None:
            added += int(bool(code.strip()))
        elif source.role == "answer":
            answers[source.grade_id].append(code)
        elif source.role == "test" and code.strip() not in (
            source.code.strip(),
            clear_hidden_tests(source.code).strip(),
        ):
            edited.append(source.grade_id)
    notes = []
    for grade_id, codes in answers.items():
        if not codes:
            notes.append(f"answer cell {grade_id} is missing from the notebook")
        elif len(codes) > 1:
            notes.append(f"answer cell {grade_id} appears {len(codes)} times: all ran, in order")
    if added:
        notes.append(
            f"{added} cell(s) you added were not run: only answer cells are graded, so put "
            "helper functions in an answer cell"
        )
    if edited:
        notes.append(
            f"edits to check cells ({', '.join(edited)}) were ignored: the original checks ran"
        )
    return Submission(answers, notes)


# ------------------------------------------------------------------ forbidden names


class Entry:
    """One forbidden entry: a module (matched by name, never imported here) or a function or
    method (resolved once, matched by identity)."""

    cache = {}

    def __init__(self, name):
        self.name = name
        self.is_module = is_module(name)
        self.target = None if self.is_module else resolve_dotted(name, {name.split(".")[0]})
        qualname = getattr(self.target, "__qualname__", "") if self.target is not None else ""
        self.method = name.rsplit(".", 1)[1] if "." in str(qualname) else None

    @classmethod
    def of(cls, name):
        if name not in cls.cache:
            cls.cache[name] = cls(name)
        return cls.cache[name]

    def covers_path(self, path):
        """Whether the dotted ``path`` names this entry or something inside it."""
        return path == self.name or path.startswith(self.name + ".")

    def covers(self, target):
        """Whether the object ``target`` is this entry or belongs to it."""
        if target is None:
            return False
        if not self.is_module:
            return target is self.target
        if isinstance(target, types.ModuleType):
            return self.covers_path(target.__name__)
        return any(self.covers_path(name) for name in home_modules(target))


def home_modules(value, depth=4):
    """The modules a function comes from: its own ``__module__`` and those of the functions it
    wraps (``__wrapped__``, and ``fun`` for an autograd primitive, whose wrapper says it comes
    from autograd.tracer)."""
    names = []
    for _ in range(depth):
        try:
            name = getattr(value, "__module__", None)
            wrapper = name == "autograd.tracer" and getattr(value, "fun", None) is not None
            if isinstance(name, str) and not wrapper:  # a primitive counts as what it wraps
                names.append(name)
            value = getattr(value, "__wrapped__", None) or getattr(value, "fun", None)
        except Exception:  # an object whose attributes raise
            break
        if value is None:
            break
    return names


def is_module(name):
    """Whether ``name`` is an importable module, found without importing it (only its parent
    packages are imported, which is cheap: scipy, not scipy.stats)."""
    if name in sys.modules:
        return isinstance(sys.modules[name], types.ModuleType)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def resolve_dotted(path, roots):
    """The object a dotted path names, importing modules only from the trusted ``roots``
    (the packages the forbidden entries come from), or None."""
    parts = path.split(".")
    if parts[0] not in roots:
        return None
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if name not in sys.modules and not is_module(name):
            continue
        try:
            target = importlib.import_module(name)
        except Exception:  # not importable: try a shorter prefix
            continue
        for part in parts[cut:]:
            try:
                target = getattr(target, part)
            except Exception:  # no such attribute
                return None
        return target
    return None


def import_aliases(*sources):
    """{name: dotted path} bound by the imports in the sources (``import iwae_np as iw`` gives
    iw -> iwae_np; ``from autograd import grad as g`` gives g -> autograd.grad)."""
    aliases = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def forbidden_uses(code, forbidden, setup_code=""):
    """Where ``code`` uses a forbidden entry: a list of "line N: `text` (not allowed: entry)",
    one per line.

    Names are resolved through the imports of the setup code and of the cell
    (``iw.normal_logpdf`` is ``iwae_np.distributions.normal_logpdf``); a forbidden method is found
    by its name on any object (``model.log_weights``), as is ``getattr(obj, "log_weights")``;
    the string given to ``eval``/``exec`` is checked like code."""
    if not forbidden:
        return []
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []  # it cannot run either: reported as a syntax error
    entries = [Entry.of(name) for name in forbidden]
    # autograd too: its wrappers (autograd.scipy.special.logsumexp) lead to forbidden functions
    roots = {entry.name.split(".")[0] for entry in entries} | {"autograd"}
    methods = {entry.method: entry.name for entry in entries if entry.method}
    aliases = import_aliases(setup_code, code)
    found = {}

    def flag(node, entry_name):
        found.setdefault(
            node.lineno, f"line {node.lineno}: `{ast.unparse(node)}` (not allowed: {entry_name})"
        )

    def check(path, node):
        for entry in entries:
            if entry.covers_path(path):
                flag(node, entry.name)
                return True
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            target = resolve_dotted(".".join(parts[:cut]), roots)
            if target is None:
                continue
            for entry in entries:
                if entry.covers(target):
                    flag(node, entry.name)
                    return True
            return False
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if any(a.name == "*" for a in node.names):
                check(node.module, node)
        elif isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                if check(".".join([aliases[base.id]] + chain[::-1]), node):
                    continue
            elif node.attr in methods:
                flag(node, methods[node.attr])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in aliases:
            check(aliases[node.id], node)
        elif isinstance(node, ast.Call):
            function = node.func
            called = (
                function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            )
            strings = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            for text in strings:
                if called == "getattr" and text in methods:
                    flag(node, methods[text])
                elif called in ("__import__", "import_module") and text.split(".")[0] in roots:
                    check(text, node)
                elif called in ("eval", "exec"):
                    for inner in forbidden_uses(text, forbidden, setup_code):
                        found.setdefault(
                            node.lineno, f"line {node.lineno}: {inner.split(': ', 1)[1]}"
                        )
    return [found[line] for line in sorted(found)]


# ------------------------------------------------------------------ dynamic code

# modules an answer may not import at all: they run code built from strings, reach other modules
# or the interpreter's internals, or start other programs
DYNAMIC_MODULES = (
    "importlib",
    "imp",
    "inspect",
    "gc",
    "ctypes",
    "_ctypes",
    "cffi",
    "builtins",
    "marshal",
    "pickle",
    "_pickle",
    "shelve",
    "dill",
    "cloudpickle",
    "joblib",
    "copyreg",
    "runpy",
    "code",
    "codeop",
    "pkgutil",
    "zipimport",
    "subprocess",
    "_posixsubprocess",
    "multiprocessing",
    "pty",
    "posix",
    "timeit",
    "doctest",
    "cProfile",
    "profile",
    "pdb",
    "bdb",
    "trace",
    "unittest",
    "pydoc",
    "site",
    "string",
    "_thread",
    "iwae_np.classroom",
)
# attributes that lead to code objects, frames, namespaces, modules or string-named lookups
DYNAMIC_ATTRIBUTES = frozenset(
    """__closure__ __code__ __globals__ __dict__ __builtins__ __subclasses__ __bases__ __base__
    __mro__ __getattribute__ __getattr__ __setattr__ __delattr__ __func__ __self__ __wrapped__
    __loader__ __spec__ __import__ __traceback__ __reduce__ __reduce_ex__ __defaults__
    __kwdefaults__ __init_subclass__ __class_getitem__ f_locals f_globals f_back f_code
    f_builtins tb_frame tb_next gi_frame gi_code cr_frame ag_frame cell_contents co_consts
    co_code _getframe settrace setprofile _current_frames addaudithook meta_path path_hooks
    path_importer_cache modules ctypeslib attrgetter methodcaller import_module reload
    exec_module spec_from_file_location module_from_spec load_module find_spec read_pickle
    get_field classroom""".split()
)
DYNAMIC_NAMES = frozenset(
    "exec eval compile __import__ globals locals vars breakpoint __builtins__ __loader__ "
    "__spec__ getattr setattr delattr".split()
)
# sys and os: the attributes an answer may use (sys), or may not (os)
SYS_ALLOWED = frozenset(
    "stdout stderr float_info float_repr_style int_info hash_info maxsize version version_info "
    "platform byteorder setrecursionlimit getrecursionlimit getsizeof exit".split()
)
OS_BANNED_PREFIXES = ("system", "popen", "exec", "spawn", "posix_spawn", "fexecve")


def dynamic_path(path):
    """Why the dotted ``path`` (an import, or an attribute chain from an imported name) is dynamic
    code or introspection, or None."""
    parts = path.split(".")
    for module in DYNAMIC_MODULES:
        if path == module or path.startswith(module + "."):
            return f"the module {module}"
    if parts[0] == "sys" and len(parts) > 1 and parts[1] not in SYS_ALLOWED:
        return f"sys.{parts[1]}"
    if parts[0] == "os" and len(parts) > 1 and parts[1].startswith(OS_BANNED_PREFIXES):
        return f"os.{parts[1]} (another program)"
    for part in parts[1:]:
        if part in DYNAMIC_ATTRIBUTES:
            return f"the attribute {part}"
    return None


def dynamic_uses(code, setup_code=""):
    """Where an answer's ``code`` uses dynamic code or introspection: a list of
    "line N: `text` (reason)", one per line. Such code can reach any function under a name built
    at run time, or switch off the worker's run-time checks, so the grader cannot tell what it
    calls; the code itself is what the grader trusts."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []  # it cannot run either: reported as a syntax error
    aliases = import_aliases(setup_code, code)
    found = {}

    def flag(node, why):
        text = ast.unparse(node)
        text = text if len(text) <= 80 else text[:77] + "..."
        found.setdefault(node.lineno, f"line {node.lineno}: `{text}` ({why})")

    attribute_values = set()
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attribute_values.add(id(node.value))
        elif isinstance(node, ast.Call):
            called.add(id(node.func))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                why = dynamic_path(a.name)
                if why:
                    flag(node, why)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                flag(node, "a relative import")
                continue
            for a in node.names:
                why = dynamic_path(module) or dynamic_path(f"{module}.{a.name}")
                if why is None and (a.name in DYNAMIC_ATTRIBUTES or a.name in DYNAMIC_NAMES):
                    why = f"{a.name}"
                if why is None and module in ("sys", "os") and a.name == "*":
                    why = f"from {module} import *"
                if why:
                    flag(node, why)
        elif isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if node.attr in DYNAMIC_ATTRIBUTES:
                flag(node, f"the attribute {node.attr}")
            elif isinstance(base, ast.Name) and base.id in aliases:
                why = dynamic_path(".".join([aliases[base.id]] + chain[::-1]))
                if why:
                    flag(node, why)
        elif isinstance(node, ast.Name):
            if node.id in DYNAMIC_NAMES:
                if node.id in ("getattr", "setattr", "delattr") and id(node) in called:
                    continue  # checked with its arguments below
                flag(node, f"{node.id}")
            elif aliases.get(node.id) in ("sys", "os") and id(node) not in attribute_values:
                flag(node, f"the module {aliases[node.id]} used as a value")
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id in ("getattr", "setattr", "delattr"):
                name = node.args[1] if len(node.args) > 1 else None
                literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
                if not literal:
                    flag(node, f"{function.id} with a name computed at run time")
                elif name.value in DYNAMIC_ATTRIBUTES or name.value.startswith("__"):
                    flag(node, f"{function.id} of {name.value}")
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "allow_pickle" and not (
                    isinstance(value, ast.Constant) and value.value is False
                ):
                    flag(node, "a pickle (it runs code when loaded)")
    return [found[line] for line in sorted(found)]
