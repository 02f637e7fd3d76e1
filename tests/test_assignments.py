"""Assignments: the solutions earn every point, student copies hold no solution and fail every
exercise, the built-in release equals nbgrader's, and the documented instructor commands run."""

import csv
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iwae_np import classroom
from iwae_np.classroom import sandbox
from iwae_np.classroom.release import BEGIN_SOLUTION, END_SOLUTION


def _nbformat():
    """nbformat, imported on first use: its schema validator takes seconds to load, which every
    fast-loop run would pay at collection."""
    import nbformat

    return nbformat


ROOT = Path(__file__).resolve().parents[1]
# the nbgrader settings lessons/assignments/README.md gives
NBGRADER_CONFIG = """c = get_config()
c.CourseDirectory.course_id = "vi101"
c.Execute.timeout = 120
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
"""
SOURCE = ROOT / "lessons" / "assignments"
ASSIGNMENTS = sorted(p.name for p in SOURCE.iterdir() if p.is_dir())


def _notebook(name):
    return SOURCE / name / f"{name}.ipynb"


def _solution_lines(notebook):
    """Every non-blank line strictly inside a BEGIN/END SOLUTION region."""
    lines = []
    for cell in notebook.cells:
        inside = False
        for line in cell.source.split("\n"):
            if line.strip() == BEGIN_SOLUTION:
                inside = True
            elif line.strip() == END_SOLUTION:
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return lines


@pytest.mark.slow
def test_there_are_at_least_four_assignments_with_points():
    assert len(ASSIGNMENTS) >= 4
    for name in ASSIGNMENTS:
        cells = _nbformat().read(_notebook(name), as_version=4).cells
        graded = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert len(graded) >= 2 and all(c.metadata["nbgrader"]["points"] > 0 for c in graded)
        assert any("BEGIN HIDDEN TESTS" in c.source for c in graded), name


def test_each_notebook_calls_checks_of_its_own_module_that_exist():
    """Without running the notebooks: A1 calls a1's checks (and the generic ones in checks), and
    every check it calls exists there, so a renamed check fails fast here."""
    for name in ASSIGNMENTS:
        own = name.split("_")[0].lower()  # A1_log_densities -> a1
        cells = _nbformat().read(_notebook(name), as_version=4).cells
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        assert f"from iwae_np.classroom import {own}, checks" in code, name
        calls = re.findall(r"(?<![\w.])(a\d|checks)\.(\w+)\(", code)
        assert any(owner == own for owner, _ in calls), name
        for owner, attr in calls:
            assert owner in (own, "checks"), (name, owner, attr)
            module = importlib.import_module(f"iwae_np.classroom.{owner}")
            assert callable(getattr(module, attr, None)), (name, owner, attr)


