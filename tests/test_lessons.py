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
