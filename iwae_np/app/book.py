"""The course as a book: the lessons and the API, rendered to one folder of static HTML that a
browser opens offline (``python -m iwae_np book --out DIR``; docs/design.md §20).

    index.html             the lessons in order, and the way to the rest
    map.html               lessons/README.md: which lesson answers which question
    search.html            search over every lesson section and API entry (no server needed)
    lessons/NN_name.html   each lesson, executed: its figures, numbers and tables on the page,
                           with a download link for the notebook and links to the source of
                           the package's functions it uses
    lessons/NN_name_files/ the lesson's figures (PNG)
    notebooks/NN_name.ipynb  the notebook as stored in the repository, without outputs
    api/index.html, api/MODULE.html    the API reference, from the docstrings
    source/MODULE.html     each module's source, highlighted, a line anchor per line (#L-42)
    _static/               the style sheet, the search script and index, the math font

Lessons are the files ``[0-9][0-9]_*.ipynb`` in the lessons folder. Each is run top to bottom
with nbclient in that folder, as a student runs it, unless the cache already holds it: the cache
is a folder of executed notebooks named by a hash of the lesson's cells and of the package's
version and source code, so an unchanged lesson is executed once. ``store_executed`` puts a
notebook executed elsewhere (the test suite's) into the cache.

The book is built in a staging folder beside ``out`` and moved into ``out`` only once every page
is written, so a failed or interrupted build leaves the previous book as it was. ``out``'s marker
file lists the files the builder wrote there; a rebuild replaces or removes those and leaves
every other file (a ``.git``, a ``CNAME``, notes) alone.

Math is rendered here, not in the browser: the lessons' ``$…$`` and ``$$…$$`` become MathML
(``book_math``), laid out by the browser with the STIX Two Math font copied into ``_static/``.
The docstrings' equations are Unicode text and are shown as written. Nothing on any page is
fetched from outside the folder.
"""

import ast
import contextlib
import fcntl
import functools
import glob
import hashlib
import html
import importlib
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from ..checks import check_output_folder
from . import book_assets, book_math

LESSON_GLOB = "[0-9][0-9]_*.ipynb"
# What the [docs] extra brings that the book imports (the CLI names a missing one).
DOCS_MODULES = {"nbconvert", "nbclient", "nbformat", "jinja2", "pygments", "latex2mathml"}
MARKER = ".iwae_np_book"  # marks a folder this builder wrote into, and lists the files it wrote
TITLE = "iwae_np · the course"
PACKAGE = "iwae_np"


class LessonFailed(RuntimeError):
    """A lesson raised while it was executed; the message names the lesson and the cell."""


@dataclass
class Book:
    """What ``build`` wrote: the folder, every page (paths relative to it), the lessons in
    order, which of them were executed now (the others came from the cache), the API modules,
    the number of equations rendered to MathML, and the edition (solutions shown or not)."""

    out: Path
    solutions: bool = False
    pages: list = field(default_factory=list)
    lessons: list = field(default_factory=list)
    executed: list = field(default_factory=list)
    modules: list = field(default_factory=list)
    equations: int = 0

    def __str__(self):
        return (
            f"{'instructor' if self.solutions else 'student'} edition of the book written to "
            f"{self.out / 'index.html'}: {len(self.pages)} pages "
            f"({len(self.lessons)} lessons, {len(self.modules)} API modules), "
            f"{self.equations} equations; {len(self.executed)} lessons executed, "
            f"{len(self.lessons) - len(self.executed)} from the cache"
        )


# ------------------------------------------------------------------ lessons and the cache


