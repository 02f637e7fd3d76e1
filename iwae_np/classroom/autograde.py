"""Batch grading: every submission of every assignment, each in a fresh isolated worker, into one
CSV and per-student feedback.

    python -m iwae_np assignments autograde --source lessons/assignments \\
        --submitted submitted --out grades

The layout is nbgrader's: ``SOURCE/ASSIGNMENT/NOTEBOOK.ipynb`` (the instructor's notebooks, with
solutions and hidden tests) and ``SUBMITTED/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb``. Written, all at
the end and all outside the submissions:

- ``OUT/grades.csv``: one row per student, assignment and test: student, assignment, test,
  points, max_points, status (passed, partial, failed, forbidden, timeout, crashed, error,
  missing);
- ``OUT/feedback/STUDENT/ASSIGNMENT.txt`` and ``.html``: the student's feedback, with each check's
  message (hidden tests are named and hinted, never shown);
- ``OUT/log/STUDENT/ASSIGNMENT.txt``: the instructor's log (crashes, the submission's output).

A submission that hangs, crashes, kills its worker or does not parse loses the tests it could
not run, with the reason, and grading goes on with the next one. See ``judge`` for how a score
is computed and ``sandbox`` for what a submission can reach.
"""

import argparse
import concurrent.futures
import csv
import html
import io
import os
import sys
import time

from . import judge, notebooks, sandbox
from .grade import check_isolation

COLUMNS = ("student", "assignment", "test", "points", "max_points", "status")


def positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def folders(path):
    """The visible subfolders of ``path``, sorted (not following symbolic links)."""
    return sorted(
        name
        for name in os.listdir(path)
        if not name.startswith(".")
        and os.path.isdir(os.path.join(path, name))
        and not os.path.islink(os.path.join(path, name))
    )


def assignments_in(source):
    """{assignment: [notebook paths]} for every folder of ``source`` that holds notebooks."""
    found = {}
    for name in folders(source):
        books = sorted(
            os.path.join(source, name, f)
            for f in os.listdir(os.path.join(source, name))
            if f.endswith(".ipynb") and not f.startswith(".")
        )
        if books:
            found[name] = books
    return found


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def check_folders(source, submitted, out):
    """The three folders, checked: source and submitted exist, and out is apart from both (it is
    created if missing); ValueError naming the one that is wrong."""
    for name, value in (("source", source), ("submitted", submitted), ("out", out)):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise ValueError(f"{name}: expected a folder path, got {value!r}")
    source, submitted, out = os.fspath(source), os.fspath(submitted), os.fspath(out)
    for name, value in (("source", source), ("submitted", submitted)):
        if not os.path.isdir(value):
            raise ValueError(f"{name}: expected an existing folder, got {value!r}")
    for name, value in (("source", source), ("submitted", submitted)):
        if inside(out, value) or inside(value, out):
            raise ValueError(
                f"out: expected a folder apart from the {name} folder {value!r} (grades and "
                f"feedback never go next to the notebooks), got {out!r}"
            )
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out: expected a folder, got the file {out!r}")
    return source, submitted, out


def find_submission(submitted, student, assignment, notebook, count):
    """The path of a student's notebook, or (None, why). A file named otherwise is taken when it
    is the only notebook and the assignment has one; symbolic links are refused (one could point
    at the solutions)."""
    folder = os.path.join(submitted, student, assignment)
    if not os.path.isdir(folder):
        return None, "not submitted"
    if os.path.islink(folder) or os.path.islink(os.path.join(submitted, student)):
        return None, "the submission folder is a symbolic link"
    path = os.path.join(folder, os.path.basename(notebook))
    if not os.path.lexists(path):
        books = [f for f in os.listdir(folder) if f.endswith(".ipynb") and not f.startswith(".")]
        if count == 1 and len(books) == 1:
            path = os.path.join(folder, books[0])
        else:
            return None, f"{os.path.basename(notebook)} not submitted"
    if os.path.islink(path) or not inside(path, submitted) or not os.path.isfile(path):
        return None, "the submitted notebook is a symbolic link or not a file"
    return path, None


