"""Assignments in the classroom: the check framework (``checks``), each assignment's checks
(``a1`` … ``a4``), releasing student copies (``release``) and grading submitted notebooks
(``grade``).

``release``, ``grade`` and ``student_version`` are re-exported here as functions, so
``classroom.release`` and ``classroom.grade`` name the functions, not their modules.
"""

from .grade import grade
from .release import clear_hidden_tests, clear_solutions, release, student_version

__all__ = ["clear_hidden_tests", "clear_solutions", "grade", "release", "student_version"]
