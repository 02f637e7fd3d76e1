"""The trusted grader, attacked: one batch grades a folder that mixes correct, alternative, wrong,
cheating and crashing submissions, and every one gets exactly the points its real work earns.

The catalogue (``CATALOGUE``) is graded once, in one ``autograde`` run with two workers at a time
and short time limits, against the real source notebooks. Each entry is a student who submits one
assignment: the student copy with some answer cells filled in, and sometimes the notebook itself
tampered with. The tests then read grades.csv and the feedback.
"""

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from iwae_np import classroom
from iwae_np.classroom import sandbox

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "lessons" / "assignments"
A1, A2, A3, A4 = (
    "A1_log_densities",
    "A2_elbo_and_classic_vi",
    "A3_iwae_bound",
    "A4_amortized_inference",
)
MARKER = "iwae_np_bg_test"  # the process name a background-process cheat gives itself
LANDLOCK = sandbox.landlock_abi()

# ------------------------------------------------------------------ answers

NORMAL = """def normal_logpdf(x, mean, log_std):
    u = (x - mean) * np.exp(-log_std)
    return np.sum(-0.5 * np.log(2 * np.pi) - log_std - 0.5 * u * u, axis=-1)
"""
BERNOULLI = """def bernoulli_logpmf(x, logits):
    t = (2 * x - 1) * logits
    return np.sum(np.minimum(t, 0) - np.log1p(np.exp(-np.abs(t))), axis=-1)
"""
LOGSUMEXP = """def logsumexp(a, axis=0):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)
"""
A1_RIGHT = {"a1_normal": NORMAL, "a1_bernoulli": BERNOULLI, "a1_logsumexp": LOGSUMEXP}

# correct alternatives: float32 arithmetic, np.logaddexp, a Python loop over the slices
A1_ALTERNATIVE = {
    "a1_normal": """def normal_logpdf(x, mean, log_std):
    x, mean, log_std = (np.asarray(v, dtype=np.float32) for v in (x, mean, log_std))
    z = (x - mean) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - np.float32(0.5 * np.log(2 * np.pi))).sum(axis=-1)
""",
    "a1_bernoulli": """def bernoulli_logpmf(x, logits):
    return -np.sum(np.logaddexp(0.0, -(2 * x - 1) * logits), axis=-1)
""",
    "a1_logsumexp": """import math

def logsumexp(a, axis=0):
    moved = np.moveaxis(np.asarray(a, dtype=float), axis, -1)
    out = np.empty(moved.shape[:-1])
    for index in np.ndindex(out.shape):
        row = moved[index]
        top = max(row)
        if top == -math.inf:
            out[index] = -math.inf
            continue
        out[index] = top + math.log(sum(math.exp(v - top) for v in row))
    return out
""",
}

A1_WRONG = {  # dropped −log σ, a naive log(σ(t)), logsumexp that is NaN on an all −inf slice
    "a1_normal": """def normal_logpdf(x, mean, log_std):
    u = (x - mean) * np.exp(-log_std)
    return np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * u * u, axis=-1)
""",
    "a1_bernoulli": """def bernoulli_logpmf(x, logits):
    p = 1 / (1 + np.exp(-logits))
    return np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)
""",
    "a1_logsumexp": """def logsumexp(a, axis=0):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m, axis=axis)
""",
}

A1_BAD_RESULTS = {  # a missing return, a list, the reduced axis kept
    "a1_normal": """def normal_logpdf(x, mean, log_std):
    u = (x - mean) * np.exp(-log_std)
    result = np.sum(-0.5 * np.log(2 * np.pi) - log_std - 0.5 * u * u, axis=-1)
""",
    "a1_bernoulli": """def bernoulli_logpmf(x, logits):
    t = (2 * x - 1) * logits
    rows = np.minimum(t, 0) - np.log1p(np.exp(-np.abs(t)))
    return [list(r) for r in rows.reshape(-1, rows.shape[-1])]
""",
    "a1_logsumexp": LOGSUMEXP.replace("return np.squeeze(out, axis=axis)", "return out"),
}

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

