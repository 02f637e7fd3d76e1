"""The package's structure, checked: no module uses another's private names, imports only go
down the floors, and ``import iwae_np`` loads the core alone."""

import ast
import pathlib
import re
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "iwae_np"
SUBPACKAGES = ("data", "app", "classroom", "bench")


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _floor(path):
    parts = path.relative_to(PACKAGE).parts
    if parts == ("__main__.py",):  # `python -m iwae_np` is the command line's entry point
        return "app"
    return parts[0] if len(parts) > 1 else "core"


def _resolve(path, node):
    """The absolute module name an ImportFrom node refers to."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]
    if node.level:
        base = package[: len(package) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


# The one reach into another library's internals, with its reason: autograd has no public way
# to remove the box of only the innermost trace, which ``numerics.stop_gradient`` needs so that
# an outer derivative of a stop_q (STL) gradient is right (``getval`` strips every level).
ALLOWED = {("numerics.py", "_value"), ("numerics.py", "_trace")}


def test_no_module_reaches_into_another_modules_private_names():
    """Neither the package nor its tests use another module's or object's _private names."""
    offences = []
    for path in _modules() + sorted((PACKAGE.parent / "tests").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{path.name}:{node.lineno} imports {alias.name}")
            # obj._name where obj is not self/cls: another object's private attribute
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and (path.name, node.attr) not in ALLOWED
            ):
                offences.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    assert offences == [], "\n".join(offences)


def test_imports_only_go_down_the_floors():
    """The core never imports a subpackage; data, classroom and bench import only the core (and
    data); app, the top floor, may import them all, and nothing imports app."""
    allowed = {
        "core": set(),
        "data": {"core"},
        "app": {"core", "data", "classroom", "bench"},
        "classroom": {"core", "data"},
        "bench": {"core", "data"},
    }
    offences = []
    for path in _modules():
        floor = _floor(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [_resolve(path, node)]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "iwae_np" or len(parts) < 2:
                    continue
                target = parts[1] if parts[1] in SUBPACKAGES else "core"
                if target != floor and target not in allowed[floor]:
                    offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
    assert offences == [], "\n".join(offences)


def test_import_iwae_np_loads_the_core_only():
    code = (
        "import sys, iwae_np; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('scipy', 'matplotlib', 'sklearn', 'torch', 'nbformat', 'nbclient')"
        " or m.startswith(('iwae_np.data', 'iwae_np.app', 'iwae_np.classroom', "
        "'iwae_np.bench'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_readme_module_tables_match_the_tree():
    """Every core module and subpackage is in the README's tables, and every entry exists."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## What is inside", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))
    core = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    subpackages = {f"iwae_np.{name}" for name in SUBPACKAGES}
    assert listed == core | subpackages