def find_lessons(folder):
    """folder -> the lesson notebooks in it (``NN_name.ipynb``), in order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"lessons: expected a folder of lesson notebooks, got {str(folder)!r}")
    lessons = sorted(folder.glob(LESSON_GLOB))
    if not lessons:
        raise ValueError(
            f"lessons: expected a folder holding {LESSON_GLOB} notebooks, got {str(folder)!r} "
            f"with none"
        )
    return lessons


def cache_key(notebook):
    """A notebook (nbformat node or dict) -> the hex SHA-256 of its cells' types and sources, the
    package's version and its source code (``package_digest``): what decides whether an executed
    copy can stand in for a run."""
    from .. import __version__

    cells = [(cell["cell_type"], _text(cell["source"])) for cell in notebook["cells"]]
    payload = json.dumps([__version__, package_digest(), cells], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@functools.cache
def package_digest():
    """The hex SHA-256 of the package's Python files (paths and contents). A lesson prints what
    the package computes and says, which changes with its code between version numbers."""
    root = _package_root()
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _edition(solutions):
    return "solutions" if solutions else "student"


def cached_path(cache, lesson, notebook, solutions=False):
    """Where the cache folder keeps the executed copy of ``notebook`` (read from ``lesson``; its
    student copy, or with ``solutions`` the lesson as stored)."""
    name = f"{Path(lesson).stem}-{_edition(solutions)}-{cache_key(notebook)[:20]}.ipynb"
    return Path(cache) / name


def store_executed(cache, lesson, executed, solutions=False):
    """Put a notebook executed elsewhere (an nbformat node, run from ``lesson``: its student copy,
    or with ``solutions`` the lesson as stored) into the cache folder, in place of the earlier
    versions of that edition; -> its path there. The key is computed from the executed copy's
    own cells, so a lesson edited since is not mistaken for it."""
    import nbformat

    path = cached_path(cache, lesson, executed, solutions)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(
        re.escape(f"{Path(lesson).stem}-{_edition(solutions)}") + r"-[0-9a-f]{20}\.ipynb"
    )
    for other in path.parent.iterdir():  # the lesson's earlier versions
        if other != path and stale.fullmatch(other.name):
            other.unlink()
    _write_atomically(path, lambda part: nbformat.write(executed, str(part)))
    return path


def _write_atomically(path, write):
    """Call ``write`` with a temporary path beside ``path``, then move the file it wrote to
    ``path`` in one step: a build stopped part-way leaves the old file or the new one, never a
    truncated one."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def read_notebook(path):
    """path -> the Jupyter notebook stored there (nbformat 4), checked against nbformat's schema.
    ValueError naming the file if it is not one: not JSON, or JSON of another shape (``[]``,
    ``{}``, cells that are not a list, no metadata, an unknown cell type)."""
    import nbformat

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cell without an id: nbformat gives it one
            notebook = nbformat.read(str(path), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # nbformat raises what the shape it meets leads to (TypeError...)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        reason = reason if len(reason) <= 160 else reason[:160] + " …"
        raise ValueError(
            f"{Path(path).name}: expected a Jupyter notebook (nbformat 4), got one nbformat "
            f"rejects: {reason}"
        ) from None
    return notebook


def lesson_notebook(lesson, solutions=False):
    """lesson (path) -> the notebook the book shows: its student copy (every solution replaced by
    ``raise NotImplementedError()``, hidden tests removed; ``python -m iwae_np lessons release``
    writes the same), or, with ``solutions``, the lesson as stored, solutions filled in.
    ValueError naming the lesson if it is not a well-formed notebook."""
    from ..classroom.release import checked_student_version

    try:
        notebook = read_notebook(lesson)
    except ValueError as error:
        raise ValueError(f"lesson {error}") from None
    return notebook if solutions else checked_student_version(notebook, lesson)


def executed_lesson(lesson, cache=None, timeout=600, solutions=False):
    """lesson (path) -> (the executed notebook, True if it was executed now): its student copy,
    or with ``solutions`` the lesson as stored (``lesson_notebook``). A copy in the cache is used
    when its key matches and it reads as a notebook; otherwise the notebook is run with nbclient
    in the lesson's folder (``timeout`` seconds per cell, rounded up to a whole second) and
    stored in the cache. LessonFailed if a cell raises, runs too long or ends the kernel."""
    lesson = Path(lesson)
    notebook = lesson_notebook(lesson, solutions)
    if cache is not None:
        path = cached_path(cache, lesson, notebook, solutions)
        if path.is_file():
            try:
                return read_notebook(path), False
            except ValueError:
                pass  # a damaged copy (cut short, edited by hand): run the lesson again
    _execute(lesson, notebook, timeout)
    if cache is not None:
        store_executed(cache, lesson, notebook, solutions)
    return notebook, True


def _execute(lesson, notebook, timeout):
    """Run ``notebook`` (read from ``lesson``) top to bottom in the lesson's folder, filling in
    its outputs; LessonFailed, in one line naming the cell, if it does not run to the end."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    seconds = math.ceil(timeout)  # nbclient counts whole seconds
    running = [None]  # the index of the cell being run, for the error message

    def note(cell_index, **_):
        running[0] = cell_index

    client = NotebookClient(
        notebook,
        timeout=seconds,
        kernel_name="python3",
        shutdown_kernel="immediate",  # a kernel busy in a cell that timed out is not waited for
        on_cell_start=note,
        resources={"metadata": {"path": str(lesson.parent)}},
    )
    try:
        # the kernel process's own log lines (not the cells' output, which the notebook keeps)
        # would break the command line's one line per error
        client.execute(stderr=subprocess.DEVNULL)
    except Exception as error:
        # nbclient answers Ctrl-C by shutting the kernel down itself (noting it in this
        # attribute); what comes out then, DeadKernelError or an AssertionError from its
        # cleanup, would hide the interrupt
        if getattr(client, "_async_cleanup_kernel_future", None) is not None:
            raise KeyboardInterrupt from None
        where = "" if running[0] is None else f" in cell {running[0] + 1}"
        if isinstance(error, CellExecutionError):
            why = _cell_error(notebook.cells[running[0]], error)
        elif isinstance(error, CellTimeoutError):
            why = f": it timed out (a cell may run {seconds} s)"
        elif isinstance(error, DeadKernelError):
            why = ": the kernel died (the cell ended the Python process, or it was killed)"
        else:  # the kernel did not start or answer: nbclient's and jupyter_client's errors
            why = f": {type(error).__name__}: {_one_line(error)}"
        raise LessonFailed(f"lesson {lesson.name} failed{where}{why}") from None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _one_line(error):
    text = _ANSI.sub("", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _cell_error(cell, error):
    """What a cell that raised shows, in one line: its failing line and the error."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
            lines = re.findall(r"^-+>\s*\d+\s+(.*)$", trace, re.M)
            at = f", at `{lines[-1].strip()}`" if lines else ""
            message = _ANSI.sub("", f"{output['ename']}: {output['evalue']}").strip(": ")
            return f"{at}: {message}"
    return f": {error.ename}: {_one_line(error.evalue)}"


# ------------------------------------------------------------------ the API's modules


def api_modules():
    """The package's modules, documented in the API reference: ``iwae_np`` and every module
    and subpackage under it (``__main__`` aside, which runs the command line on import)."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE] + sorted(
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}.")
        if not info.name.endswith(".__main__")
    )
    return names


def unwrap(obj):
    """The function a decorator wrapped: functools' ``__wrapped__``, and autograd's
    ``primitive``, which keeps the raw function as ``.fun``."""
    for _ in range(10):
        inner = getattr(obj, "__wrapped__", None)
        if inner is None:
            fun = getattr(obj, "fun", None)
            if inspect.isfunction(fun) and fun.__name__ == getattr(obj, "__name__", None):
                inner = fun
        if inner is None:
            return obj
        obj = inner
    return obj


def public_names(module):
    """A module's public names: its ``__all__`` if it has one; otherwise every name not
    starting with _ that is bound to a function or class defined in the module itself."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(unwrap(value)) or inspect.isclass(value))
        and getattr(unwrap(value), "__module__", None) == module.__name__
    ]