CHEAT_MONKEYPATCH = """import importlib
checks_module = importlib.import_module("iwae_np.classroom" + ".checks")
checks_module.CheckResult.require = lambda self: None
checks_module.Report.require_passed = lambda self: None
checks_module.run_cases = lambda name, points, *a, **k: checks_module.CheckResult(
    name, True, points, points, "ok")
np.testing.assert_allclose = lambda *a, **k: None
""" + NORMAL.replace("u = (x - mean)", "raise NotImplementedError()\n    u = (x - mean)")

CHEAT_FRAMES = """import inspect, sys

def normal_logpdf(x, mean, log_std):
    frame = sys._getframe(1)
    while frame is not None:
        for key in ("expected", "reference"):
            if key in frame.f_locals:
                return frame.f_locals[key]
        frame = frame.f_back
    for info in inspect.stack():
        if "expected" in info.frame.f_locals:
            return info.frame.f_locals["expected"]
    return None
"""

CHEAT_CUSTOM_EXC = """get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)
import sys
sys.excepthook = lambda *args: None

def normal_logpdf(x, mean, log_std):
    raise NotImplementedError()
"""

CHEAT_SETUP = """import autograd
import numpy as np
import iwae_np as iw
from iwae_np.classroom import a1, checks

report = checks.Report("A1_log_densities")
ok = lambda *a, points=3, **k: checks.CheckResult("ok", True, points, points, "ok")
a1.check_normal_logpdf = a1.check_bernoulli_logpmf = a1.check_logsumexp = ok
checks.hidden_test = ok
report.require_passed = lambda: None
"""

CHEAT_READ_SOLUTION = """import glob, json, os
import iwae_np

found = []
root = os.path.dirname(os.path.dirname(os.path.abspath(iwae_np.__file__)))
for path in glob.glob(os.path.join(root, "lessons", "assignments", "*", "*.ipynb")):
    try:
        with open(path) as f:
            found.append(json.load(f))
    except OSError:
        pass
for notebook in found:
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]))
"""

CHEAT_BACKGROUND = (
    f"""import ctypes, os, time

def detach(out):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(15, b"{MARKER}", 0, 0, 0)
            time.sleep(2)
            for path in (os.path.join(out, "grades.csv"), os.path.join(out, "gradebook.db")):
                try:
                    with open(path, "w") as f:
                        f.write("ada,A1_log_densities,a1_normal_tests,100,3,passed\\n")
                except OSError:
                    pass
            time.sleep(120)
        os._exit(0)

detach(OUT)
"""
    + NORMAL
)

CHEAT_KILL_GRADER = (
    """import os, signal
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError:
    pass
"""
    + NORMAL
)

OBFUSCATED_REFERENCE = """import importlib

def normal_logpdf(x, mean, log_std):
    package = importlib.import_module("iwae" + "_np")
    return getattr(package, "normal_" + "logpdf")(x, mean, log_std)
"""

CRASH_EXIT = BERNOULLI.replace(
    "t = (2 * x - 1) * logits", "import os\n    os._exit(3)\n    t = (2 * x - 1) * logits"
)
HANG_IN_FUNCTION = BERNOULLI.replace("t = (2 * x - 1) * logits", "while True:\n        pass")
HANG_AT_TOP = "while True:\n    pass\n" + BERNOULLI
DEAD_KERNEL = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + BERNOULLI
MEMORY_HOG = BERNOULLI.replace(
    "t = (2 * x - 1) * logits", "hog = np.ones((1 << 40,))\n    t = (2 * x - 1) * logits"
)
NOISY = (
    """import sys, warnings
sys.stderr.write("debugging output on stderr\\n")
warnings.warn("a warning of the student's own")
print("x" * 30_000_000)
"""
    + NORMAL.replace("u = (x - mean)", "print('debug', file=sys.stderr)\n    u = (x - mean)")
    + "np.log(0.0)\n"
)

