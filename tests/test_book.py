"""The book (``python -m iwae_np book``): its math, its pages, and the whole book opened in a real
browser.

The browser test builds the book from the lessons that conftest's ``executed_lesson`` already
ran for tests/test_lessons.py (put into the builder's cache, so nothing runs twice), then opens
every page in headless Chromium through Selenium and chromedriver (Debian's ``chromium`` and
``chromium-driver``) and checks, on each: no console error; no network request to anything
outside the book's folder; every equation laid out as MathML, and no raw ``$…$`` left in the
text; every image loaded (naturalWidth > 0); every link inside the folder reaching a file, and
its #anchor an element there. Then: search finds a lesson, each lesson's download link is its
notebook, and the API pages list every public function.

It is skipped where Chromium or chromedriver is missing, unless IWAE_NP_REQUIRE_BROWSER is set
(.ci/run sets it, after installing them), when it fails instead. It prints its counts (pages,
figures loaded, equations rendered, requests inside and outside the folder) under ``-s``, and
records them as the test's ``book`` property.
"""

import html
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from iwae_np.app import book, book_math
from iwae_np.app.book import MARKER

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--window-size=1280,900"
).split()


# ------------------------------------------------------------------ math


def test_math_spans_are_found_outside_code_only():
    text, spans = book_math.protect_math(
        "a $x_1$ b $$\\sum_i w_i$$ `$not$` \\$5 and \\(y\\)\n```\n$z$\n```\n"
    )
    assert [(latex, display) for _, latex, display in spans] == [
        ("x_1", False),
        ("\\sum_i w_i", True),
        ("y", False),
    ]
    assert "`$not$`" in text and "\\$5" in text and "$z$" in text
    assert all(re.fullmatch(r"[a-z0-9]+", placeholder) for placeholder, _, _ in spans)


def test_latex_becomes_mathml_that_chromium_renders():
    """MathML Core: no mathvariant but "normal" (𝔼, ℒ as letters), a thin space after log, the
    prime beside its base, no command left with its backslash, the LaTeX kept as alttext."""
    mathml = book_math.latex_to_mathml(r"\mathbb{E}[\log\sigma] + \mathcal{L} + f'(x) + \arg\max_i")
    assert mathml.startswith("<math") and 'alttext="\\mathbb{E}' in mathml
    assert "𝔼" in mathml and "ℒ" in mathml and "double-struck" not in mathml
    assert mathml.count("<mspace") == 2  # log σ, and arg max (one space between them)
    assert "<mi>log</mi><mspace" in mathml and "<msup>" not in mathml and ">\\arg" not in mathml
    block = book_math.latex_to_mathml(r"\frac{1}{k}", display=True)
    assert 'display="block"' in block and "<mfrac>" in block


BIG_DELIMITERS = (  # as the lessons write them
    r"\Big(a\Big)^{1-\alpha}",
    r"\big(L^{-1}(z)\big)^\top",
    r"\Big(\frac{W}{s^2} + \beta I\Big)^{-1}",
    r"-\log\Big|\det \frac{\partial T}{\partial \varepsilon}\Big|",
    r"\Big(r_i - \sum_{j<i} L_{ij}\Big) \Big/ L_{ii}",
)


def test_hat_sim_and_big_delimiters_become_mathml_core():
    """\\hat is the circumflex accent (not an ASCII caret set above the letter), \\sim the
    relation ∼ (not the letter ~), and every \\big/\\Big delimiter is stretchy, one carrying a
    script wrapped in an mrow (Chromium stretches neither a bar or slash in a row, nor the bare
    base of a script); ``test_a_tiny_book_reads_well_in_chromium`` measures them."""
    hat = book_math.latex_to_mathml(r"\hat L_\alpha")
    assert '<mover accent="true"><mi>L</mi><mo>ˆ</mo></mover>' in hat and ">^<" not in hat
    assert "<mi>z</mi><mo>∼</mo><mi>q</mi>" in book_math.latex_to_mathml(r"z \sim q")
    for latex in BIG_DELIMITERS:
        mathml = book_math.latex_to_mathml(latex, display=True)
        sized = re.findall(r"<mo [^>]*minsize[^>]*>", mathml)
        assert sized and all('stretchy="true"' in mo for mo in sized), latex
        assert not re.search(r"<(msub|msup|msubsup)><mo ", mathml), latex
    assert "<mi>log</mi><mspace" in book_math.latex_to_mathml(r"\log\Big|J\Big|")  # log |J|


def test_math_placeholders_go_back_as_mathml_in_text_and_as_latex_in_tags():
    text, spans = book_math.protect_math("## The bound $L_k$")
    rendered = f'<h2 id="The-bound-{spans[0][0]}">The bound {spans[0][0]}</h2>'
    restored = book_math.restore_math(rendered, spans)
    assert restored.startswith('<h2 id="The-bound-L_k">The bound <math')