def _definition(obj):
    """obj -> (module name, qualified name) where it is defined, or None if not in the
    package."""
    if inspect.ismodule(obj):
        return (obj.__name__, "") if obj.__name__.startswith(PACKAGE) else None
    inner = unwrap(obj)
    module, qualname = getattr(inner, "__module__", None), getattr(inner, "__qualname__", None)
    if not (isinstance(module, str) and module.startswith(PACKAGE) and qualname):
        return None
    if "<locals>" in qualname:
        return None
    return module, qualname


def _source_line(obj):
    try:
        return inspect.getsourcelines(unwrap(obj))[1]
    except (OSError, TypeError):
        return None


# ------------------------------------------------------------------ text to HTML


def _text(source):
    return "".join(source) if isinstance(source, list) else source


def _esc(text):
    return html.escape(str(text), quote=True)


def _inline(text):
    """Docstring prose -> HTML: escaped, with ``literals`` as code."""
    parts = re.split(r"``(.+?)``", text)
    return "".join(
        f"<code>{_esc(part)}</code>" if index % 2 else _esc(part)
        for index, part in enumerate(parts)
    )


def docstring_html(doc):
    """A docstring -> HTML. Paragraphs of prose become <p>; indented lines (the equations,
    shapes and tables the package writes in Unicode) stay as laid out, in <pre>; a line
    underlined with --- becomes a heading."""
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    blocks, prose, layout = [], [], []

    def flush():
        if prose:
            blocks.append(f"<p>{_inline(' '.join(line.strip() for line in prose))}</p>")
            prose.clear()
        if layout:
            common = min(len(line) - len(line.lstrip()) for line in layout if line.strip())
            text = "\n".join(line[common:] for line in layout).rstrip()
            blocks.append(f'<pre class="doc-block">{_esc(text)}</pre>')
            layout.clear()

    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", line.strip()) and index:
            continue
        if line.strip() and re.fullmatch(r"-{3,}", following.strip()):
            flush()
            blocks.append(f"<h5>{_esc(line.strip())}</h5>")
        elif not line.strip():
            if layout and following.startswith(" "):
                layout.append("")  # a blank line inside an indented block keeps it whole
            else:
                flush()
        elif line.startswith(" "):
            if prose:
                flush()
            layout.append(line)
        else:
            if layout:
                flush()
            prose.append(line)
    flush()
    return "\n".join(blocks)


def _first_line(doc):
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ") if doc else ""


# ------------------------------------------------------------------ the search index