@pytest.mark.notebook
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name.startswith("A4") else name
        for name in ASSIGNMENTS
    ],
)  # A4 trains an encoder: over 10 s
def test_solutions_run_in_a_kernel_with_clean_check_cells(name, tmp_path):
    """As nbgrader runs them, in the student's kernel: every check cell of the solution runs
    without error, writes nothing to stderr (nbgrader scores that 0) and ends in a statement (a
    value would be read as a partial score); the closing self-check lists every check passed."""
    from nbclient import NotebookClient

    notebook = _nbformat().read(_notebook(name), as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    for cell in notebook.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        kinds = [(o.output_type, o.get("name")) for o in cell.outputs]
        assert ("error", None) not in kinds and ("stream", "stderr") not in kinds, (
            cell.source,
            kinds,
        )
        assert all(kind != "execute_result" for kind, _ in kinds), cell.source
    summary = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert "Self-check" in summary and "FAILED" not in summary, summary
    assert list(tmp_path.iterdir()) == []  # the notebook writes no report next to itself


@pytest.mark.notebook
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_student_copies_have_no_solutions_and_every_exercise_fails(name, tmp_path):
    classroom.release(str(SOURCE), str(tmp_path))
    assert not (tmp_path / "README.md").exists()  # the instructor's guide stays behind
    path = tmp_path / name / f"{name}.ipynb"
    student = _nbformat().read(path, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "hidden_test" not in text and "hidden_lg" not in text
    assert text.count("raise NotImplementedError()") >= 2
    original = _nbformat().read(_notebook(name), as_version=4)
    for line in _solution_lines(original):
        if not any(c.isalnum() for c in line):  # a lone ")" closes calls outside solutions too
            continue
        assert line not in text.split("\n") and f"    {line}" not in text, line
    if sandbox.landlock_abi() == 0:
        return
    report = classroom.grade(str(path), source=str(_notebook(name)), timeout=60)
    assert report.score == (0, 10) and all(not r.passed for r in report.results), str(report)
    assert all(
        "NotImplementedError" in r.message or "not defined" in r.message for r in report.results
    )


def test_builtin_release_equals_nbgrader():
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    for name in ASSIGNMENTS:
        source = _nbformat().read(_notebook(name), as_version=4)
        ours = classroom.student_version(source)
        theirs = _nbformat().read(_notebook(name), as_version=4)
        for preprocessor in (
            preprocessors.ClearSolutions(),
            preprocessors.ClearHiddenTests(),
            preprocessors.ClearOutput(),
        ):
            theirs, _ = preprocessor.preprocess(theirs, {})
        assert [c.source for c in ours.cells] == [c.source for c in theirs.cells], name
        assert [c.get("outputs") for c in ours.cells] == [c.get("outputs") for c in theirs.cells]


def _run(command, cwd):
    # the venv's bin first on PATH, so `nbgrader` is the one installed with this Python
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        shell=True,
        env=dict(os.environ, PATH=path),
    )
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result


def _autograde_command():
    """The documented `python -m iwae_np assignments autograde`, or its module where the command
    line does not have it yet."""
    help_text = subprocess.run(
        [sys.executable, "-m", "iwae_np", "assignments", "--help"], capture_output=True, text=True
    ).stdout
    if "autograde" in help_text:
        return f"{sys.executable} -m iwae_np assignments autograde"
    return f"{sys.executable} -m iwae_np.classroom.autograde"


@pytest.mark.notebook
@pytest.mark.slow
def test_documented_builtin_instructor_commands(tmp_path):
    """The commands of lessons/assignments/README.md, 'The trusted grader'."""
    if sandbox.landlock_abi() == 0:
        pytest.skip("no Landlock on this kernel")
    python = sys.executable
    _run(f"{python} -m iwae_np assignments release {SOURCE} {tmp_path / 'release'}", tmp_path)
    assert not (tmp_path / "release" / "README.md").exists()
    name = "A3_iwae_bound"
    submitted = tmp_path / "submitted"
    shutil.copytree(SOURCE / name, submitted / "ada" / name)  # a perfect submission
    shutil.copytree(tmp_path / "release" / name, submitted / "bob" / name)  # untouched copy
    result = _run(
        f"{_autograde_command()} --source {SOURCE} --submitted {submitted} "
        f"--out {tmp_path / 'grades'} --cell-timeout 60",
        tmp_path,
    )
    assert "ada" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "grades" / "grades.csv")))
    ada = [r for r in rows if r["student"] == "ada" and r["assignment"] == name]
    assert sum(float(r["points"]) for r in ada) == 10
    bob = [r for r in rows if r["student"] == "bob" and r["assignment"] == name]
    assert sum(float(r["points"]) for r in bob) == 0
    assert (tmp_path / "grades" / "feedback" / "bob" / f"{name}.html").exists()
    assert not list(submitted.rglob("*.txt")) and not list(submitted.rglob("*.json"))
    original = _notebook(name)
    _run(
        f"{python} -m iwae_np assignments grade {submitted / 'ada' / name / (name + '.ipynb')} "
        f"--source {original} --report {tmp_path / 'ada_A3'}",
        tmp_path,
    )
    assert json.loads((tmp_path / "ada_A3.json").read_text())["score"] == 10


def test_grading_uses_the_original_tests(tmp_path):
    """A submission made from the student copy, with its tests replaced by `pass` and one check
    cell deleted, is graded on the original tests, hidden ones included."""
    if sandbox.landlock_abi() == 0:
        pytest.skip("no Landlock on this kernel")
    name = "A3_iwae_bound"
    classroom.release(str(SOURCE), str(tmp_path))
    path = tmp_path / name / f"{name}.ipynb"
    notebook = _nbformat().read(path, as_version=4)
    graded = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    graded[0].source = "pass  # tests removed by the student"
    notebook.cells.remove(graded[1])
    _nbformat().write(notebook, path)
    report = classroom.grade(str(path), source=str(_notebook(name)), timeout=60)
    by_id = {r.name: r for r in report.results}
    assert set(by_id) == {"a3_bound_tests", "a3_weights_tests", "a3_gradient_tests"}
    assert "NotImplementedError" in by_id["a3_bound_tests"].message
    assert "(hidden test)" in by_id["a3_bound_tests"].message
    assert "NotImplementedError" in by_id["a3_weights_tests"].message
    assert report.score == (0, 10)


@pytest.mark.notebook
@pytest.mark.slow
def test_documented_nbgrader_instructor_commands(tmp_path):
    """The commands of lessons/assignments/README.md, 'With nbgrader'."""
    pytest.importorskip("nbgrader")
    name = "A3_iwae_bound"
    shutil.copytree(SOURCE, tmp_path / "source")
    (tmp_path / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    _run(f"nbgrader generate_assignment {name} --force", tmp_path)
    released = tmp_path / "release" / name / f"{name}.ipynb"
    assert "raise NotImplementedError()" in released.read_text()
    submitted = tmp_path / "submitted" / "ada" / name
    submitted.mkdir(parents=True)
    shutil.copy(_notebook(name), submitted / f"{name}.ipynb")  # a perfect submission
    _run(f"nbgrader autograde {name} --force", tmp_path)
    _run("nbgrader export", tmp_path)
    grades = (tmp_path / "grades.csv").read_text()
    assert "ada" in grades and ",10.0," in grades, grades
    _run(f"nbgrader generate_feedback {name} --force", tmp_path)
    feedback = (tmp_path / "feedback" / "ada" / name / f"{name}.html").read_text()
    assert "(hidden test)" in feedback  # the hidden tests' verdicts, named
    assert "HIDDEN TESTS" not in feedback and "default_rng(13)" not in feedback  # not their code
