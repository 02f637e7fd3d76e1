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
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from iwae_np.app import book, book_math

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
    cases = [
        ("--out", str(tmp_path / "file")),
        ("--out", str(tmp_path / "full")),
        ("--out", str(tmp_path / "new"), "--lessons", str(tmp_path / "empty")),
        ("--out", str(tmp_path / "new"), "--lessons", str(tmp_path / "missing")),
        ("--out", str(tmp_path / "new"), "--timeout", "0"),
        ("--out", str(tmp_path / "new"), "--cache", str(tmp_path / "new" / "cache")),
    ]
    for args in cases:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
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