class _Sections(HTMLParser):
    """A page's HTML -> sections [anchor, heading, text] for the search index: a new section
    starts at each h1-h4 that has an id. An equation counts as its LaTeX (its alttext); scripts,
    styles, the navigation (the book's, a lesson's download bar and its previous/next links) and
    the "source"/"¶" links are left out."""

    SKIP_TAGS = {"script", "style", "header", "footer"}
    SKIP_CLASSES = {"source", "kind", "anchor-link", "lesson-bar", "pager"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = [["", [], []]]
        self.skip = None  # [tag, depth] of the element being left out
        self.heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.skip is not None:
            self.skip[1] += tag == self.skip[0]
            return
        if (
            tag in self.SKIP_TAGS
            or tag == "math"
            or self.SKIP_CLASSES & set((attrs.get("class") or "").split())
        ):
            self.skip = [tag, 1]
            if tag == "math":
                self.handle_data(f" {attrs.get('alttext', '')} ", force=True)
        elif tag in ("h1", "h2", "h3", "h4") and attrs.get("id"):
            self.sections.append([attrs["id"], [], []])
            self.heading = tag

    def handle_endtag(self, tag):
        if self.skip is not None:
            self.skip[1] -= tag == self.skip[0]
            if self.skip[1] == 0:
                self.skip = None
        elif tag == self.heading:
            self.heading = None

    def handle_data(self, data, force=False):
        if self.skip is None or force:
            self.sections[-1][1 if self.heading else 2].append(data)


def _search_entries(page_url, page_title, page_html):
    parser = _Sections()
    parser.feed(page_html)
    entries = []
    for anchor, heading, text in parser.sections:
        heading = " ".join("".join(heading).replace("¶", "").split())
        text = " ".join("".join(text).split())
        if not (heading or text):
            continue
        entries.append(
            {
                "t": heading or page_title,
                "p": page_title,
                "u": f"{page_url}#{anchor}" if anchor else page_url,
                "x": text,
            }
        )
    return entries


# ------------------------------------------------------------------ the builder


def _exporter_class():
    """nbconvert's HTML exporter (basic template), with Markdown math rendered to MathML and
    links to other lessons pointed at their pages."""
    from jinja2 import pass_context
    from nbconvert import HTMLExporter

    class LessonExporter(HTMLExporter):
        def __init__(self, site, **kwargs):
            # The basic template passes each highlighted code cell through bleach (a fifth of
            # the build's time); the code is the repository's own lessons, highlighted by
            # pygments, so there is nothing to clean. Outputs are not sanitized either way.
            filters = {"clean_html": lambda html: html}
            super().__init__(template_name="basic", filters=filters, **kwargs)
            self.site = site
            self.exclude_input_prompt = True
            self.exclude_output_prompt = True

        @pass_context  # as nbconvert's own: the template passes the cell in the context
        def markdown2html(self, context, source):
            protected, spans = book_math.protect_math(source)
            rendered = super().markdown2html(context, protected)
            self.site.equations += len(spans)
            try:
                return self.site.rewrite_links(book_math.restore_math(rendered, spans))
            except book_math.MathError as error:
                where = self.site.rendering or "markdown"
                raise ValueError(f"{where}: {error}") from None

    return LessonExporter


EDITIONS = {
    False: "This is the student edition: each exercise is left for you to solve, as in the "
    "notebooks that <code>python -m iwae_np lessons release</code> writes. The pages show what an "
    "unsolved exercise prints, and the experiments that use it ran with the package's function "
    "instead (they say so). An instructor builds the edition with the solutions by "
    "<code>python -m iwae_np book --solutions</code>.",
    True: "This is the instructor edition: the lessons are shown with their solutions and "
    "hidden tests filled in. Give students the student edition (<code>python -m iwae_np "
    "book</code> without <code>--solutions</code>).",
}


# The map (lessons/README.md) speaks of the lessons as stored, solved.
MAP_NOTE = (
    "In this student edition each lesson is its student copy: the exercises are left for you to "
    "solve. The map below speaks of the lessons as the repository stores them, solved."
)


class _Site:
    """The pages being written into ``out``, with what links between them."""

    def __init__(self, out, lessons_dir, lessons, solutions=False):
        from nbconvert.preprocessors import ExtractOutputPreprocessor

        self.out = out
        self.solutions = solutions
        self.lessons_dir = lessons_dir
        self.lessons = lessons  # [(path, title)]
        self.pages = []
        self.search = []
        self.equations = 0
        self.depth = 0
        self.rendering = None
        self.exporter = _exporter_class()(self)
        self.exporter.register_preprocessor(ExtractOutputPreprocessor, enabled=True)
        self.modules = {}  # module name -> module, for the API pages

    # ---------------------------------------------------------------- pages

    def root(self):
        return "../" * self.depth

    def page(self, path, title, body, index=True):
        """Write one page at ``path`` (relative to out) around ``body``."""
        self.depth = path.count("/")
        root = self.root()
        text = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)} · {_esc(TITLE)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}_static/book.css">