A3_RIGHT = {
    "a3_bound": """def iwae_bound(log_w):
    return iw.logsumexp(log_w, axis=0) - np.log(log_w.shape[0])
""",
    "a3_weights": """def normalized_weights(log_w):
    e = np.exp(log_w - np.max(log_w, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)
""",
    "a3_gradient": """def iwae_gradient(jacobian, log_w):
    return normalized_weights(log_w[:, None])[:, 0] @ jacobian
""",
}
A3_ALTERNATIVE = {  # scipy where it is allowed, and a Python loop over k
    "a3_bound": """import scipy.special

def iwae_bound(log_w):
    return scipy.special.logsumexp(log_w, axis=0) - np.log(len(log_w))
""",
    "a3_weights": """from scipy.special import softmax

def normalized_weights(log_w):
    return softmax(log_w, axis=0)
""",
    "a3_gradient": """def iwae_gradient(jacobian, log_w):
    top = max(log_w)
    weights = [np.exp(v - top) for v in log_w]
    total = sum(weights)
    gradient = np.zeros(jacobian.shape[1])
    for w, row in zip(weights, jacobian):
        gradient = gradient + (w / total) * row
    return gradient
""",
}
A3_CASCADE = {  # a wrong normalized_weights (axis 1) that the gradient uses: it costs once
    "a3_bound": A3_RIGHT["a3_bound"],
    "a3_weights": A3_RIGHT["a3_weights"].replace("axis=0", "axis=1"),
    "a3_gradient": A3_RIGHT["a3_gradient"],
}
A3_ELBO_GRADIENT = dict(  # the ELBO's gradient (weights 1/k) for the IWAE's
    A3_RIGHT, a3_gradient="def iwae_gradient(jacobian, log_w):\n    return jacobian.mean(axis=0)\n"
)
A3_REFERENCE = {  # the package's own functions, one line each
    "a3_bound": "def iwae_bound(log_w):\n    return iw.iwae_bound(log_w)\n",
    "a3_weights": (
        "def normalized_weights(log_w):\n    return iw.estimators.normalized_weights(log_w)\n"
    ),
    "a3_gradient": A3_ALTERNATIVE["a3_gradient"],
}

A2_RIGHT = {
    "a2_elbo": """def elbo_estimate(log_joint, x, mean, log_std, eps):
    z = mean + np.exp(log_std) * eps
    return np.mean(log_joint(x, z) - iw.normal_logpdf(z, mean, log_std), axis=0)
""",
    "a2_gradient": """def elbo_gradient(params, m=m, precision=precision):
    mu, s = params[:2], params[2:]
    return np.concatenate([-precision @ (mu - m), 1 - np.diag(precision) * np.exp(2 * s)])
""",
    "a2_fit": """def fit_diagonal(steps=2000, lr=0.05):
    params = np.zeros(4)
    for _ in range(steps):
        params = params + lr * elbo_gradient(params)
    return params
""",
}
A2_AUTOGRAD = dict(
    A2_RIGHT,
    a2_gradient="""def elbo_gradient(params, m=m, precision=precision):
    return autograd.grad(gaussian_elbo)(params, m, precision)
""",
)
A2_CLOSED_FORM = dict(
    A2_RIGHT,
    a2_fit="""def fit_diagonal(steps=2000, lr=0.05):
    return np.concatenate([m, -0.5 * np.log(np.diag(precision))])
""",
)
A2_DESCENT = dict(A2_RIGHT, a2_fit=A2_RIGHT["a2_fit"].replace("params + lr *", "params - lr *"))
A2_AUTOGRAD_INTERNALS = dict(
    A2_RIGHT,
    a2_gradient="""from autograd.core import VJPNode, backward_pass
from autograd.tracer import trace

def elbo_gradient(params, m=m, precision=precision):
    _, end = trace(VJPNode.new_root(), gaussian_elbo, np.asarray(params, float))
    return backward_pass(1.0, end)
""",
)
A2_WRONG_GRADIENT = dict(
    A2_RIGHT,
    a2_gradient=A2_RIGHT["a2_gradient"].replace("1 - np.diag", "np.diag"),
)

