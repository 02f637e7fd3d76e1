"""Grading a submitted assignment notebook without nbgrader.

Grading first restores the original graded cells from the source notebook (hidden tests
included), then executes the submission top to bottom, keeps going past errors, and scores every
graded cell (nbgrader metadata ``grade: true`` with ``points``): full points if it ran without
error, none otherwise, with the error's message (a check's diagnosis) in the report.
"""

import copy
import os

from .checks import CheckResult, Report
from .release import load_nbformat, nbgrader_flag


def restore_graded_cells(submission, source):
    """Overwrite every graded cell of ``submission`` with the source's cell of the same grade_id,
    as nbgrader does: the hidden tests come back, and edits to the tests do not count.
    -> list of grade_ids missing from the submission."""
    originals = {
        c.metadata["nbgrader"]["grade_id"]: c for c in source.cells if nbgrader_flag(c, "grade")
    }
    seen = set()
    for cell in submission.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in originals:
            cell.source = originals[grade_id].source
            cell.metadata["nbgrader"] = copy.deepcopy(originals[grade_id].metadata["nbgrader"])
            seen.add(grade_id)
    return [grade_id for grade_id in originals if grade_id not in seen]


def grade(path, source=None, timeout=600):
    """Execute a submitted notebook and score its graded cells. -> checks.Report.

    source: the original assignment notebook (with hidden tests). Its graded cells replace the
    submission's before running; a graded cell deleted from the submission scores 0."""
    nbformat = load_nbformat()
    from nbclient import NotebookClient

    if not os.path.isfile(path):
        raise ValueError(f"notebook: expected an existing .ipynb file, got {path!r}")
    notebook = nbformat.read(path, as_version=4)
    missing = []
    if source is not None:
        if not os.path.isfile(source):
            raise ValueError(f"source: expected the original assignment .ipynb, got {source!r}")
        original = nbformat.read(source, as_version=4)
        missing = restore_graded_cells(notebook, original)
        points_of = {
            c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
            for c in original.cells
            if nbgrader_flag(c, "grade")
        }
    folder = os.path.dirname(os.path.abspath(path))  # the notebook runs where it lives
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": folder}},
    )
    client.execute()
    report = Report(os.path.splitext(os.path.basename(path))[0])
    for grade_id in missing:
        report.add(
            CheckResult(
                grade_id,
                False,
                0.0,
                points_of[grade_id],
                "  this graded cell is missing from the submission",
                0,
                1,
            )
        )
    for cell in notebook.cells:
        if cell.cell_type != "code" or not nbgrader_flag(cell, "grade"):
            continue
        meta = cell.metadata["nbgrader"]
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        points = float(meta.get("points", 0))
        if errors:
            message = f"  {errors[0]['ename']}: {errors[0]['evalue']}"
            report.add(CheckResult(meta["grade_id"], False, 0.0, points, message, 0, 1))
        else:
            report.add(
                CheckResult(meta["grade_id"], True, points, points, "  ran without error", 1, 1)
            )
    return report