def autograde(
    source,
    submitted,
    out,
    cell_timeout=120.0,
    notebook_timeout=900.0,
    memory_mb=4096,
    jobs=None,
    allow_unisolated=False,
    progress=None,
):
    """Grade every submission under ``submitted`` against the assignments under ``source``;
    write grades.csv, feedback and logs under ``out``. -> the CSV rows, as dicts.

    cell_timeout: seconds for one cell (an answer cell, or the calls of one test cell);
    notebook_timeout: seconds for one notebook, restarts included; memory_mb: each worker's
    memory; jobs: notebooks graded at once (default: up to 2, one per core); allow_unisolated:
    grade even without Landlock (then a submission can read files the grader's user can read);
    progress: a function called with one line of text per graded notebook."""
    source, submitted, out = check_folders(source, submitted, out)
    cell_timeout = positive("cell_timeout", cell_timeout)
    notebook_timeout = positive("notebook_timeout", notebook_timeout)
    memory_mb = int(positive("memory_mb", memory_mb))
    if jobs is None:
        jobs = max(1, min(2, os.cpu_count() or 1))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an integer >= 1, got {jobs!r}")
    abi = check_isolation(
        allow_unisolated, ("source", source), ("submitted", submitted), ("out", out)
    )
    assignments = assignments_in(source)
    if not assignments:
        raise ValueError(f"source: expected assignment folders with notebooks, got {source!r}")
    plans = {path: notebooks.load_source(path) for books in assignments.values() for path in books}
    limits = judge.Limits(cell_timeout, notebook_timeout, memory_mb, 64, abi)
    tasks = [
        (student, assignment, book, len(books))
        for student in folders(submitted)
        for assignment, books in assignments.items()
        for book in books
    ]
    # the longest notebooks (by the source's code) first, so that one does not finish alone last
    size = {book: sum(len(c.code) for c in plan.cells) for book, plan in plans.items()}
    order = sorted(tasks, key=lambda task: -size[task[2]])
    results = {}
    with sandbox.Reaper() as reaper:

        def run(task):
            student, assignment, book, count = task
            began = time.monotonic()
            grade = grade_one(plans[book], submitted, task, limits, reaper)
            if progress is not None:
                earned, total = grade.score
                progress(
                    f"{student} {assignment}: {earned:g}/{total:g} "
                    f"({time.monotonic() - began:.1f} s)"
                )
            return grade

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for task, grade in zip(order, pool.map(run, order), strict=True):
                results[task] = grade
    return write_outputs(out, tasks, results, assignments, abi)


def grade_one(plan, submitted, task, limits, reaper):
    """The NotebookGrade of one task; a missing or unreadable notebook, or a failure of the
    grader itself, gives every test 0 with the reason (the batch goes on)."""
    student, assignment, book, count = task
    path, why = find_submission(submitted, student, assignment, book, count)

    def all_tests(status, message):
        grade = judge.NotebookGrade(plan.name, notes=[message])
        grade.tests = [
            judge.TestGrade(plan.name, t.grade_id, 0.0, t.points, status, message)
            for t in plan.tests
        ]
        return grade

    if path is None:
        return all_tests("missing", why)
    try:
        submission = notebooks.read_submission(plan, path)
    except ValueError as error:
        return all_tests("error", str(error))
    try:
        return judge.grade_notebook(plan, submission, limits, reaper)
    except Exception as error:  # a bug of the grader: this notebook only, never the batch
        grade = all_tests("error", f"the grader failed on this notebook: {error!r}")
        grade.log.append(repr(error))
        return grade


