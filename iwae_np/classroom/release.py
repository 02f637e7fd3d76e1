"""Student copies of the assignments without nbgrader.

The assignment notebooks follow nbgrader's conventions, so nbgrader (the ``classroom`` extra) can
release and grade them as they are. This module is the thin built-in release for instructors who
do not run nbgrader, and it gives the same student copies (a test compares the two):

- in every cell, a region ``### BEGIN SOLUTION`` … ``### END SOLUTION`` becomes
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, indented like the delimiter; a
  solution cell without such a region is replaced whole (``YOUR ANSWER HERE`` for markdown);
- lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` are removed;
- outputs and execution counts are cleared.

Only the assignment folders are released: files at the top of the source folder (the
instructor's guide, README.md) stay behind, and a written notebook that still holds a solution
or hidden-test marker stops the release.
"""

import copy
import os
import shutil

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def load_nbformat():
    """The nbformat module, or ValueError naming the extra to install."""
    try:
        import nbformat
    except ImportError:
        raise ValueError(
            "assignments: releasing and grading need nbformat and nbclient "
            "(pip install -e '.[lessons]')"
        ) from None
    return nbformat


def nbgrader_flag(cell, name):
    """The cell's nbgrader metadata flag ``name`` (solution, grade, locked, …); False if absent."""
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
            indent = line[: line.find(BEGIN_SOLUTION)]
            out.extend(indent + stub_line for stub_line in stub.split("\n"))
        elif line.strip() == END_SOLUTION:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(
            "notebook: expected END SOLUTION after BEGIN SOLUTION, got the end of the cell"
        )
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
        if nbgrader_flag(cell, "solution") and not found:
            cell.source = stub
        cell.source = clear_hidden_tests(cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def checked_student_version(notebook, path):
    """``student_version(notebook)``, refused (ValueError) if a solution or hidden-test marker is
    left in it, i.e. a region in the notebook read from ``path`` is not delimited."""
    copy = student_version(notebook)
    text = "\n".join(cell.source for cell in copy.cells)
    if BEGIN_HIDDEN in text or BEGIN_SOLUTION in text or END_HIDDEN in text:
        raise ValueError(
            f"source: expected every solution and hidden test delimited, got a stray marker "
            f"in {path}"
        )
    return copy


def write_student_copy(nbformat, path, target):
    """Write the student copy of the notebook at ``path`` to ``target`` (see
    ``checked_student_version``). -> target."""
    nbformat.write(checked_student_version(nbformat.read(path, as_version=4), path), target)
    return target


def release(source, out):
    """Write a student copy of every notebook in the assignment folders under ``source`` to the
    same place under ``out``; other files of those folders (data, images) are copied as they are,
    and files at the top of ``source`` (the instructor's guide) are not. -> the written paths."""
    nbformat = load_nbformat()
    if not os.path.isdir(source):
        raise ValueError(f"source: expected a folder of assignment notebooks, got {source!r}")
    source_real, out_real = os.path.realpath(source), os.path.realpath(out)
    inside = out_real == source_real or out_real.startswith(source_real + os.sep)
    if inside or source_real.startswith(out_real + os.sep):  # either way, copies could land on it
        raise ValueError(
            f"out: expected a folder apart from the source {source!r} (student copies "
            f"would overwrite the instructor's notebooks), got {out!r}"
        )
    written = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        if os.path.samefile(folder, source):
            continue  # the guide and other instructor files at the top stay behind
        target_folder = os.path.join(out, os.path.relpath(folder, source))
        os.makedirs(target_folder, exist_ok=True)
        for name in sorted(files):
            path, target = os.path.join(folder, name), os.path.join(target_folder, name)
            if name.endswith(".ipynb"):
                written.append(write_student_copy(nbformat, path, target))
            elif not name.endswith(".pyc") and not name.startswith("."):
                shutil.copy2(path, target)
    return written