</head>
<body>
<header class="book-nav">
<a class="book-home" href="{root}index.html">{_esc(TITLE)}</a>
<a href="{root}map.html">Lessons</a>
<a href="{root}api/index.html">API</a>
<form class="book-search" action="{root}search.html" method="get" role="search">
<input type="search" name="q" placeholder="Search the book" aria-label="Search the book">
</form>
</header>
<main>
{body}
</main>
<footer>Built from the repository by <code>python -m iwae_np book</code>. Every page works
offline: nothing is fetched from outside this folder.</footer>
</body>
</html>
"""
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.pages.append(path)
        if index:
            self.search.extend(_search_entries(path, title, body))

    def rewrite_links(self, rendered):
        """Links in a lesson's Markdown (or in lessons/README.md): a lesson notebook becomes its
        page, lessons/README.md the map; any other relative link leaves the book, so it is kept
        as text, with the path it named as a tooltip."""
        lesson_stems = {path.name: path.stem for path, _ in self.lessons}
        root = self.root()

        def replace(match):
            href, label = html.unescape(match.group(2)), match.group(3)
            if re.match(r"^[a-z][a-z0-9+.-]*:|^#", href):
                return match.group(0)
            target, _, fragment = href.partition("#")
            name = Path(target).name
            if name in lesson_stems and not target.startswith(".."):
                url = f"{root}lessons/{lesson_stems[name]}.html"
            elif target in ("README.md", "./README.md"):
                url = f"{root}map.html"
            else:
                tooltip = _esc(f"{href} (not part of the book)")
                return f'<span class="offbook" title="{tooltip}">{label}</span>'
            url += f"#{fragment}" if fragment else ""
            return f'<a{match.group(1) or " "}href="{_esc(url)}">{label}</a>'

        return re.sub(
            r'<a(\s[^>]*?)?\s*href="([^"]*)"[^>]*>(.*?)</a>', replace, rendered, flags=re.S
        )

    # ---------------------------------------------------------------- lessons

    def lesson_page(self, path, title, notebook, previous, following):
        stem = path.stem
        self.depth = 1
        self.rendering = path.name
        resources = {
            "output_files_dir": f"{stem}_files",
            "unique_key": "output",
            "metadata": {"name": stem, "path": str(path.parent)},
        }
        body, resources = self.exporter.from_notebook_node(notebook, resources=resources)
        for name, data in resources.get("outputs", {}).items():
            target = self.out / "lessons" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._copy_markdown_images(body, path)
        if self.solutions:
            shutil.copyfile(path, self.out / "notebooks" / path.name)
            edition = "with its solutions (the instructor edition)"
        else:  # the student copy, as the page shows it, without its outputs
            import nbformat

            nbformat.write(lesson_notebook(path), str(self.out / "notebooks" / path.name))
            edition = (
                "with its exercises left for you (the student edition: an unsolved exercise "
                "says so, and the experiments that use it run the package's function instead)"
            )
        bar = (
            f'<nav class="lesson-bar">Download the notebook: <a class="download" '
            f'href="../notebooks/{_esc(path.name)}" download>{_esc(path.name)}</a>, {edition} '
            f'(open it in Jupyter after <code>pip install -e ".[lessons]"</code>). '
            f'The figures and numbers below are from one run of it. <a href="#functions-used">'
            f"The package's functions it uses</a>.</nav>"
        )
        pager = '<nav class="pager">'
        pager += (
            f'<a href="{previous[0].stem}.html">← {_esc(previous[1])}</a>'
            if previous
            else "<span></span>"
        )
        pager += (
            f'<a href="{following[0].stem}.html">{_esc(following[1])} →</a>' if following else ""
        )
        pager += "</nav>"
        uses = self.functions_used(notebook)
        self.page(f"lessons/{stem}.html", title, bar + body + uses + pager)
        self.rendering = None

    def _copy_markdown_images(self, body, lesson):
        """Copy the images a lesson's Markdown shows (paths relative to the lessons folder) to
        the same place under the book's lessons/. ValueError for a path that leaves the lessons
        folder: the copy would land outside the book, or show a file from anywhere."""
        for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', body):
            if re.match(r"^[a-z][a-z0-9+.-]*:", src):
                continue  # data: (and a URL, which the page names as it is)
            relative = os.path.normpath(unquote(html.unescape(src)))
            if os.path.isabs(relative) or relative.split(os.sep)[0] == "..":
                raise ValueError(
                    f"lesson {lesson.name}: expected images inside the lessons folder, got {src!r}"
                )
            source, target = self.lessons_dir / relative, self.out / "lessons" / relative
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)

    def functions_used(self, notebook):
        """A section listing the package's functions and classes the notebook's code names
        (``iw.iwae_bound``, ``from iwae_np.vi import fit_local``), each linked to its API entry
        and its source."""
        found = {}
        code = [_text(cell.source) for cell in notebook.cells if cell.cell_type == "code"]
        for obj in _package_objects(code):
            where = _definition(obj)
            if where and where[1] and where[0] in self.modules:
                found[where] = obj
        if not found:
            return (
                '<section class="uses"><h2 id="functions-used">The package\'s functions this '
                "lesson uses</h2><p>None by name.</p></section>"
            )
        items = []
        for (module, qualname), obj in sorted(found.items()):
            line = _source_line(obj)
            anchor = f"#L-{line}" if line else ""
            items.append(
                f'<li><a href="../api/{module}.html#{module}.{qualname}">'
                f"<code>{module}.{qualname}</code></a> "
                f'<a class="source" href="../source/{module}.html{anchor}">source</a></li>'
            )
        return (
            '<section class="uses"><h2 id="functions-used">The package\'s functions this lesson '
            'uses</h2><ul class="toc">' + "".join(items) + "</ul></section>"
        )

    # ---------------------------------------------------------------- API and source

    def api_pages(self):
        entries = []
        for name in api_modules():
            self.modules[name] = importlib.import_module(name)
        for name, module in self.modules.items():
            self.module_page(name, module)
            self.source_page(name, module)
            entries.append(name)
        core = [n for n in entries if n.count(".") == 1 and not _is_package(self.modules[n])]
        groups = [("The package", [PACKAGE]), ("The core", core)]
        for sub in sorted(n for n in entries if n.count(".") == 1 and n not in core):
            groups.append((sub, [n for n in entries if n == sub or n.startswith(sub + ".")]))
        body = [
            '<h1 id="api">API reference</h1><p>Every module of the package, from its '
            "docstrings. Equations are written in the docstrings as Unicode text, the way the "
            "source shows them. Each entry links to its source.</p>"
        ]
        for heading, names in groups:
            body.append(f"<h2>{_esc(heading)}</h2><ul>")
            for name in names:
                body.append(
                    f'<li><a href="{name}.html"><code>{name}</code></a> — '
                    f"{_esc(_first_line(self.modules[name].__doc__))}</li>"
                )
            body.append("</ul>")
        self.page("api/index.html", "API reference", "\n".join(body))

    def module_page(self, name, module):
        self.depth = 1
        parts = [
            f'<h1 id="{name}"><code>{name}</code> <a class="source" href="../source/{name}.html">'
            f"source</a></h1>",
            docstring_html(module.__doc__),
        ]
        names = public_names(module)
        if names:
            parts.append('<h2>Contents</h2><ul class="toc">')
            parts += [f'<li><a href="#{name}.{n}"><code>{n}</code></a></li>' for n in names]
            parts.append("</ul>")
        for public in names:
            parts.append(self.api_entry(name, public, getattr(module, public, None)))
        self.page(f"api/{name}.html", name, "\n".join(parts))

    def api_entry(self, module, public, obj):
        anchor = f"{module}.{public}"
        where = _definition(obj) if obj is not None else None
        if inspect.ismodule(obj):
            return (
                f'<section class="api-entry"><h3 id="{anchor}"><code>{public}</code> '
                f'<span class="kind">module</span></h3><p>See <a href="{obj.__name__}.html">'
                f"<code>{obj.__name__}</code></a>: {_esc(_first_line(obj.__doc__))}</p></section>"
            )
        if where and where[0] != module:
            target = f"{where[0]}.{where[1]}"
            return (
                f'<section class="api-entry"><h3 id="{anchor}"><code>{public}</code> '
                f'<span class="kind">from {where[0]}</span></h3><p>Defined in <a '
                f'href="{where[0]}.html#{target}"><code>{target}</code></a>: '
                f"{_esc(_first_line(unwrap(obj).__doc__))}</p></section>"
            )
        if not (inspect.isclass(obj) or callable(obj)):
            text = repr(obj)
            text = text if len(text) <= 300 else text[:300] + " …"
            return (
                f'<section class="api-entry"><h3 id="{anchor}"><code>{public}</code> '
                f'<span class="kind">{_esc(type(obj).__name__)}</span></h3>'
                f'<pre class="doc-block">{_esc(text)}</pre></section>'
            )
        kind = "class" if inspect.isclass(obj) else "function"
        parts = [
            f'<section class="api-entry"><h3 id="{anchor}"><code>{public}{_signature(obj)}</code> '
            f'<span class="kind">{kind}</span>{self._source_link(module, obj)}</h3>',
            docstring_html(inspect.getdoc(unwrap(obj)) if kind == "function" else obj.__doc__),
        ]
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or not _is_method(value):
                    continue
                function = value.fget if isinstance(value, property) else value
                if isinstance(function, (classmethod, staticmethod)):
                    function = function.__func__
                label = attr if isinstance(value, property) else f"{attr}{_signature(function)}"
                kind = "property" if isinstance(value, property) else "method"
                parts.append(
                    f'<div class="api-method"><h4 id="{anchor}.{attr}"><code>{_esc(label)}</code> '
                    f'<span class="kind">{kind}</span>{self._source_link(module, function)}</h4>'
                    f"{docstring_html(inspect.getdoc(unwrap(function)))}</div>"
                )
        parts.append("</section>")
        return "\n".join(parts)

    def _source_link(self, module, obj):
        line = _source_line(obj)
        anchor = f"#L-{line}" if line else ""
        return f'<a class="source" href="../source/{module}.html{anchor}">source</a>'

    def source_page(self, name, module):
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        path = inspect.getsourcefile(module)
        code = Path(path).read_text(encoding="utf-8")
        formatter = HtmlFormatter(linenos="inline", lineanchors="L")
        relative = Path(path).resolve().relative_to(_package_root().parent)
        body = (
            f'<div class="source-page"><h1 id="source"><code>{relative}</code></h1>'
            f'<p>The source of <a href="../api/{name}.html"><code>{name}</code></a>.</p>'
            f"{highlight(code, PythonLexer(), formatter)}</div>"
        )
        self.page(f"source/{name}.html", f"{relative} (source)", body, index=False)

    # ---------------------------------------------------------------- the rest

    def map_page(self):
        readme = self.lessons_dir / "README.md"
        self.depth = 0
        if readme.is_file():
            self.rendering = "lessons/README.md"
            body = self.exporter.markdown2html({}, readme.read_text(encoding="utf-8"))
            self.rendering = None
        else:
            body = "<h1>Lessons</h1>" + self._lesson_list("")
        note = "" if self.solutions else f'<p class="edition">{MAP_NOTE}</p>'
        self.page("map.html", "Lessons: the map", f'{note}<div class="map">{body}</div>')

    def _lesson_list(self, root):
        """The lessons, linked; unnumbered, as each title starts with its number."""
        items = "".join(
            f'<li><a href="{root}lessons/{path.stem}.html">{_esc(title)}</a></li>'
            for path, title in self.lessons
        )
        return f'<ul class="lessons">{items}</ul>'

    def index_page(self):
        package_doc = importlib.import_module(PACKAGE).__doc__
        body = f"""<h1 id="the-course">Variational inference and the IWAE bound, built
