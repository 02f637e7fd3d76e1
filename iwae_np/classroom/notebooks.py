"""Assignments without nbgrader: make student copies, and grade submitted notebooks.

The assignment notebooks follow nbgrader's conventions, so nbgrader (the ``classroom`` extra) can
release and grade them as they are. This module is the thin built-in path for instructors who do
not run nbgrader, and it gives the same student copies (a test compares the two):

- in every cell, a region ``### BEGIN SOLUTION`` … ``### END SOLUTION`` becomes
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, indented like the delimiter; a
  solution cell without such a region is replaced whole (``YOUR ANSWER HERE`` for markdown);
- lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` are removed;
- outputs and execution counts are cleared.

Grading first restores the original graded cells from the source notebook (hidden tests
included), then executes the submission top to bottom, keeps going past errors, and scores every
graded cell (nbgrader metadata ``grade: true`` with ``points``): full points if it ran without
error, none otherwise, with the error's message (a check's diagnosis) in the report.
"""

import copy
import os
import shutil

from .grading import CheckResult, Report

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise ValueError("assignments: releasing and grading need nbformat and nbclient "
                         "(pip install -e '.[lessons]')") from None
    return nbformat


def _flag(cell, name):
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get(name, False))


def clear_solutions(source, stub):
    """Replace each BEGIN/END SOLUTION region of ``source`` by ``stub``, indented like the
    delimiter. -> (new source, whether any region was found)."""
    out, inside, found = [], False, False
    for line in source.split("\n"):
        if line.strip() == BEGIN_SOLUTION:
            if inside:
                raise ValueError("notebook: expected END SOLUTION before the next BEGIN SOLUTION")
            inside = found = True
            indent = line[:line.find(BEGIN_SOLUTION)]
            out.extend(indent + stub_line for stub_line in stub.split("\n"))
        elif line.strip() == END_SOLUTION:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("notebook: expected END SOLUTION after BEGIN SOLUTION, got the end of the cell")
    return "\n".join(out), found


def clear_hidden_tests(source):
    """Remove the lines from BEGIN HIDDEN TESTS to END HIDDEN TESTS, both included."""
    out, inside = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            inside = True
        elif END_HIDDEN in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def student_version(notebook):
    """A student copy of an nbformat notebook (the original is not changed)."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        cell.source, found = clear_solutions(cell.source, stub)
        if _flag(cell, "solution") and not found:
            cell.source = stub
        cell.source = clear_hidden_tests(cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def release(source, out):
    """Write a student copy of every notebook under the folder ``source`` to the same place
    under ``out``; other files (data, images) are copied as they are. -> list of written paths."""
    nbformat = _nbformat()
    if not os.path.isdir(source):
        raise ValueError(f"source: expected a folder of assignment notebooks, got {source!r}")
    written = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        target_folder = os.path.join(out, os.path.relpath(folder, source))
        os.makedirs(target_folder, exist_ok=True)
        for name in sorted(files):
            path, target = os.path.join(folder, name), os.path.join(target_folder, name)
            if name.endswith(".ipynb"):
                nbformat.write(student_version(nbformat.read(path, as_version=4)), target)
                written.append(target)
            elif not name.endswith(".pyc"):
                shutil.copy2(path, target)
    return written


def restore_graded_cells(submission, source):
    """Overwrite every graded cell of ``submission`` with the source's cell of the same grade_id,
    as nbgrader does: the hidden tests come back, and edits to the tests do not count.
    -> list of grade_ids missing from the submission."""
    originals = {c.metadata["nbgrader"]["grade_id"]: c for c in source.cells if _flag(c, "grade")}
    seen = set()
    for cell in submission.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in originals:
            cell.source = originals[grade_id].source
            cell.metadata["nbgrader"] = copy.deepcopy(originals[grade_id].metadata["nbgrader"])
            seen.add(grade_id)
    return [grade_id for grade_id in originals if grade_id not in seen]


def grade(path, source=None, timeout=600):
    """Execute a submitted notebook and score its graded cells. -> grading.Report.

    source: the original assignment notebook (with hidden tests). Its graded cells replace the
    submission's before running; a graded cell deleted from the submission scores 0."""
    nbformat = _nbformat()
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
        points_of = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
                     for c in original.cells if _flag(c, "grade")}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    client.execute()
    report = Report(os.path.splitext(os.path.basename(path))[0])
    for grade_id in missing:
        report.add(CheckResult(grade_id, False, 0.0, points_of[grade_id],
                               "  this graded cell is missing from the submission", 0, 1))
    for cell in notebook.cells:
        if cell.cell_type != "code" or not _flag(cell, "grade"):
            continue
        meta = cell.metadata["nbgrader"]
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        points = float(meta.get("points", 0))
        if errors:
            message = f"  {errors[0]['ename']}: {errors[0]['evalue']}"
            report.add(CheckResult(meta["grade_id"], False, 0.0, points, message, 0, 1))
        else:
            report.add(CheckResult(meta["grade_id"], True, points, points, "  ran without error", 1, 1))
    return report
