"""Shared fixtures, and one reporting hook.

``linear_gaussian`` / ``make_linear_gaussian``: a linear-Gaussian model whose answers are known in
closed form,

    z ~ N(0, I_dz),   x = z W + b + σ e,   e ~ N(0, I_dx)
    p(x) = N(x; b, WᵀW + σ² I)
    p(z|x) = N(m, Σ),  Σ = (I + W Wᵀ / σ²)⁻¹,  m = (x − b) Wᵀ Σ / σ²

computed with numpy/scipy directly, independent of the package's densities.

``assert_normal_sample``: checks that draws have a known normal distribution's mean and spread.

Every test runs with one BLAS thread (``one_blas_thread``, autouse): bit-for-bit assertions need a
fixed thread count, since a matrix product split over two threads rounds differently, and the
trainer adapts its thread count to the machine's load (iwae_np/threads.py). Tests marked
``blas_threads`` run with the machine's own setting.
"""

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
from threadpoolctl import threadpool_limits

import iwae_np as iw


@pytest.fixture(autouse=True)
def one_blas_thread(request):
    if request.node.get_closest_marker("blas_threads"):
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


class LinearGaussian:
    def __init__(self, x_dim=3, z_dim=2, noise_std=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(z_dim, x_dim))
        self.b = rng.normal(size=x_dim)
        self.noise_std = noise_std
        self.model = iw.VAE(x_dim, z_dim, hidden=(), likelihood="gaussian")
        self.precision = np.eye(z_dim) + self.W @ self.W.T / noise_std**2
        self.cov = np.linalg.inv(self.precision)

    def sample_x(self, n, seed=1):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.W.shape[0]))
        return z @ self.W + self.b + self.noise_std * rng.normal(size=(n, self.W.shape[1]))

    def log_marginal(self, x):
        cov = self.W.T @ self.W + self.noise_std**2 * np.eye(self.W.shape[1])
        return st.multivariate_normal(self.b, cov).logpdf(x)

    def posterior_mean(self, x):
        return (x - self.b) @ self.W.T @ self.cov / self.noise_std**2

    def theta(self, log_std, mean_shift=0.0):
        """θ with the true decoder and a linear encoder giving the exact posterior mean (+ shift)
        and the constant log_std given (z_dim,)."""
        m, layout = self.model, self.model.layout
        theta = np.zeros(layout.size)
        enc_W = np.zeros((self.W.shape[1], 2 * self.W.shape[0]))
        enc_b = np.zeros(2 * self.W.shape[0])
        A = self.W.T @ self.cov / self.noise_std**2  # posterior mean = (x - b) A
        enc_W[:, : m.z_dim] = A
        enc_b[: m.z_dim] = -self.b @ A + mean_shift
        enc_b[m.z_dim :] = log_std
        theta[layout.slice("encoder.0.W")] = enc_W.ravel()
        theta[layout.slice("encoder.0.b")] = enc_b
        theta[layout.slice("decoder.0.W")] = self.W.ravel()
        theta[layout.slice("decoder.0.b")] = self.b
        theta[layout.slice("decoder.log_std")] = np.log(self.noise_std)
        return theta

    def exact_elbo(self, x, log_std, mean_shift=0.0):
        """log p(x) − KL(N(m + shift, diag s²) || N(m, Σ)), all in closed form."""
        s2 = np.exp(2 * np.asarray(log_std)) * np.ones(self.W.shape[0])
        d = self.W.shape[0]
        shift = np.broadcast_to(mean_shift, (d,))
        kl = 0.5 * (
            np.sum(np.diag(self.precision) * s2)
            + shift @ self.precision @ shift
            - d
            + np.linalg.slogdet(self.cov)[1]
            - np.sum(np.log(s2))
        )
        return self.log_marginal(x) - kl


@pytest.fixture
def make_linear_gaussian():
    """LinearGaussian(x_dim=3, z_dim=2, noise_std=0.5, seed=0): build one with other sizes."""
    return LinearGaussian


@pytest.fixture
def linear_gaussian():
    return LinearGaussian()


def _assert_normal_sample(draws, mean, std, z=5.0):
    """draws: (k, ...) independent draws of N(mean, std²), elementwise over the trailing axes.

    The sample mean's standard error is σ/√k and the sample standard deviation's is
    σ/√(2(k − 1)) (normal data); both must lie within ``z`` standard errors.
    """
    draws = np.asarray(draws, dtype=np.float64)
    k = draws.shape[0]
    mean, std = np.broadcast_to(mean, draws.shape[1:]), np.broadcast_to(std, draws.shape[1:])
    mean_error = np.abs(draws.mean(axis=0) - mean)
    std_error = np.abs(draws.std(axis=0, ddof=1) - std)
    assert np.all(mean_error < z * std / np.sqrt(k)), (draws.mean(axis=0), mean)
    assert np.all(std_error < z * std / np.sqrt(2 * (k - 1))), (draws.std(axis=0, ddof=1), std)


@pytest.fixture
def assert_normal_sample():
    """assert_normal_sample(draws (k, ...), mean, std, z=5): mean and spread of the draws
    within z standard errors of N(mean, std²)'s."""
    return _assert_normal_sample


