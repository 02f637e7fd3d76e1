"""Assignments in the classroom: the checks students call (``grading``), and releasing student
copies and grading submitted notebooks (``notebooks``)."""

from .notebooks import clear_hidden_tests, clear_solutions, grade, release, student_version

__all__ = ["clear_hidden_tests", "clear_solutions", "grade", "release", "student_version"]