from scratch</h1>
<p>{_esc(_first_line(package_doc))} The lessons teach one concept each with the package's own
functions, answer their questions with an experiment, and end with questions those experiments
answer. Every page here was executed when the book was built: the figures and numbers are on the
page. To run a lesson yourself, download its notebook from the top of its page.</p>
<p class="edition">{EDITIONS[self.solutions]}</p>
<h2 id="lessons">Lessons</h2>
{self._lesson_list("")}
<h2 id="more">Also in the book</h2>
<ul>
<li><a href="map.html">The lesson map</a>: which lesson answers which question, prerequisites,
run and study time.</li>
<li><a href="api/index.html">The API reference</a>: every module and public function, from the
docstrings, with links to the source.</li>
<li><a href="search.html">Search</a> the lessons and the API.</li>
</ul>"""
        self.page("index.html", "Home", body)

    def search_page(self):
        body = """<h1 id="search">Search</h1>
<form id="search-form" action="search.html" method="get" role="search">
<input id="search-input" type="search" name="q" placeholder="a word, e.g. importance"
 aria-label="Search the book" autofocus>
</form>
<p id="search-status"></p>
<ol id="search-results"></ol>
<script src="_static/search_index.js"></script>
<script src="_static/search.js"></script>"""
        self.page("search.html", "Search", body, index=False)

    def static_files(self):
        static = self.out / "_static"
        static.mkdir(parents=True, exist_ok=True)
        from pygments.formatters import HtmlFormatter

        css = book_assets.CSS + HtmlFormatter().get_style_defs(".highlight")
        (static / "book.css").write_text(css, encoding="utf-8")
        (static / "search.js").write_text(book_assets.SEARCH_JS, encoding="utf-8")
        shutil.copyfile(math_font(), static / "STIXTwoMath-Regular.ttf")
        (static / "FONT-NOTICE.txt").write_text(book_assets.FONT_NOTICE, encoding="utf-8")
        index = json.dumps(self.search, ensure_ascii=False, separators=(",", ":"))
        (static / "search_index.js").write_text(
            f"window.BOOK_SEARCH_INDEX = {index};\n", encoding="utf-8"
        )


def _is_package(module):
    return hasattr(module, "__path__")


def _is_method(value):
    return inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod))


def _signature(obj):
    try:
        signature = inspect.signature(unwrap(obj))
    except (TypeError, ValueError):
        return "(…)"
    text = str(signature)
    return text if len(text) <= 400 else text[:400] + " …)"


def _package_root():
    return Path(importlib.import_module(PACKAGE).__file__).resolve().parent


def math_font():
    """The STIX Two Math font file that the ziamath package ships (the [docs] extra)."""
    spec = importlib.util.find_spec("ziamath")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            'ziamath: expected the [docs] extra installed (pip install -e ".[docs]"), '
            "for the math font, got no ziamath"
        )
    return Path(spec.submodule_search_locations[0]) / "fonts" / "STIXTwoMath-Regular.ttf"


def _package_objects(sources):
    """The package's objects a notebook's code cells name: ``alias.name...`` chains after
    ``import iwae_np as alias``, and names from ``from iwae_np... import``, in any cell."""
    trees = []
    for code in sources:
        code = "\n".join(
            line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        try:
            trees.append(ast.parse(code))
        except SyntaxError:
            continue
    bound = {}
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    top = alias.asname or alias.name.split(".")[0]
                    bound[top] = importlib.import_module(alias.name if alias.asname else PACKAGE)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is None:
                    try:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        continue
                bound[alias.asname or alias.name] = value
    found = []
    for node in (node for tree in trees for node in ast.walk(tree)):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id in bound):
            continue
        obj = bound[node.id]
        for attr in [None, *reversed(chain)]:
            if attr is not None:
                obj = getattr(obj, attr, None)
            if inspect.isclass(obj) or inspect.isfunction(unwrap(obj)):
                found.append(obj)
            elif not inspect.ismodule(obj):
                break
    return found


def _lesson_title(notebook, path):
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in _text(cell.source).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem.replace("_", " ")


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or under it (both absolute, links resolved)."""
    return path == folder or folder in path.parents