def test_bad_math_input_is_named():
    with pytest.raises(ValueError, match="^latex: expected a non-empty str"):
        book_math.latex_to_mathml("")
    with pytest.raises(ValueError, match="^markdown: expected a str"):
        book_math.protect_math(None)
    with pytest.raises(ValueError, match="^latex: expected commands latex2mathml knows"):
        book_math.latex_to_mathml(r"\notacommand x")


def test_docstrings_keep_their_equations_as_laid_out():
    doc = """Bounds on log p(x).

        IWAE:  L_k = log (1/k) Σ_i w_i

    with ``w_i`` = p(x, z_i) / q(z_i|x).
    """
    rendered = book.docstring_html(doc)
    assert "<p>Bounds on log p(x).</p>" in rendered
    assert '<pre class="doc-block">IWAE:  L_k = log (1/k) Σ_i w_i</pre>' in rendered
    assert "<code>w_i</code>" in rendered


# ------------------------------------------------------------------ the builder, no browser


def _tiny_lessons(folder):
    """A lessons folder with one executed lesson (a figure, math, a call into the package) in
    a cache, and a README that links to it."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    folder.mkdir()
    png = (  # a 1×1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
        "rkJggg=="
    )
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# 00 · A tiny lesson\n\nThe bound $L_k$ and\n\n$$\\log p(x)$$"),
            new_code_cell("import iwae_np as iw\niw.iwae_bound"),
            new_code_cell(
                "def double(a):\n    ### BEGIN SOLUTION\n    return a + a  # the tiny solution\n"
                "    ### END SOLUTION\n### BEGIN HIDDEN TESTS\nassert double(2) == 4\n"
                "### END HIDDEN TESTS"
            ),
        ]
    )
    (folder / "00_tiny.ipynb").write_text(nbformat.writes(notebook))
    notebook.cells[1].outputs = [new_output("display_data", data={"image/png": png})]
    (folder / "README.md").write_text("# Lessons\n\n[the tiny one](00_tiny.ipynb), [x](other.md)")
    return folder, notebook


def _text_of(page):
    """What a page shows as text (tags dropped, entities read): highlighted code is split into
    spans, so a line of code is found in this, not in the HTML."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.slow
def test_a_book_builds_from_the_cache_without_executing(tmp_path):
    lessons, executed = _tiny_lessons(tmp_path / "lessons")
    student = book.lesson_notebook(lessons / "00_tiny.ipynb")
    student.cells[1].outputs = executed.cells[1].outputs
    book.store_executed(tmp_path / "cache", lessons / "00_tiny.ipynb", student)
    built = book.build(tmp_path / "out", lessons=lessons, cache=tmp_path / "cache")
    assert built.executed == [] and built.lessons == ["00_tiny.ipynb"] and built.equations == 2
    assert not built.solutions and "student edition" in str(built)
    out = tmp_path / "out"
    page = (out / "lessons" / "00_tiny.html").read_text()
    assert page.count("<math") == 2 and "$" not in page
    assert 'href="../notebooks/00_tiny.ipynb"' in page
    assert "../source/iwae_np.bounds.html#L-" in page  # the function it uses, at its line
    # the student edition: the solution and the hidden test are on no page and in no download
    assert "raise NotImplementedError()" in _text_of(page)
    for path in out.rglob("*"):
        if path.suffix in (".html", ".ipynb", ".js"):
            text = path.read_text()
            assert "the tiny solution" not in text and "double(2)" not in text, path
    assert _sources(out / "notebooks" / "00_tiny.ipynb") == _sources(student)
    assert "student edition" in (out / "index.html").read_text()
    assert len(list((out / "lessons" / "00_tiny_files").glob("*.png"))) == 1
    readme = (out / "map.html").read_text()
    assert 'href="lessons/00_tiny.html"' in readme and 'title="other.md (not part' in readme
    # a book built before may be rebuilt in place; a folder holding anything else is refused
    assert book.check_out(out) == out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(ValueError, match="^out: expected an empty folder or a book built"):
        book.build(tmp_path / "mine", lessons=lessons, cache=tmp_path / "cache")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    # the instructor edition shows the lesson as stored, and offers it for download as it is
    book.store_executed(tmp_path / "cache", lessons / "00_tiny.ipynb", executed, solutions=True)
    built = book.build(tmp_path / "out", lessons=lessons, cache=tmp_path / "cache", solutions=True)
    assert built.executed == [] and built.solutions
    page = _text_of((out / "lessons" / "00_tiny.html").read_text())
    assert "the tiny solution" in page and "double(2) == 4" in page
    assert (out / "notebooks" / "00_tiny.ipynb").read_bytes() == (
        lessons / "00_tiny.ipynb"
    ).read_bytes()
    assert "instructor edition" in (out / "index.html").read_text()


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "iwae_np", "book", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_bad_arguments_are_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "00_list.ipynb").write_text("[]")
    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    new = str(tmp_path / "new")
    cases = [
        ("--out", str(tmp_path / "file")),
        ("--out", str(tmp_path / "full")),
        ("--out", new, "--lessons", str(tmp_path / "empty")),
        ("--out", new, "--lessons", str(tmp_path / "missing")),
        ("--out", new, "--lessons", str(tmp_path / "bad")),  # valid JSON, not a notebook
        ("--out", new, "--lessons", str(lessons), "--timeout", "0"),
        ("--out", new, "--lessons", str(lessons), "--cache", str(tmp_path / "new" / "cache")),
        ("--out", new, "--lessons", str(lessons), "--cache", str(lessons)),
    ]
    for args in cases:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert not (tmp_path / "new").exists(), args  # nothing made before the check
    assert (tmp_path / "full" / "notes.txt").exists()


