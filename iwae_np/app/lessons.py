"""What the lessons need beyond the package's math: exercises that a student copy may leave
unsolved, and the student copies themselves.

A lesson ships with its exercises solved. Its student copy (``python -m iwae_np lessons release
--out DIR``) replaces each solution by ``raise NotImplementedError()``, and must still run top to
bottom, so that a student sees every experiment before solving anything:

- the visible checks of an exercise run inside ``with exercise("name"):``. While the exercise
  is unsolved, the block stops at the ``NotImplementedError``, says so and the notebook goes
  on. A wrong answer (a failed assert, any other error) still stops the notebook, as it should.
  Hidden tests stay outside the block, so an unsolved exercise still scores zero when graded.
- an experiment that uses the student's function calls ``or_package(student's, package's)``:
  the student's function while it works, the package's (tested equal to the solution) while it
  raises ``NotImplementedError``, said once.
"""

import contextlib
import glob
import os

from ..classroom.release import load_nbformat, write_student_copy


@contextlib.contextmanager
def exercise(name):
    """Run an exercise's visible checks; if the exercise is not solved yet (it raises
    ``NotImplementedError``), skip the rest of the checks, say so, and let the notebook go on."""
    try:
        yield
    except NotImplementedError:
        print(
            f"{name}: not solved yet (it raises NotImplementedError), so its checks were "
            "skipped; any experiment that uses it runs the package's version instead, and says "
            "so."
        )


def _name(function):
    """A function's name as a reader knows it: ``iwae_np.bounds.elbo`` for the package's, and
    just ``elbo_by_the_package`` for one the notebook defines (module ``__main__``)."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", repr(function))
    module = getattr(function, "__module__", None)
    return name if module in (None, "__main__") else f"{module}.{name}"


def or_package(student_function, package_function):
    """``student_function`` while it works; ``package_function`` from the first call on which
    ``student_function`` raises ``NotImplementedError`` (an unsolved exercise), said once.
    Both must take the same arguments."""
    state = {"fallback": False}

    def call(*args, **kwargs):
        if not state["fallback"]:
            try:
                return student_function(*args, **kwargs)
            except NotImplementedError:
                state["fallback"] = True
                print(
                    f"{student_function.__name__} is not solved yet: using "
                    f"{_name(package_function)} instead."
                )
        return package_function(*args, **kwargs)

    call.__name__ = getattr(student_function, "__name__", "exercise")
    call.__doc__ = getattr(student_function, "__doc__", None)
    return call


def release(source, out):
    """Write a student copy of every lesson ``source/NN_*.ipynb`` to ``out`` (solutions replaced
    by ``raise NotImplementedError()``, hidden tests removed, outputs cleared). -> written paths."""
    nbformat = load_nbformat()
    paths = sorted(glob.glob(os.path.join(glob.escape(str(source)), "[0-9][0-9]_*.ipynb")))
    if not paths:
        raise ValueError(f"source: expected a folder of lessons (NN_name.ipynb), got {source!r}")
    if os.path.realpath(out) == os.path.realpath(source):
        raise ValueError(
            f"out: expected a folder other than the lessons' own {source!r} (the copies would "
            f"overwrite the solved lessons), got {out!r}"
        )
    os.makedirs(out, exist_ok=True)
    return [
        write_student_copy(nbformat, path, os.path.join(out, os.path.basename(path)))
        for path in paths
    ]
