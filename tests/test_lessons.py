"""Every lesson notebook runs top to bottom without error (nbclient), as a student runs it, and is
stored without outputs. The notebook runs are marked ``notebook`` (left out of the fast loop);
conftest prints their run times at the end of the session."""

import json
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("*.ipynb"))


def test_there_are_lessons():
    assert len(LESSONS) >= 8


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_stored_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.notebook
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_top_to_bottom(path, executed_lesson):
    executed_lesson(path)  # raises CellExecutionError, with the failing cell, on any error


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_hidden_tests_stay_outside_the_exercise_block(path):
    """``with exercise(…)`` lets an unsolved exercise pass its visible checks quietly; the hidden
    tests must sit outside that block (unindented), or an unsolved exercise would score points."""
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        for line in source.splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                assert line.startswith("###"), f"{path.name}: indented hidden tests: {line!r}"
        if "with exercise(" in source and "BEGIN HIDDEN TESTS" in source:
            block_start = source.index("with exercise(")
            assert source.index("BEGIN HIDDEN TESTS") > block_start, path.name


def test_release_writes_a_student_copy_of_every_lesson(tmp_path):
    from iwae_np.app import lessons

    written = lessons.release(LESSONS[0].parent, tmp_path)
    assert sorted(Path(p).name for p in written) == sorted(
        p.name for p in LESSONS if p.name[:2].isdigit()
    )
    for path in written:
        text = Path(path).read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    with pytest.raises(ValueError, match="out: expected a folder other than"):
        lessons.release(LESSONS[0].parent, LESSONS[0].parent)
    with pytest.raises(ValueError, match="source: expected a folder of lessons"):
        lessons.release(tmp_path / "nothing", tmp_path / "out")


def test_exercise_and_or_package(capsys):
    from iwae_np.app.lessons import exercise, or_package

    def unsolved(a):
        raise NotImplementedError()

    with exercise("Exercise 1"):
        unsolved(1)
        raise AssertionError("not reached: the block stops at the NotImplementedError")
    assert "Exercise 1: not solved yet" in capsys.readouterr().out
    with pytest.raises(AssertionError):  # a wrong answer still stops the notebook
        with exercise("Exercise 2"):
            assert 1 == 2
    f = or_package(unsolved, abs)
    assert f(-3) == 3 and f(-4) == 4
    assert capsys.readouterr().out.count("not solved yet: using builtins.abs") == 1
    assert or_package(lambda a: a + 1, abs)(-3) == -2  # a solved exercise is used as it is


def test_exercise_and_or_package_say_only_what_is_true(capsys):
    """An unsolved exercise does not promise that experiments below use the package's version
    (in some lessons none uses the function); the fallback says so itself, naming a function
    the notebook defines as the notebook names it, not ``__main__.name``."""
    from iwae_np.app.lessons import exercise, or_package

    def unsolved(a):
        raise NotImplementedError()

    def elbo_by_the_package(a):
        return a

    # as a notebook cell defines it
    elbo_by_the_package.__module__ = "__main__"
    elbo_by_the_package.__qualname__ = "elbo_by_the_package"
    with exercise("Exercise 3"):
        unsolved(1)
    said = capsys.readouterr().out
    assert said.startswith("Exercise 3: not solved yet") and "below use" not in said
    assert "any experiment that uses it runs the package's version instead, and says so" in said
    assert or_package(unsolved, elbo_by_the_package)(5) == 5
    said = capsys.readouterr().out
    assert said == "unsolved is not solved yet: using elbo_by_the_package instead.\n"


@pytest.mark.notebook
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_student_copy_runs_to_the_end(path, executed_lesson):
    """A student copy (every exercise unsolved) runs top to bottom: the visible checks say the
    exercise is not solved yet, and the experiments fall back to the package's functions."""
    notebook = executed_lesson(path, student=True)
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    exercises = sum(
        1
        for cell in notebook.cells
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and cell.cell_type == "code"
    )
    assert exercises >= 1 and "not solved yet" in printed, path.name
