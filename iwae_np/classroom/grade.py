"""Grading one submitted notebook against its source, in an isolated worker (``judge``).

``grade`` is the single-notebook form of ``autograde``: the tests, hidden ones included, their
points and the setup cells all come from the source notebook, which is therefore required; the
submission contributes only the code of its answer cells. The result is a ``checks.Report`` with
one CheckResult per test cell, which can be saved as JSON and text (``Report.save``).
"""

import os

from . import judge, notebooks, sandbox
from .checks import CheckResult, Report


def check_isolation(allow_unisolated, *paths):
    """The Landlock ABI to confine workers with. ValueError if there is none and unisolated
    grading was not allowed, or if a path the workers must not read lies where they can."""
    abi = sandbox.landlock_abi()
    if abi == 0 and not allow_unisolated:
        raise ValueError(
            "isolation: expected a Linux kernel with Landlock (5.13 or later) so that submissions "
            "cannot read the solutions, got none; pass allow_unisolated=True "
            "(--allow-unisolated) to grade anyway"
        )
    readable = sandbox.readable_paths()
    for name, path in paths:
        if path is not None and sandbox.reachable(path, readable):
            raise ValueError(
                f"{name}: expected a folder outside the Python installation and the iwae_np "
                f"package (workers can read those), got {path!r}"
            )
    return abi


def grade(
    path,
    source=None,
    timeout=120.0,
    notebook_timeout=900.0,
    memory_mb=4096,
    allow_unisolated=False,
):
    """Grade the submitted notebook ``path`` against the source notebook ``source``
    -> checks.Report, one CheckResult per test cell (its status in ``status``).

    timeout: seconds for one cell (an answer cell, or the calls of one test cell);
    notebook_timeout: seconds for the whole notebook; memory_mb: the worker's memory."""
    if source is None:
        raise ValueError(
            "source: expected the original assignment .ipynb (the tests, hidden ones included, "
            "come from it), got None"
        )
    for name, value in (("notebook", path), ("source", source)):
        if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
            raise ValueError(f"{name}: expected an existing .ipynb file, got {value!r}")
    for name, value in (("timeout", timeout), ("notebook_timeout", notebook_timeout)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
    abi = check_isolation(allow_unisolated, ("source", os.path.dirname(os.path.abspath(source))))
    plan = notebooks.load_source(os.fspath(source))
    limits = judge.Limits(timeout, notebook_timeout, int(memory_mb), 64, abi)
    report = Report(os.path.splitext(os.path.basename(os.fspath(path)))[0])
    try:
        submission = notebooks.read_submission(plan, os.fspath(path))
    except ValueError as error:
        for test in plan.tests:
            report.results.append(
                CheckResult(test.grade_id, False, 0.0, test.points, f"  {error}", 0, 1, "error")
            )
        return report
    with sandbox.Reaper() as reaper:
        result = judge.grade_notebook(plan, submission, limits, reaper)
    for test in result.tests:
        report.results.append(
            CheckResult(
                test.test,
                test.status == "passed",
                test.points,
                test.max_points,
                test.message,
                int(test.points > 0),
                1,
                test.status,
            )
        )
    return report