def write_outputs(out, tasks, results, assignments, abi):
    """grades.csv, feedback and logs, written after every worker has ended."""
    os.makedirs(out, exist_ok=True)
    rows = []
    by_student = {}
    for task in tasks:
        student, assignment, book, count = task
        grade = results[task]
        by_student.setdefault((student, assignment), []).append(grade)
        for test in grade.tests:
            name = test.test if count == 1 else f"{grade.notebook}/{test.test}"
            rows.append(
                {
                    "student": student,
                    "assignment": assignment,
                    "test": name,
                    "points": round(test.points, 6),
                    "max_points": test.max_points,
                    "status": test.status,
                }
            )
    with open(os.path.join(out, "grades.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for (student, assignment), grades in by_student.items():
        for kind in ("feedback", "log"):
            os.makedirs(os.path.join(out, kind, student), exist_ok=True)
        text = feedback_text(student, assignment, grades)
        stem = os.path.join(out, "feedback", student, assignment)
        with open(stem + ".txt", "w") as f:
            f.write(text)
        with open(stem + ".html", "w") as f:
            f.write(feedback_html(student, assignment, grades))
        with open(os.path.join(out, "log", student, assignment + ".txt"), "w") as f:
            f.write(instructor_log(student, assignment, grades, abi))
    return rows


def feedback_text(student, assignment, grades):
    """The student's feedback for one assignment, as plain text."""
    earned = sum(g.score[0] for g in grades)
    total = sum(g.score[1] for g in grades)
    lines = [f"{assignment}: {earned:g}/{total:g} points ({student})", ""]
    for grade in grades:
        for test in grade.tests:
            lines.append(f"{test.test}: {test.points:g}/{test.max_points:g} ({test.status})")
            lines += ["  " + line for line in test.message.splitlines() if line.strip()]
            lines.append("")
        if grade.notes:
            lines.append("Notes:")
            lines += [f"  - {note}" for note in grade.notes]
            lines.append("")
    return "\n".join(lines)


def feedback_html(student, assignment, grades):
    """The same feedback as a small self-contained HTML page."""
    earned = sum(g.score[0] for g in grades)
    total = sum(g.score[1] for g in grades)
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(assignment)}: feedback</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em}"
        "pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}</style></head><body>",
        f"<h1>{e(assignment)}: {earned:g}/{total:g} points</h1><p>{e(student)}</p>",
        "<table><tr><th>test</th><th>points</th><th>status</th></tr>",
    ]
    for grade in grades:
        for test in grade.tests:
            parts.append(
                f"<tr><td>{e(test.test)}</td><td>{test.points:g}/{test.max_points:g}</td>"
                f"<td>{e(test.status)}</td></tr>"
            )
    parts.append("</table>")
    for grade in grades:
        for test in grade.tests:
            parts.append(f"<h2>{e(test.test)}</h2><pre>{e(test.message)}</pre>")
        if grade.notes:
            parts.append("<h2>Notes</h2><ul>")
            parts += [f"<li>{e(note)}</li>" for note in grade.notes]
            parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def instructor_log(student, assignment, grades, abi):
    """What happened, for the instructor: isolation, timing, crashes, the submission's output."""
    isolation = f"Landlock ABI {abi}" if abi else "none (allow_unisolated)"
    lines = [f"{student} {assignment}", f"isolation: {isolation}"]
    for grade in grades:
        lines.append(
            f"{grade.notebook}: {grade.score[0]:g}/{grade.score[1]:g} in {grade.seconds:.1f} s"
        )
        lines += [f"  note: {note}" for note in grade.notes]
        lines += [f"  {entry}" for entry in grade.log]
    return "\n".join(lines) + "\n"


def add_arguments(parser):
    """The command line's options of ``assignments autograde`` (see ``run``)."""
    parser.add_argument(
        "--source", required=True, help="folder of the assignments (with solutions)"
    )
    parser.add_argument(
        "--submitted", required=True, help="folder of submissions: STUDENT/ASSIGNMENT/*.ipynb"
    )
    parser.add_argument("--out", required=True, help="folder for grades.csv, feedback/ and log/")
    parser.add_argument(
        "--cell-timeout", type=float, default=120.0, help="seconds per cell (default 120)"
    )
    parser.add_argument(
        "--notebook-timeout", type=float, default=900.0, help="seconds per notebook (default 900)"
    )
    parser.add_argument(
        "--memory-mb", type=int, default=4096, help="memory per worker in MiB (default 4096)"
    )
    parser.add_argument("--jobs", type=int, help="notebooks graded at once (default: up to 2)")
    parser.add_argument(
        "--allow-unisolated",
        action="store_true",
        help="grade even where the kernel has no Landlock (submissions could then read files)",
    )


def run(args):
    """Run ``autograde`` with parsed command-line arguments; print a summary. -> exit code 0."""
    rows = autograde(
        args.source,
        args.submitted,
        args.out,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb,
        jobs=args.jobs,
        allow_unisolated=args.allow_unisolated,
        progress=print,
    )
    print(summary(rows))
    print(f"grades written to {os.path.join(args.out, 'grades.csv')}")
    print(f"feedback written to {os.path.join(args.out, 'feedback')}")
    return 0


def summary(rows):
    """Totals per student and assignment, and how many tests ended in each status."""
    totals, statuses = {}, {}
    for row in rows:
        key = (row["student"], row["assignment"])
        earned, possible = totals.get(key, (0.0, 0.0))
        totals[key] = (earned + row["points"], possible + row["max_points"])
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    text = io.StringIO()
    for (student, assignment), (earned, possible) in sorted(totals.items()):
        text.write(f"{student:<20} {assignment:<28} {earned:g}/{possible:g}\n")
    text.write("tests: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    return text.getvalue()


def main(argv=None):
    """``python -m iwae_np.classroom.autograde``: the same as the ``assignments autograde``
    command. Bad arguments print one line and exit with code 2."""
    parser = argparse.ArgumentParser(prog="iwae_np assignments autograde", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"iwae_np assignments: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