A1_FLOAT16_WRONG = {  # wrong answers (4 % off; max for logsumexp) cast to float16 for tolerance
    "a1_normal": NORMAL.replace("return np.sum(", "return (1.04 * np.sum(").replace(
        "axis=-1)", "axis=-1)).astype(np.float16)"
    ),
    "a1_bernoulli": BERNOULLI.replace("return np.sum(", "return (1.04 * np.sum(").replace(
        "axis=-1)", "axis=-1)).astype(np.float16)"
    ),
    "a1_logsumexp": """def logsumexp(a, axis=0):
    return np.max(a, axis=axis).astype(np.float16)
""",
}
CHEAT_DISABLE_TRIPWIRES = """import sys
sys.modules["iwae_np.classroom.worker"].set = lambda *a: frozenset()

def logsumexp(a, axis=0):
    return getattr(sys.modules["iwae_np.numerics"], "logsum" + "exp")(a, axis=axis)
"""
CHEAT_GRADER_ENVIRON = """import os

def peek():
    seen = [k for k in os.environ if k not in ("PATH", "HOME", "TMPDIR", "LANG", "MPLBACKEND",
            "MPLCONFIGDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PWD",
            "LC_CTYPE")]
    for pid in (os.getppid(), 1):
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    seen.append(f.read(1))
            except OSError:
                pass
    return seen


LEAKED = peek()
""" + NORMAL.replace("u = (x - mean)", "if LEAKED:\n        return 0\n    u = (x - mean)")
SYS_EXIT = LOGSUMEXP.replace("m = np.max(", "import sys\n    sys.exit(3)\n    m = np.max(")

A4_LOG_WEIGHTS = """def log_weights(model, theta, x, eps):
    mean, log_std = model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    logits = model.decode(theta, z)
    u = (z - mean) * np.exp(-log_std)
    log_q = np.sum(-0.5 * np.log(2 * np.pi) - log_std - 0.5 * u * u, axis=-1)
    return iw.bernoulli_logpmf(x, logits) + iw.std_normal_logpdf(z) - log_q
"""
A4_GAPS = """def train_encoder(lg, x_train):
    return iw.train.train(lg.model, lg.theta, x_train, objective="elbo", k=10, epochs=30,
                          batch_size=100, lr=0.1, update="encoder", progress=False).theta


def measure_gaps(lg, theta, x):
    encoder_elbo = iw.evaluate.expected_bound(lg.model, theta, x, "elbo", 1, replicates=200)
    fit = iw.vi.fit_local(lg.model, theta, x, k=10, steps=300, lr=0.05,
                          init=lg.model.encode(theta, x))
    local_elbo = iw.evaluate.expected_bound(lg.model, theta, x, "elbo", 1, replicates=200,
                                            lam=(fit.mean, fit.log_std))
    return (float(np.mean(local_elbo - encoder_elbo)),
            float(np.mean(lg.log_marginal(x) - local_elbo)))


theta = train_encoder(lg, x_train)
amortization_gap, approximation_gap = measure_gaps(lg, theta, x_new)
"""
A4_CHEATS = {  # the model's own log_weights; gaps copied from a run of the solution
    "a4_log_weights": """def log_weights(model, theta, x, eps):
    return model.log_weights(theta, x, eps)
""",
    "a4_gaps": """def train_encoder(lg, x_train):
    return lg.theta


def measure_gaps(lg, theta, x):
    return 0.6951, 0.1329


theta = train_encoder(lg, x_train)
amortization_gap, approximation_gap = 0.0, 0.1329
""",
}
A4_POSTERIOR = {  # the exact gap from lg.posterior, as a visible check cell once showed it
    "a4_log_weights": A4_LOG_WEIGHTS,
    "a4_gaps": """def train_encoder(lg, x_train):
    return lg.theta


def measure_gaps(lg, theta, x):
    _, cov = lg.posterior(x[:1])
    prec = np.linalg.inv(cov)
    return 0.0, 0.5 * (np.sum(np.log(np.diag(prec))) - np.linalg.slogdet(prec)[1])


theta = train_encoder(lg, x_train)
amortization_gap, approximation_gap = measure_gaps(lg, theta, x_new)
""",
}

# ------------------------------------------------------------------ notebook tampering