def check_out(out):
    """``out`` -> the absolute path of the book's folder (symbolic links resolved), if it can
    take the book: new, an empty folder, or a book built before (its marker names the files the
    build replaces; any other file there stays). Anything else is refused (ValueError)."""
    if isinstance(out, bytes) or not isinstance(out, (str, Path)) or not str(out):
        raise ValueError(f"out: expected a folder path, got {out!r}")
    given, out = str(out), Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, got {given!r}, which is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(
            f"out: expected an empty folder or a book built before, got {given!r}, "
            f"which holds other files"
        )
    return out


def check_arguments(out, lessons, cache, timeout, solutions=False):
    """Refuse bad arguments to ``build`` before anything runs or is written, each lesson read
    (ValueError naming the first one that is not a well-formed notebook); -> (out, the lessons
    folder, the lessons), the folders as absolute paths."""
    out = check_out(out)
    lessons_dir = Path(lessons).resolve()
    paths = find_lessons(lessons_dir)
    if _inside(lessons_dir, out):
        raise ValueError(
            f"lessons: expected a folder outside out, which the builder writes into, got "
            f"{str(lessons)!r} inside {str(out)!r}"
        )
    if cache is not None:
        cache_dir = Path(cache).resolve()
        if cache_dir.exists() and not cache_dir.is_dir():
            raise ValueError(f"cache: expected a folder, got {str(cache)!r}, which is a file")
        if _inside(cache_dir, out):
            raise ValueError(
                f"cache: expected a folder outside out, which the builder writes into, got "
                f"{str(cache)!r} inside {str(out)!r}"
            )
        if cache_dir == lessons_dir:  # its files would be read as lessons, and replaced
            raise ValueError(
                f"cache: expected a folder other than the lessons', got {str(cache)!r}"
            )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    if not 0 < timeout < math.inf:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    for path in paths:
        lesson_notebook(path, solutions)
    return out, lessons_dir, paths


