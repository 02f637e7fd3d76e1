"""Assignments in the classroom: the check framework (``checks``), each assignment's checks
(``a1`` … ``a4``), releasing student copies (``release``), and grading submissions in isolated
workers (``grade`` for one notebook, ``autograde`` for a folder of them; ``judge``, ``worker``,
``sandbox``, ``wire`` and ``notebooks`` are their parts).

``release``, ``grade``, ``autograde`` and ``student_version`` are re-exported here as functions,
so ``classroom.release`` and ``classroom.grade`` name the functions, not their modules.
"""

from .autograde import autograde
from .grade import grade
from .release import clear_hidden_tests, clear_solutions, release, student_version

__all__ = [
    "autograde",
    "clear_hidden_tests",
    "clear_solutions",
    "grade",
    "release",
    "student_version",
]