# Each lesson runs once per session, whichever test asks first (tests/test_lessons.py,
# tests/test_lesson_claims*.py, tests/test_book.py). Under pytest-xdist the workers share one
# folder of executed notebooks, and a lock per lesson makes a second worker that asks for a lesson
# already running wait for it instead of running it again.
EXECUTED_LESSONS = {}  # (lesson path, student copy?) -> the executed notebook, in this process
_NEWLY_EXECUTED = []  # (lesson stem, seconds) run during the current test, reported with it


def _shared_folder(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' basetemps are siblings in the session's folder
    folder = base / "executed-lessons"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def executed_lesson(tmp_path_factory):
    """executed_lesson(path, student=False) -> the lesson (with ``student``, its student copy:
    every exercise unsolved, as ``python -m iwae_np lessons release`` writes it) run top to
    bottom with nbclient in the lessons' folder, as a student runs it (CellExecutionError,
    naming the cell, on any error); executed on first use only."""
    folder = _shared_folder(tmp_path_factory)

    def run(path, student=False):
        if (path, student) not in EXECUTED_LESSONS:
            import fcntl

            import nbformat  # here: its validator takes seconds to load, at every collection

            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            name = f"{path.stem}{'-student' if student else ''}"
            done = folder / f"{name}-{digest}.ipynb"
            with open(folder / f"{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                if not done.exists():
                    from nbclient import NotebookClient

                    from iwae_np.app.book import lesson_notebook

                    notebook = lesson_notebook(path, solutions=not student)
                    started = time.perf_counter()
                    NotebookClient(
                        notebook,
                        timeout=300,
                        kernel_name="python3",
                        resources={"metadata": {"path": str(path.parent)}},
                    ).execute()
                    _NEWLY_EXECUTED.append((name, time.perf_counter() - started))
                    nbformat.write(notebook, done.with_suffix(".part"))
                    os.replace(done.with_suffix(".part"), done)
            EXECUTED_LESSONS[path, student] = nbformat.read(done, as_version=4)
        return EXECUTED_LESSONS[path, student]

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the run time of each lesson executed during a test to that test's report (reports,
    unlike module state, reach the main process under pytest-xdist)."""
    outcome = yield
    if call.when == "call" and _NEWLY_EXECUTED:
        report = outcome.get_result()
        report.user_properties.extend(("lesson_seconds", entry) for entry in _NEWLY_EXECUTED)
        _NEWLY_EXECUTED.clear()


LESSONS_FOLDER = Path(__file__).resolve().parents[1] / "lessons"
_CLAIMS = {}  # lesson stem -> {claim name: value}


def _value(text):
    """A claim's value: True/False, a number, or a comma-separated list of numbers."""
    if text in ("True", "False"):
        return text == "True"
    if "," in text:
        return np.array([float(part) for part in text.split(",")])
    return float(text)


def printed_claims(notebook):
    """{name: value} from every printed line ``CLAIM name=value`` (a name printed twice is an
    error: each claim has one source)."""
    claims = {}
    for cell in notebook.cells:
        # a cell's printed text can arrive in several stream outputs, split anywhere
        text = "".join(
            output["text"]
            for output in cell.get("outputs", [])
            if output.get("output_type") == "stream" and output.get("name") == "stdout"
        )
        for line in text.splitlines():
            if line.startswith("CLAIM "):
                name, _, value = line[len("CLAIM ") :].partition("=")
                assert name not in claims, f"claim {name!r} printed twice"
                claims[name] = _value(value.strip())
    return claims


@pytest.fixture(scope="session")
def lesson_claims(executed_lesson):
    """lesson_claims(stem) -> the lesson's printed claims (the lesson runs once per session,
    shared by every test that asks, through ``executed_lesson``)."""

    def get(stem):
        if stem not in _CLAIMS:
            _CLAIMS[stem] = printed_claims(executed_lesson(LESSONS_FOLDER / f"{stem}.ipynb"))
        return _CLAIMS[stem]

    return get


def pytest_terminal_summary(terminalreporter):
    """Print each lesson's run time, its student copy's (NN_name-student) and each other notebook
    test's (CI's log keeps them; the 60 s budget per lesson is checked by eye, not by a timed
    test)."""
    reports = [
        r
        for outcome in ("passed", "failed")
        for r in terminalreporter.stats.get(outcome, [])
        if getattr(r, "when", None) == "call"
    ]
    lessons = sorted(v for r in reports for k, v in r.user_properties if k == "lesson_seconds")
    if lessons:
        terminalreporter.write_sep("-", "lesson run times (s), one execution each")
        for stem, seconds in lessons:
            terminalreporter.write_line(f"{stem:<70} {seconds:6.1f}")
    others = [
        r
        for r in reports
        if "notebook" in r.keywords
        and "runs_top_to_bottom" not in r.nodeid
        and "student_copy_runs_to_the_end" not in r.nodeid
        and "test_lesson_claims" not in r.nodeid
    ]
    if others:
        terminalreporter.write_sep("-", "other notebook tests' run times (s)")
        for report in sorted(others, key=lambda r: r.nodeid):
            terminalreporter.write_line(f"{report.nodeid:<70} {report.duration:6.1f}")