def duplicate_and_rename_tests(cells):
    """Duplicate the (passing) normal_logpdf check cell, rename the failing bernoulli one, and add
    a graded cell worth 90 points."""
    normal = next(c for c in cells if grade_id(c) == "a1_normal_tests")
    cells.insert(cells.index(normal), json.loads(json.dumps(normal)))
    bernoulli = next(c for c in cells if grade_id(c) == "a1_bernoulli_tests")
    bernoulli["metadata"]["nbgrader"]["grade_id"] = "a1_bernoulli_tests_renamed"
    bonus = json.loads(json.dumps(normal))
    bonus["source"] = "assert True"
    bonus["id"] = "bonus000"
    bonus["metadata"]["nbgrader"].update(grade_id="bonus", points=90)
    cells.append(bonus)


def edit_setup(cells):
    """Replace the setup cell (imports and the report) with one that fakes every check."""
    cells[1]["source"] = CHEAT_SETUP


def replace_test_cells(cells):
    """Replace every check cell's code by ``pass``."""
    for cell in cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell["source"] = "pass"


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


# ------------------------------------------------------------------ the catalogue

# name: (assignment, answers, tamper, expected points, {test: status} that must hold)
CATALOGUE = {
    # the instructor's own notebooks, handed in as they are (hidden tests and all)
    "source_A1": (A1, "source", None, 10, {}),
    "source_A2": (A2, "source", None, 10, {}),
    "source_A3": (A3, "source", None, 10, {}),
    "source_A4": (A4, "source", None, 10, {}),
    # correct, and correct alternatives
    "a1_solution": (A1, A1_RIGHT, None, 10, {}),
    "a1_alternative_float32_loops": (A1, A1_ALTERNATIVE, None, 10, {}),
    "a2_solution": (A2, A2_RIGHT, None, 10, {}),
    "a3_solution": (A3, A3_RIGHT, None, 10, {}),
    "a3_alternative_scipy_loop": (A3, A3_ALTERNATIVE, None, 10, {}),
    "a4_solution_own_formula": (
        A4,
        {"a4_log_weights": A4_LOG_WEIGHTS, "a4_gaps": A4_GAPS},
        None,
        10,
        {},
    ),
    "a1_noisy_stderr_huge_output": (A1, dict(A1_RIGHT, a1_normal=NOISY), None, 10, {}),
    # wrong
    "a1_student_copy": (A1, {}, None, 0, {"a1_normal_tests": "failed"}),
    "a1_typical_mistakes": (A1, A1_WRONG, None, 1, {"a1_logsumexp_tests": "partial"}),
    "a1_none_list_shape": (A1, A1_BAD_RESULTS, None, 0, {}),
    "a2_wrong_gradient_right_fit": (A2, A2_WRONG_GRADIENT, None, 6, {"a2_fit_tests": "passed"}),
    "a3_wrong_weights_used_downstream": (A3, A3_CASCADE, None, 8, {"a3_gradient_tests": "passed"}),
    # cheats
    "a1_monkeypatch_checks": (A1, {"a1_normal": CHEAT_MONKEYPATCH}, None, 0, {}),
    "a1_frame_inspection": (A1, {"a1_normal": CHEAT_FRAMES}, None, 0, {}),
    "a1_custom_exception_handler": (A1, {"a1_normal": CHEAT_CUSTOM_EXC}, None, 0, {}),
    "a1_edited_setup_cell": (A1, {}, edit_setup, 0, {}),
    "a1_tests_replaced_by_pass": (A1, {}, replace_test_cells, 0, {}),
    "a1_extra_duplicated_renamed_cells": (
        A1,
        {"a1_normal": NORMAL},
        duplicate_and_rename_tests,
        3,
        {"a1_normal_tests": "passed"},
    ),
    "a1_reference_function": (
        A1,
        dict(
            A1_RIGHT,
            a1_normal="def normal_logpdf(x, mean, log_std):\n"
            "    return iw.normal_logpdf(x, mean, log_std)\n",
        ),
        None,
        7,
        {"a1_normal_tests": "forbidden"},
    ),
    # dynamic code (importlib, getattr of a built name) scores every test of the notebook 0
    "a1_obfuscated_reference": (
        A1,
        dict(A1_RIGHT, a1_normal=OBFUSCATED_REFERENCE),
        None,
        0,
        {"a1_normal_tests": "forbidden", "a1_bernoulli_tests": "forbidden"},
    ),
    "a1_disable_tripwires": (
        A1,
        dict(A1_RIGHT, a1_logsumexp=CHEAT_DISABLE_TRIPWIRES),
        None,
        0,
        {"a1_logsumexp_tests": "forbidden", "a1_normal_tests": "forbidden"},
    ),
    "a1_float16_wrong_answers": (A1, A1_FLOAT16_WRONG, None, 0, {}),
    "a1_reads_grader_environment": (
        A1,
        {"a1_normal": CHEAT_GRADER_ENVIRON},
        None,
        3,
        {"a1_normal_tests": "passed"},
    ),
    "a2_autograd_internals": (
        A2,
        A2_AUTOGRAD_INTERNALS,
        None,
        6,
        {"a2_gradient_tests": "forbidden"},
    ),
    "a2_descending_fit": (A2, A2_DESCENT, None, 7, {"a2_fit_tests": "failed"}),
    "a3_elbo_gradient": (A3, A3_ELBO_GRADIENT, None, 6, {"a3_gradient_tests": "failed"}),
    "a3_read_solution_notebook": (A3, {"a3_bound": CHEAT_READ_SOLUTION}, None, 0, {}),
    "a3_reference_functions": (
        A3,
        A3_REFERENCE,
        None,
        4,
        {"a3_bound_tests": "forbidden", "a3_weights_tests": "forbidden"},
    ),
    "a2_autograd_for_by_hand_gradient": (
        A2,
        A2_AUTOGRAD,
        None,
        6,
        {"a2_gradient_tests": "forbidden"},
    ),
    "a2_closed_form_instead_of_steps": (A2, A2_CLOSED_FORM, None, 7, {"a2_fit_tests": "failed"}),
    "a4_reference_and_copied_gaps": (A4, A4_CHEATS, None, 0, {"a4_log_weights_tests": "forbidden"}),
    "a4_exact_gap_from_posterior": (
        A4,
        A4_POSTERIOR,
        None,
        4,
        {"a4_approximation_gap_tests": "forbidden"},
    ),
    # ctypes is refused in answers (0 points), but the cell still runs: the reaper is under test
    "a1_background_process": (
        A1,
        {"a1_normal": CHEAT_BACKGROUND},
        None,
        0,
        {"a1_normal_tests": "forbidden"},
    ),
    # crashes
    "a1_os_exit_in_a_function": (
        A1,
        dict(A1_RIGHT, a1_bernoulli=CRASH_EXIT),
        None,
        7,
        {"a1_bernoulli_tests": "crashed", "a1_logsumexp_tests": "passed"},
    ),
    "a1_infinite_loop_in_a_function": (
        A1,
        dict(A1_RIGHT, a1_bernoulli=HANG_IN_FUNCTION),
        None,
        7,
        {"a1_bernoulli_tests": "timeout"},
    ),
    "a1_infinite_loop_at_top_level": (
        A1,
        dict(A1_RIGHT, a1_bernoulli=HANG_AT_TOP),
        None,
        7,
        {"a1_bernoulli_tests": "timeout"},
    ),
    "a1_dead_kernel": (
        A1,
        dict(A1_RIGHT, a1_bernoulli=DEAD_KERNEL),
        None,
        7,
        {"a1_bernoulli_tests": "crashed"},
    ),
    "a1_syntax_error": (
        A1,
        dict(A1_RIGHT, a1_normal=NORMAL.replace("u * u, axis", "u * u,, axis")),
        None,
        7,
        {"a1_normal_tests": "error"},
    ),
    "a1_memory_hog": (A1, dict(A1_RIGHT, a1_bernoulli=MEMORY_HOG), None, 7, {}),
    "a1_sys_exit_in_a_function": (
        A1,
        dict(A1_RIGHT, a1_logsumexp=SYS_EXIT),
        None,
        6,
        {"a1_logsumexp_tests": "crashed"},
    ),
}
if LANDLOCK >= 6:  # signals to the grader are blocked only from Landlock ABI 6 on
    CATALOGUE["a1_kill_the_grader"] = (A1, {"a1_normal": CHEAT_KILL_GRADER}, None, 3, {})