@contextlib.contextmanager
def _building(out):
    """Hold the folder ``out`` (made if new) for one build, and yield a new staging folder beside
    it, removed at the end (as are those of builds that were killed). A second build into ``out``
    meanwhile is refused: the two would mix their files. A new ``out`` that a failed build leaves
    empty is removed again."""
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    handle = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when handle closes
        except BlockingIOError:
            raise ValueError(
                f"out: expected a folder no other build is writing, got {str(out)!r}, which "
                f"another python -m iwae_np book is building now"
            ) from None
        prefix = f".{out.name}.building-"
        for stale in out.parent.glob(f"{glob.escape(prefix)}*"):
            if re.fullmatch(r"[a-z0-9_]{8}", stale.name[len(prefix) :]) and stale.is_dir():
                shutil.rmtree(stale)  # a killed build's (tempfile's names): none is running now
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if made and not any(out.iterdir()):
                out.rmdir()
    finally:
        os.close(handle)


def _written_before(out):
    """The files (relative paths) that the marker in ``out`` says the previous build wrote: an
    empty set if there is no marker, None if the marker lists none (written before markers
    listed files, or damaged). Paths that would leave ``out`` are dropped."""
    marker = out / MARKER
    if not marker.is_file():
        return set()
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list):
        return None
    names = {name for name in files if isinstance(name, str)}
    return {name for name in names if _inside((out / name).parent.resolve(), out)}


def _write_marker(out, files):
    text = json.dumps(
        {
            "written by": "python -m iwae_np book",
            "rebuild": "replaces or removes these files, and leaves every other file here alone",
            "files": sorted(files),
        },
        indent=1,
    )
    _write_atomically(out / MARKER, lambda part: part.write_text(text + "\n", encoding="utf-8"))


@contextlib.contextmanager
def _uninterrupted():
    """Ctrl-C is ignored inside: a book half moved into place would be worse than either."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _put_in_place(staging, out):
    """Move the book built in ``staging`` into ``out``: each of its files replaces the one at the
    same place in ``out``, the files the previous build wrote that this one did not are removed,
    and every other file in ``out`` is left as it is. ValueError, before anything moves, if a
    file of the book would replace one the builder did not write."""
    new = {path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file()}
    old = _written_before(out)
    ours = new if old is None else old  # an old marker: the book's own paths are taken as its
    for name in sorted(new):
        target = out / name
        in_the_way = [
            folder
            for folder in target.parents
            if folder != out and _inside(folder, out) and (folder.is_symlink() or folder.is_file())
        ]
        if in_the_way or target.is_dir() or (name not in ours and os.path.lexists(target)):
            raise ValueError(
                f"out: expected no file of yours where the book writes one, got "
                f"{str(in_the_way[-1] if in_the_way else target)!r}"
            )
    with _uninterrupted():
        # the marker first lists both books' files: a move cut short (a power cut) is undone by
        # the next build
        _write_marker(out, new | (old or set()))
        for name in sorted(new):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
        for name in (old or set()) - new:
            target = out / name
            if target.is_file() or target.is_symlink():
                target.unlink()
            for folder in target.parents:  # folders left empty; rmdir removes no file
                if folder == out or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()
        _write_marker(out, new)


def build(out, lessons="lessons", cache=None, timeout=600, progress=None, solutions=False):
    """Build the book into the folder ``out``; -> a Book.

    lessons: the folder holding the lesson notebooks (``NN_name.ipynb``) and README.md (the
    lesson map). cache: a folder for executed notebooks (None: execute every lesson, keep
    nothing). timeout: seconds a lesson's cell may run (rounded up to a whole second). progress:
    a function called with one line per step (None: silent). solutions: False (the student
    edition) shows and offers for download each lesson's student copy, its exercises unsolved
    and the experiments that use them run with the package's functions; True (the instructor
    edition) shows the lessons with their solutions and hidden tests.

    ``out`` must be new, empty, or a book built before: the files that build wrote are replaced,
    any other file stays. The book is written to a staging folder beside ``out`` and moved into
    it at the end, so ``out`` is unchanged if the build fails (a lesson that raises stops it
    with LessonFailed) or is interrupted. A second build into the same ``out`` at the same time
    is refused (ValueError).
    """
    out, lessons_dir, paths = check_arguments(out, lessons, cache, timeout, solutions)
    math_font()  # the [docs] extra is there, before any lesson runs
    if cache is not None:
        check_output_folder("cache", cache, create=True)
    say = progress or (lambda line: None)
    book = Book(out=out, solutions=solutions)
    with _building(out) as staging:
        notebooks = []
        for path in paths:
            started = time.perf_counter()
            notebook, executed = executed_lesson(
                path, cache=cache, timeout=timeout, solutions=solutions
            )
            if executed:
                book.executed.append(path.name)
                say(f"executed {path.name} in {time.perf_counter() - started:.0f} s")
            else:
                say(f"{path.name}: from the cache")
            notebooks.append((path, _lesson_title(notebook, path), notebook))
        site = _Site(staging, lessons_dir, [(p, title) for p, title, _ in notebooks], solutions)
        (staging / "notebooks").mkdir()
        site.api_pages()  # first: lesson pages link to the modules' entries
        for index, (path, title, notebook) in enumerate(notebooks):
            previous = notebooks[index - 1][:2] if index else None
            following = notebooks[index + 1][:2] if index + 1 < len(notebooks) else None
            site.lesson_page(path, title, notebook, previous, following)
        site.map_page()
        site.index_page()
        site.search_page()
        site.static_files()
        _put_in_place(staging, out)
    book.pages = site.pages
    book.lessons = [path.name for path in paths]
    book.modules = list(site.modules)
    book.equations = site.equations
    say(str(book))
    return book