@pytest.mark.slow
def test_cli_a_failing_lesson_is_one_line_exit_1(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    (tmp_path / "lessons").mkdir()
    notebook = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("assert x == 2")])
    (tmp_path / "lessons" / "00_broken.ipynb").write_text(nbformat.writes(notebook))
    result = _cli(
        "--out", str(tmp_path / "out"), "--lessons", str(tmp_path / "lessons"), "--no-cache"
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        "iwae_np book: error: lesson 00_broken.ipynb failed in cell 2, at `assert x == 2`: "
        "AssertionError"
    )


def _write_lesson(path, markdown, *code):
    """A lesson notebook at ``path``: one Markdown cell, then a code cell for each of ``code``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [new_markdown_cell(markdown), *(new_code_cell(source) for source in code)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(new_notebook(cells=cells)))
    return path


def _cache_students(lessons, cache):
    """Put the student copy of each lesson in ``lessons`` into ``cache`` as if executed (without
    outputs), so that a build runs no kernel. -> cache."""
    for lesson in sorted(lessons.glob("[0-9][0-9]_*.ipynb")):
        book.store_executed(cache, lesson, book.lesson_notebook(lesson))
    return cache


def _files(folder):
    """Every file under ``folder`` (hidden ones too) -> its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_a_rebuild_removes_only_what_the_builder_wrote(tmp_path):
    """A rebuild replaces the pages the previous build wrote (its marker lists them) and removes
    those it no longer writes, keeping everything else in the folder; inputs inside the book
    (lessons, cache), or a cache that is the lessons folder, are refused before anything runs."""
    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    cache = _cache_students(lessons, tmp_path / "cache")
    out = tmp_path / "out"
    book.build(out, lessons=lessons, cache=cache)
    mine = {".git/HEAD": b"ref", "CNAME": b"book.example", "MY_NOTES.txt": b"notes"}
    mine["lessons/my_sketch.txt"] = b"inside a folder the book writes into"
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (lessons / "00_tiny.ipynb").rename(lessons / "01_renamed.ipynb")
    _cache_students(lessons, cache)
    book.build(out, lessons=lessons, cache=cache)
    assert {name: (out / name).read_bytes() for name in mine} == mine
    assert (out / "lessons" / "01_renamed.html").is_file()
    assert not (out / "lessons" / "00_tiny.html").exists()  # the old lesson's page and figures
    assert not (out / "notebooks" / "00_tiny.ipynb").exists()
    # a book whose marker lists no files (built before markers did): pages replaced, rest kept
    old = tmp_path / "old"
    (old / "lessons").mkdir(parents=True)
    (old / MARKER).write_text("written by python -m iwae_np book; rebuilt in place\n")
    (old / "index.html").write_text("the old home page")
    (old / "thesis.tex").write_text("keep me")
    book.build(old, lessons=lessons, cache=cache)
    assert "the old home page" not in (old / "index.html").read_text()
    assert (old / "thesis.tex").read_text() == "keep me"
    assert "index.html" in json.loads((old / MARKER).read_text())["files"]
    # inputs inside the book: refused, and nothing deleted
    shutil.copytree(lessons, out / "my_lessons")
    for lessons_arg, cache_arg, message in [
        (out / "my_lessons", cache, "^lessons: expected a folder outside out"),
        (lessons, out / "cache", "^cache: expected a folder outside out"),
        (lessons, lessons, "^cache: expected a folder other than the lessons'"),
    ]:
        before = _files(out), _files(lessons)
        with pytest.raises(ValueError, match=message):
            book.build(out, lessons=lessons_arg, cache=cache_arg)
        assert (_files(out), _files(lessons)) == before


@pytest.mark.slow
def _a_tiny_book(tmp_path):
    """Build the tiny lessons' book into tmp_path/out; -> (out, its files and their bytes)."""
    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    out = tmp_path / "out"
    book.build(out, lessons=lessons, cache=_cache_students(lessons, tmp_path / "cache"))
    return out, _files(out)


def test_a_failed_rebuild_leaves_the_book_as_it_was(tmp_path):
    """The book is built beside ``out`` and moved in only when every page is written: a page that
    fails to render (an unknown LaTeX command) leaves the previous book whole, and no staging
    folder behind."""
    out, before = _a_tiny_book(tmp_path)
    broken = tmp_path / "broken"
    _write_lesson(broken / "00_tiny.ipynb", "# 00 · Broken\n\n$\\notacommand x$", "x = 1")
    _write_lesson(broken / "01_fine.ipynb", "# 01 · Fine", "x = 1")
    with pytest.raises(ValueError, match="notacommand"):
        book.build(out, lessons=broken, cache=_cache_students(broken, tmp_path / "cache"))
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "cache", "lessons", "out"]