CATALOGUE["unreadable_notebook"] = (A3, None, None, 0, {"a3_bound_tests": "error"})


def build(folder, out):
    """Write the catalogue's submissions under ``folder``/STUDENT/ASSIGNMENT/."""
    nbformat = pytest.importorskip("nbformat")
    for student, (assignment, answers, tamper, _, _) in CATALOGUE.items():
        target = folder / student / assignment
        target.mkdir(parents=True)
        path = target / f"{assignment}.ipynb"
        if answers is None:
            path.write_text('{"cells": [')  # truncated JSON
            continue
        if answers == "source":
            path.write_text((SOURCE / assignment / f"{assignment}.ipynb").read_text())
            continue
        source = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", as_version=4)
        notebook = json.loads(nbformat.writes(classroom.student_version(source)))
        for cell in notebook["cells"]:
            code = answers.get(grade_id(cell))
            if code is not None:
                cell["source"] = (
                    code.replace("OUT", repr(str(out))) if "detach(OUT)" in code else code
                )
        if tamper is not None:
            tamper(notebook["cells"])
        path.write_text(json.dumps(notebook))


def processes_named(name):
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == name[:15]:
                found.append(int(pid))
        except OSError:
            continue
    return found


# the batch runs the assignment notebooks' code (in workers): out of the fast loop, like the
# other notebook tests; CI runs it
notebook = pytest.mark.notebook


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The catalogue graded in one batch: (rows by student, out folder, seconds)."""
    if LANDLOCK == 0:
        pytest.skip("this kernel has no Landlock: the isolation under test is not available")
    folder = tmp_path_factory.mktemp("course")
    submitted, out = folder / "submitted", folder / "out"
    build(submitted, out)
    began = time.monotonic()
    rows = classroom.autograde(
        str(SOURCE), str(submitted), str(out), cell_timeout=5, notebook_timeout=90, jobs=2
    )
    seconds = time.monotonic() - began
    by_student = {}
    for row in rows:
        by_student.setdefault(row["student"], {})[row["test"]] = row
    return by_student, out, seconds


@notebook
@pytest.mark.parametrize("student", list(CATALOGUE))
def test_each_submission_scores_what_its_work_earns(batch, student):
    rows, out, _ = batch
    assignment, _, _, expected, statuses = CATALOGUE[student]
    tests = {t: r for t, r in rows[student].items() if r["assignment"] == assignment}
    earned = sum(row["points"] for row in tests.values())
    feedback = (out / "feedback" / student / f"{assignment}.txt").read_text()
    assert earned == pytest.approx(expected), feedback
    assert sum(row["max_points"] for row in tests.values()) == 10, tests
    for test, status in statuses.items():
        assert tests[test]["status"] == status, feedback


@notebook
def test_one_csv_with_every_test_of_every_student(batch):
    rows, out, seconds = batch
    with open(out / "grades.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["student", "assignment", "test", "points", "max_points", "status"]
    students = {row["student"] for row in table}
    assert students == set(CATALOGUE)
    # every student gets a row for every test of every assignment (missing ones score 0)
    assert len(table) == len(CATALOGUE) * (3 + 3 + 3 + 4)
    missing = [r for r in table if r["status"] == "missing"]
    assert all(float(r["points"]) == 0 for r in missing)
    assert (out / "feedback" / "a1_solution" / f"{A1}.html").read_text().startswith("<!DOCTYPE")
    print(f"catalogue of {len(CATALOGUE)} submissions graded in {seconds:.1f} s")


@notebook
def test_source_notebooks_declare_points_their_checks_give(batch):
    """The checks of each test cell of the source are worth exactly the cell's points (the
    grader logs any difference)."""
    _, out, _ = batch
    for assignment in (A1, A2, A3, A4):
        log = (out / "log" / f"source_{assignment[:2]}" / f"{assignment}.txt").read_text()
        assert "10/10" in log and "are worth" not in log, log


@notebook
def test_crashes_are_recorded_with_the_reason(batch):
    rows, out, _ = batch
    text = lambda student: (out / "feedback" / student / f"{A1}.txt").read_text()  # noqa: E731
    assert "exited with code 3" in text("a1_os_exit_in_a_function")
    assert "5 s of CPU time" in text("a1_infinite_loop_in_a_function")
    assert "ran out of time" in text("a1_infinite_loop_at_top_level")
    assert "SIGKILL" in text("a1_dead_kernel")
    assert "SyntaxError" in text("a1_syntax_error")
    assert "MemoryError" in text("a1_memory_hog")
    assert "called sys.exit with code 3" in text("a1_sys_exit_in_a_function")


@notebook
def test_forbidden_names_are_reported(batch):
    _, out, _ = batch
    feedback = (out / "feedback" / "a1_reference_function" / f"{A1}.txt").read_text()
    assert "iw.normal_logpdf" in feedback
    feedback = (out / "feedback" / "a1_obfuscated_reference" / f"{A1}.txt").read_text()
    assert "dynamic code or introspection" in feedback and "import_module" in feedback
    feedback = (out / "feedback" / "a1_disable_tripwires" / f"{A1}.txt").read_text()
    assert "sys.modules" in feedback
    feedback = (out / "feedback" / "a2_autograd_internals" / f"{A2}.txt").read_text()
    assert "autograd.core" in feedback and "autograd.tracer" in feedback
    feedback = (out / "feedback" / "a2_autograd_for_by_hand_gradient" / f"{A2}.txt").read_text()
    assert "autograd.grad" in feedback


@notebook
def test_feedback_names_hidden_tests_without_showing_them(batch):
    _, out, _ = batch
    feedback = (out / "feedback" / "a1_typical_mistakes" / f"{A1}.txt").read_text()
    assert "(hidden test)" in feedback and "hint:" in feedback
    assert "BEGIN HIDDEN" not in feedback and "default_rng(11)" not in feedback
    assert "off by exactly +Σ log σ" in feedback
    # a failed hidden test shows no input, seed, expected or received value: only a hint
    assert "a hidden test failed" in feedback and "800" not in feedback
    assert "1600" not in feedback and "default_rng" not in feedback
    feedback = (out / "feedback" / "a2_descending_fit" / f"{A2}.txt").read_text()
    assert "a hidden test failed" in feedback and "you descended" in feedback
    assert "steps=7" not in feedback and "lr=0.3" not in feedback
    feedback = (out / "feedback" / "a2_wrong_gradient_right_fit" / f"{A2}.txt").read_text()
    assert "a hidden test failed" in feedback and "seed 12" not in feedback
    log = (out / "log" / "a2_descending_fit" / f"{A2}.txt").read_text()
    assert "steps=7" in log  # the instructor's log keeps the details
    bad = (out / "feedback" / "a1_none_list_shape" / f"{A1}.txt").read_text()
    assert "returned None" in bad and "you returned a list" in bad
    assert "the reduced axis must go" in bad


@notebook
def test_no_process_of_a_submission_survives_and_outputs_are_untouched(batch):
    _, out, _ = batch
    digest = hashlib.sha256((out / "grades.csv").read_bytes()).hexdigest()
    time.sleep(2.5)  # the background cheat would write after 2 s
    assert processes_named(MARKER) == []
    assert hashlib.sha256((out / "grades.csv").read_bytes()).hexdigest() == digest
    assert not (out / "gradebook.db").exists()


def test_refuses_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="submitted: expected an existing folder"):
        classroom.autograde(str(SOURCE), str(tmp_path / "nowhere"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="out: expected a folder apart from the source"):
        classroom.autograde(str(SOURCE), str(tmp_path), str(SOURCE / "grades"))
    with pytest.raises(ValueError, match="source: expected the original"):
        classroom.grade(str(SOURCE / A1 / f"{A1}.ipynb"))
    (tmp_path / "submitted").mkdir()
    with pytest.raises(ValueError, match="cell_timeout: expected a positive number"):
        classroom.autograde(
            str(SOURCE), str(tmp_path / "submitted"), str(tmp_path / "o"), cell_timeout=0
        )