MALFORMED = {  # valid JSON (or not), none of it a notebook nbformat 4 accepts
    "an object": "{}",
    "a list": "[]",
    "null": "null",
    "cells that are a number": '{"cells": 5, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
    "no metadata": '{"cells": [], "nbformat": 4, "nbformat_minor": 5}',
    "an unknown cell type": json.dumps(
        {
            "cells": [{"cell_type": "weird", "source": "x", "metadata": {}}],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ),
    "a cut-short file": '{"cells": [{"cell_',
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_lesson_is_named_before_anything_runs(tmp_path, content):
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "00_fine.ipynb").write_text(
        _write_lesson(tmp_path / "fine.ipynb", "# fine", "x = 1").read_text()
    )
    (tmp_path / "lessons" / "01_odd.ipynb").write_text(content)
    with pytest.raises(ValueError, match=r"^lesson 01_odd\.ipynb: expected a Jupyter notebook"):
        book.build(tmp_path / "out", lessons=tmp_path / "lessons", cache=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_damaged_cache_entry_is_run_again(tmp_path, monkeypatch, content):
    """A cache file that is not a notebook (a build killed while writing it, before writes were
    atomic; an edit by hand) counts as a miss: the lesson runs, and its copy replaces the file."""
    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    lesson = lessons / "00_tiny.ipynb"
    cached = book.store_executed(tmp_path / "cache", lesson, book.lesson_notebook(lesson))
    cached.write_text(content)
    runs = []
    monkeypatch.setattr(book, "_execute", lambda lesson, notebook, timeout: runs.append(lesson))
    notebook, executed = book.executed_lesson(lesson, cache=tmp_path / "cache")
    assert executed and runs == [lesson]
    assert book.read_notebook(cached).cells == notebook.cells


def test_a_cache_write_cut_short_keeps_the_previous_copy(tmp_path, monkeypatch):
    """Cache files are written to a temporary file and moved into place: a write that fails part
    way leaves the copy that was there, and no partial file."""
    import nbformat

    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    lesson = lessons / "00_tiny.ipynb"
    student = book.lesson_notebook(lesson)
    cached = book.store_executed(tmp_path / "cache", lesson, student)
    kept = cached.read_bytes()

    def write_half(notebook, path):
        Path(path).write_text(nbformat.writes(notebook)[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(nbformat, "write", write_half)
    with pytest.raises(KeyboardInterrupt):
        book.store_executed(tmp_path / "cache", lesson, student)
    assert cached.read_bytes() == kept
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]


def test_the_cache_key_follows_the_package_source(tmp_path, monkeypatch):
    """A changed message in the package's code (same version number) changes every lesson's key,
    so a rebuild runs the lessons again instead of showing the old text."""
    package = tmp_path / "iwae_np"
    (package / "app").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app" / "lessons.py").write_text('print("not solved yet")\n')
    monkeypatch.setattr(book, "_package_root", lambda: package)
    first = book.package_digest.__wrapped__()
    (package / "app" / "lessons.py").write_text('print("not solved yet, said better")\n')
    assert book.package_digest.__wrapped__() != first
    notebook = {"cells": [{"cell_type": "code", "source": "x = 1"}]}
    keys = set()
    for digest in ("one", "two"):
        monkeypatch.setattr(book, "package_digest", lambda digest=digest: digest)
        keys.add(book.cache_key(notebook))
    assert len(keys) == 2


@pytest.mark.slow
def test_a_symlinked_out_and_out_dot_are_built(tmp_path, monkeypatch):
    """``--out`` that is a symbolic link to a folder, or ``.``, takes the book (both failed, after
    every lesson ran, when the builder wiped the folder)."""
    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    cache = _cache_students(lessons, tmp_path / "cache")
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    book.build(tmp_path / "link", lessons=lessons, cache=cache)
    book.build(tmp_path / "link", lessons=lessons, cache=cache)  # and rebuilt
    assert (tmp_path / "link").is_symlink() and (tmp_path / "target" / "index.html").is_file()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    built = book.build(".", lessons=lessons, cache=cache)
    assert built.out == tmp_path / "here" and (tmp_path / "here" / "index.html").is_file()


@pytest.mark.slow
def test_images_stay_inside_the_lessons_folder(tmp_path):
    """A lesson's Markdown image is copied to the same place in the book; a path that leaves the
    lessons folder (``sub/../../../x.png`` was copied from above the lessons to above ``out``)
    is refused, naming the lesson and the path, and nothing outside the book is written."""
    lessons, out = tmp_path / "deep" / "lessons", tmp_path / "deep" / "out"
    (lessons / "img").mkdir(parents=True)
    (lessons / "img" / "dot.png").write_bytes(b"a figure")
    (tmp_path / "x.png").write_bytes(b"from outside the lessons")
    (tmp_path / "deep" / "x.png").write_bytes(b"a file of the user's beside out")
    _write_lesson(lessons / "00_pictures.ipynb", "# 00 · Pictures\n\n![dot](img/dot.png)", "1")
    book.build(out, lessons=lessons, cache=_cache_students(lessons, tmp_path / "cache"))
    assert (out / "lessons" / "img" / "dot.png").read_bytes() == b"a figure"
    for src in ("sub/../../../x.png", "../x.png", "/etc/hostname"):
        _write_lesson(lessons / "00_pictures.ipynb", f"# 00 · Pictures\n\n![up]({src})", "1")
        cache = _cache_students(lessons, tmp_path / "cache")
        before = _files(tmp_path)
        message = (
            f"lesson 00_pictures.ipynb: expected images inside the lessons folder, got {src!r}"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            book.build(out, lessons=lessons, cache=cache)
        assert _files(tmp_path) == before, src


def _search_index(out):
    text = (out / "_static" / "search_index.js").read_text()
    return json.loads(text[text.index("=") + 1 :].strip().rstrip(";"))


@pytest.mark.slow
def test_search_indexes_whole_sections_and_each_lesson_once(tmp_path):
    """A section's text is indexed to its end (it was cut at 4,000 characters), and a lesson's
    download bar and previous/next links are not indexed (each lesson came up twice)."""
    long = " ".join(f"word{i}" for i in range(1500)) + " subnormals"
    lessons = tmp_path / "lessons"
    _write_lesson(lessons / "00_first.ipynb", f"# 00 · First\n\n## Long\n\n{long}", "1")
    _write_lesson(lessons / "01_second.ipynb", "# 01 · Second\n\nShort.", "1")
    out = tmp_path / "out"
    book.build(out, lessons=lessons, cache=_cache_students(lessons, tmp_path / "cache"))
    entries = [e for e in _search_index(out) if e["u"].startswith("lessons/")]
    assert [e["u"] for e in entries if "subnormals" in e["x"]] == ["lessons/00_first.html#Long"]
    assert not [e for e in entries if "Download the notebook" in e["x"] or "Second →" in e["x"]]
    for stem in ("00_first", "01_second"):  # the title's section, and no untitled one
        assert not [e for e in entries if e["u"] == f"lessons/{stem}.html"]


def _timed_cli(*args, **kwargs):
    """Start the command line in its own process group; -> the Popen."""
    return subprocess.Popen(
        [sys.executable, "-m", "iwae_np", "book", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_cli_lesson_failures_are_one_line(tmp_path):
    """A lesson that ends its kernel, and one whose cell outlasts ``--timeout`` (a fraction of a
    second, rounded up), each fail in one line naming the cell, exit 1, no traceback."""
    folder = tmp_path / "lessons"
    _write_lesson(folder / "00_dies.ipynb", "# 00 · Dies", "x = 1", "import os\nos._exit(3)")
    result = _cli("--out", str(tmp_path / "out"), "--lessons", str(folder), "--no-cache")
    assert (result.returncode, result.stderr) == (
        1,
        "iwae_np book: error: lesson 00_dies.ipynb failed in cell 3: the kernel died (the cell "
        "ended the Python process, or it was killed)\n",
    )
    (folder / "00_dies.ipynb").unlink()
    _write_lesson(folder / "00_slow.ipynb", "# 00 · Slow", "x = 1", "while True:\n    pass")
    result = _cli(
        "--out", str(tmp_path / "out"), "--lessons", str(folder), "--no-cache", "--timeout", "0.5"
    )
    assert (result.returncode, result.stderr) == (
        1,
        "iwae_np book: error: lesson 00_slow.ipynb failed in cell 3: it timed out (a cell may "
        "run 1 s)\n",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_a_second_build_is_refused_and_ctrl_c_keeps_the_book(tmp_path):
    """While a build runs, a second build into the same folder is refused (one line, exit 2);
    Ctrl-C then stops the first (one line, exit 130) and leaves the previous book as it was."""
    out, before = _a_tiny_book(tmp_path)
    slow = tmp_path / "slow"
    _write_lesson(slow / "00_slow.ipynb", "# 00 · Slow", "import time\ntime.sleep(300)")
    first = _timed_cli("--out", str(out), "--lessons", str(slow), "--no-cache")
    try:
        for _ in range(1200):  # the first build holds out once its staging folder exists
            if list(tmp_path.glob(".out.building-*")) or first.poll() is not None:
                break
            time.sleep(0.1)
        second = _cli("--out", str(out), "--lessons", str(tmp_path / "lessons"), "--no-cache")
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("iwae_np book: error: out: expected a folder no other")
        assert len(second.stderr.strip().splitlines()) == 1
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert (first.returncode, stderr) == (
        130,
        "iwae_np book: interrupted; the book in --out is as it was\n",
    )
    assert _files(out) == before and not list(tmp_path.glob(".out.building-*"))


# ------------------------------------------------------------------ the whole book in a browser


@pytest.fixture(scope="module")
def built_book(tmp_path_factory, executed_lesson):
    """The book of the repository's lessons (the student edition), built from the student copies
    conftest executed for tests/test_lessons.py."""
    folder = tmp_path_factory.mktemp("book")
    keys = {}  # lesson -> the key of the version conftest ran
    for path in LESSONS:
        executed = executed_lesson(path, student=True)
        keys[path.name] = book.cache_key(executed)[:20]
        book.store_executed(folder / "cache", path, executed)
    built = book.build(folder / "book", lessons=ROOT / "lessons", cache=folder / "cache")
    # The builder runs only what conftest did not: a lesson edited on disk since (or added).
    for name in built.executed:
        (cached,) = (folder / "cache").glob(f"{Path(name).stem}-student-*.ipynb")
        assert cached.stem.rsplit("-", 1)[1] != keys.get(name), f"{name} ran a second time"
    return built


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, driver = _chromium()
    missing = [
        name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("IWAE_NP_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="iwae-np-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    session = webdriver.Chrome(options=options, service=Service(driver))
    session.set_page_load_timeout(60)
    yield session
    session.quit()
    shutil.rmtree(profile, ignore_errors=True)


# Runs in the page once it has loaded (and its fonts): what the test asserts about it.
PAGE_REPORT = """
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() => {
  const maths = [...document.querySelectorAll("math")];
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest("pre, code, math, script, style, .output_area")) continue;
    const m = node.textContent.match(/\\$\\$|\\$[^$\\s][^$]*\\$|\\\\\\(|\\\\\\[/);
    if (m) raw.push(node.textContent.slice(Math.max(0, m.index - 30), m.index + 50));
  }
  done({
    maths: maths.length,
    laidOut: maths.filter(m => {
      const box = m.getBoundingClientRect(), display = getComputedStyle(m).display;
      return m instanceof MathMLElement && box.width > 0 && box.height > 0
        && display.includes("math");
    }).length,
    merror: document.querySelectorAll("merror").length,
    mathFont: [...document.fonts].some(f => f.family.includes("STIX Two Math")
      && f.status === "loaded"),
    raw: raw,
    images: [...document.images].map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    downloads: [...document.querySelectorAll("a.download")].map(a => a.href),
    sources: document.querySelectorAll(".uses a.source").length,
  });
});
"""


def _drain_requests(browser):
    """The URLs the browser requested since the last call (the DevTools performance log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


IDS = {}  # page path -> the ids of its elements


def _ids(path):
    if path not in IDS:
        text = path.read_text(encoding="utf-8")
        IDS[path] = {html.unescape(v) for v in re.findall(r'\sid="([^"]*)"', text)}
    return IDS[path]


def _check_every_page(built_book, browser):
    """Open every page; -> (counts, problems)."""
    out = built_book.out.resolve()
    base = out.as_uri() + "/"
    counts = dict(pages=0, images=0, equations=0, inside=0, outside=0)
    problems = []
    browser.get("about:blank")
    _drain_requests(browser)
    browser.get_log("browser")
    for page in built_book.pages:
        browser.get(base + page)
        report = browser.execute_async_script(PAGE_REPORT)
        counts["pages"] += 1
        for entry in browser.get_log("browser"):
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: console error: {entry['message']}")
        for url in _drain_requests(browser):
            if url.startswith("data:"):  # inline in the page (the empty favicon): no request
                continue
            if url.startswith(base):
                counts["inside"] += 1
            else:
                counts["outside"] += 1
                problems.append(f"{page}: request outside the folder: {url}")
        if report["laidOut"] != report["maths"] or report["merror"]:
            problems.append(f"{page}: {report['maths'] - report['laidOut']} equations not laid out")
        if report["maths"] and not report["mathFont"]:
            problems.append(f"{page}: the math font did not load")
        counts["equations"] += report["laidOut"]
        problems += [f"{page}: raw math left: {text!r}" for text in report["raw"]]
        for src, complete, width in report["images"]:
            if complete and width > 0:
                counts["images"] += 1
            else:
                problems.append(f"{page}: image not loaded: {src}")
        for href in report["links"]:
            problems += _link_problems(page, href, base)
        if page.startswith("lessons/"):
            problems += _lesson_links(page, report, base)
    return counts, problems


def _link_problems(page, href, base):
    """A link inside the folder must reach a file, and its #anchor an element of that page."""
    if not href.startswith(base):
        return [] if href.startswith(("http://", "https://", "mailto:")) else [f"{page}: {href}"]
    parts = urlsplit(href)
    target = Path(unquote(parts.path))
    if not target.is_file():
        return [f"{page}: link to a missing file {href}"]
    if parts.fragment and target.suffix == ".html":
        fragment = unquote(parts.fragment)
        if not ({fragment, parts.fragment} & _ids(target)):
            return [f"{page}: link to a missing anchor {href}"]
    return []


def _sources(notebook):
    """A notebook (a path or a node) -> its cells' sources."""
    import nbformat

    if isinstance(notebook, Path):
        notebook = nbformat.read(str(notebook), as_version=4)
    return [cell.source for cell in notebook.cells]


def _has_outputs(path):
    import nbformat

    return any(cell.get("outputs") for cell in nbformat.read(str(path), as_version=4).cells)


def _lesson_links(page, report, base):
    """A lesson page: its download link is its notebook, and it links to the source of the
    package's functions it uses."""
    lesson = ROOT / "lessons" / (Path(page).stem + ".ipynb")
    problems = []
    if len(report["downloads"]) != 1:
        return [f"{page}: expected one download link, got {report['downloads']}"]
    target = Path(unquote(urlsplit(report["downloads"][0]).path))
    if not (report["downloads"][0].startswith(base) and target.is_file()):
        problems.append(f"{page}: the download link does not resolve: {report['downloads'][0]}")
    elif lesson.stat().st_mtime <= target.stat().st_mtime and (
        _sources(target) != _sources(book.lesson_notebook(lesson))  # (unless edited since)
    ):
        problems.append(f"{page}: the download link is not the lesson's student copy")
    elif _has_outputs(target):
        problems.append(f"{page}: the downloaded notebook carries outputs")
    if report["sources"] == 0:
        problems.append(f"{page}: no link to the source of a function it uses")
    return problems


def _check_search(built_book, browser):
    """Type a word of a lesson's title into the search box of the home page: the results link
    to that lesson's page, and following the link opens it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out = built_book.out.resolve()
    lesson = LESSONS[-1]
    page = (out / "lessons" / f"{lesson.stem}.html").read_text(encoding="utf-8")
    title = re.search(f"<title>(.*) · {re.escape(html.escape(book.TITLE))}</title>", page)[1]
    word = max(re.findall(r"[A-Za-z]{4,}", html.unescape(title)), key=len)
    browser.get((out / "index.html").as_uri())
    box = browser.find_element(By.CSS_SELECTOR, ".book-search input[name=q]")
    box.send_keys(word, Keys.ENTER)
    WebDriverWait(browser, 20).until(
        lambda b: (
            "search.html" in b.current_url
            and b.find_elements(By.CSS_SELECTOR, "#search-results li a")
        )
    )
    links = browser.find_elements(By.CSS_SELECTOR, "#search-results li a")
    hits = [a for a in links if f"lessons/{lesson.stem}.html" in a.get_attribute("href")]
    assert hits, (word, [a.get_attribute("href") for a in links])
    assert word.lower() in browser.find_element(By.ID, "search-status").text.lower()
    hits[0].click()
    WebDriverWait(browser, 20).until(lambda b: f"lessons/{lesson.stem}.html" in b.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text.strip()


def _unwrap(obj):
    """The function under decorators: functools.wraps' __wrapped__, autograd primitive's .fun."""
    while True:
        inner = getattr(obj, "__wrapped__", None)
        fun = getattr(obj, "fun", None)
        if inner is None and inspect.isfunction(fun) and fun.__name__ == obj.__name__:
            inner = fun
        if inner is None:
            return obj
        obj = inner


def _public_functions():
    """Every public function and class, module by module. Public means: listed in the module's
    ``__all__`` if it has one (then every such name that is a function or class, defined there
    or re-exported); otherwise bound to a name without a leading underscore and defined in that
    module itself (after unwrapping decorators). Modules: iwae_np and everything under it except
    ``__main__``."""
    import iwae_np

    names = ["iwae_np"] + [
        info.name
        for info in pkgutil.walk_packages(iwae_np.__path__, "iwae_np.")
        if not info.name.endswith("__main__")
    ]
    expected = {}
    for name in names:
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            candidates = [(n, getattr(module, n)) for n in module.__all__]
        else:
            candidates = [
                (n, v)
                for n, v in vars(module).items()
                if not n.startswith("_") and getattr(_unwrap(v), "__module__", None) == name
            ]
        expected[name] = sorted(
            n for n, v in candidates if inspect.isclass(v) or inspect.isfunction(_unwrap(v))
        )
    return expected


def _check_api(built_book, browser):
    """-> the public functions (``_public_functions``) missing from their module's API page."""
    out = built_book.out.resolve()
    expected = _public_functions()
    assert sum(map(len, expected.values())) > 100
    missing = []
    for module, names in expected.items():
        browser.get((out / "api" / f"{module}.html").as_uri())
        found = browser.execute_script(
            "return arguments[0].filter(id => { const e = document.getElementById(id);"
            " return e && e.textContent.includes(id.split('.').pop()); });",
            [f"{module}.{name}" for name in names],
        )
        missing += sorted({f"{module}.{name}" for name in names} - set(found))
    return missing


@pytest.mark.slow
@pytest.mark.notebook
def test_the_book_in_a_real_browser(browser, built_book, record_property):
    """Every page, then search, then the API's completeness; one test, so that under
    pytest-xdist one worker builds the book and starts Chromium once."""
    counts, problems = _check_every_page(built_book, browser)
    summary = (
        f"book in Chromium: {counts['pages']} pages, {counts['images']} figures loaded, "
        f"{counts['equations']} equations rendered, {counts['inside']} requests inside the "
        f"folder, {counts['outside']} outside"
    )
    print(f"\n{summary}")
    record_property("book", summary)
    assert problems == [], "\n".join(problems[:40])
    assert counts["pages"] == len(built_book.pages) and counts["outside"] == 0
    assert counts["equations"] == built_book.equations > 0
    assert counts["images"] >= len(LESSONS) and counts["inside"] > counts["pages"]
    _check_search(built_book, browser)
    missing = _check_api(built_book, browser)
    assert missing == [], f"public functions missing from the API pages: {missing}"


@pytest.mark.slow
def test_a_tiny_book_reads_well_in_chromium(browser, tmp_path):
    """In Chromium: a long printed line wraps (it ran off the page, cut at about 100 characters),
    and so does the map's long command line; every \\big/\\Big delimiter is as tall as it says;
    the home page does not number the lessons a second time; the student edition's map starts
    with a note on the edition."""
    from nbformat.v4 import new_output

    lessons, _ = _tiny_lessons(tmp_path / "lessons")
    lesson = lessons / "00_tiny.ipynb"
    math = " ".join(f"$${latex}$$" for latex in BIG_DELIMITERS)
    _write_lesson(lesson, f"# 00 · A tiny lesson\n\n{math}", "print('not solved yet')")
    student = book.lesson_notebook(lesson)
    printed = "Exercise 1: not solved yet " + "and still going " * 20 + "THE END\n"
    student.cells[1].outputs = [new_output("stream", name="stdout", text=printed)]
    book.store_executed(tmp_path / "cache", lesson, student)
    command = "python3 -m venv .venv && . .venv/bin/activate && " * 4 + "jupyter lab lessons/"
    (lessons / "README.md").write_text(f"# Lessons\n\n```bash\n{command}\n```\n")
    built = book.build(tmp_path / "out", lessons=lessons, cache=tmp_path / "cache")
    base = built.out.resolve().as_uri()
    report = """const done = arguments[arguments.length - 1];
    document.fonts.ready.then(() => done({
      wide: [...document.querySelectorAll("main pre")].filter(p => p.scrollWidth > p.clientWidth)
        .map(p => p.textContent.slice(0, 60)),
      short: [...document.querySelectorAll("mo[minsize]")].filter(mo => {
        const em = parseFloat(getComputedStyle(mo).fontSize);
        const asked = parseFloat(mo.getAttribute("minsize")) * em;
        return mo.getBoundingClientRect().height < 0.95 * asked;
      }).map(mo => mo.closest("math").getAttribute("alttext")),
      sized: document.querySelectorAll("mo[minsize]").length,
      lists: [...document.querySelectorAll("main a[href^='lessons/']")].map(a =>
        [a.closest("ol, ul").tagName, getComputedStyle(a.closest("li")).listStyleType]),
      first: document.querySelector("main > *").textContent,
    }));"""
    browser.get(f"{base}/lessons/00_tiny.html")
    page = browser.execute_async_script(report)
    assert page["wide"] == [] and page["short"] == [] and page["sized"] == 11, page
    browser.get(f"{base}/map.html")
    page = browser.execute_async_script(report)
    assert page["wide"] == [] and page["first"].startswith("In this student edition"), page
    browser.get(f"{base}/index.html")
    assert browser.execute_async_script(report)["lists"] == [["UL", "none"]]


def _solution_lines(lesson):
    """The lines a lesson's student copy must not show: those of its solution regions and hidden
    tests (at least 20 characters, and not also written elsewhere in the student copy)."""
    import nbformat

    from iwae_np.classroom.release import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION

    notebook = nbformat.read(str(lesson), as_version=4)
    shown = "\n".join(_sources(book.lesson_notebook(lesson)))
    lines, inside = set(), False
    for cell in notebook.cells:
        for line in cell.source.split("\n"):
            if BEGIN_SOLUTION in line or BEGIN_HIDDEN in line:
                inside = True
            elif END_SOLUTION in line or END_HIDDEN in line:
                inside = False
            elif inside and len(line.strip()) >= 20 and line.strip() not in shown:
                lines.add(line.strip())
    return lines


@pytest.mark.slow
@pytest.mark.notebook
def test_the_student_book_shows_no_solution(built_book):
    """The default edition is for students: no lesson page shows a line of a solution or of a
    hidden test, and every page of a lesson with exercises shows what an unsolved one prints."""
    assert not built_book.solutions
    checked = 0
    for lesson in LESSONS:
        page = _text_of((built_book.out / "lessons" / f"{lesson.stem}.html").read_text())
        hidden = _solution_lines(lesson)
        leaked = sorted(line for line in hidden if line in page)
        assert not leaked, f"{lesson.name} shows {leaked[:3]}"
        checked += len(hidden)
        if "### BEGIN SOLUTION" in lesson.read_text():
            assert "not solved yet" in page, lesson.name
    assert checked > 50  # the check looked at real solutions
