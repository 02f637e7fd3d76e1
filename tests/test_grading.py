"""The grading checks pass correct answers and fail each typical wrong answer with a message that
names the input, the expected and actual values, and the mistake."""

import json

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special

from iwae_np.classroom import a1, a2, a3, a4, checks

# ------------------------------------------------------------------ correct answers


def good_normal(x, mean, log_std):
    u = (x - mean) * np.exp(-log_std)
    return np.sum(-0.5 * np.log(2 * np.pi) - log_std - 0.5 * u * u, axis=-1)


def good_bernoulli(x, logits):
    t = (2 * x - 1) * logits
    return np.sum(np.minimum(t, 0) - np.log1p(np.exp(-np.abs(t))), axis=-1)


def good_logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m, axis=axis)


def good_iwae(log_w):
    return good_logsumexp(log_w, 0) - np.log(log_w.shape[0])


def good_weights(log_w):
    return scipy.special.softmax(log_w, axis=0)


def good_iwae_gradient(jacobian, log_w):
    return good_weights(log_w) @ jacobian


def good_elbo(log_joint, x, mean, log_std, eps):
    z = mean + np.exp(log_std) * eps
    return np.mean(log_joint(x, z) - good_normal(z, mean, log_std), axis=0)


def good_log_weights(model, theta, x, eps):
    mean, log_std = model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    logits = model.decode(theta, z)
    return good_bernoulli(x, logits) + good_normal(z, 0.0, 0.0) - good_normal(z, mean, log_std)


@pytest.mark.parametrize(
    "check,student",
    [
        (a1.check_normal_logpdf, good_normal),
        (a1.check_bernoulli_logpmf, good_bernoulli),
        (a1.check_logsumexp, good_logsumexp),
        (a2.check_elbo_estimate, good_elbo),
        (a3.check_iwae_bound, good_iwae),
        (a3.check_normalized_weights, good_weights),
        (a3.check_iwae_gradient, good_iwae_gradient),
        (a4.check_log_weights, good_log_weights),
    ],
)
def test_correct_answers_pass(check, student):
    result = check(student)
    assert result.passed, str(result)
    assert result.points == result.max_points and result.cases_passed == result.cases > 1
    result.require()


# ------------------------------------------------------------------ the catalogue of wrong answers


def naive_logsumexp(a, axis):
    return np.log(np.sum(np.exp(a), axis=axis))


def iwae_missing_log_k(log_w):
    return good_logsumexp(log_w, 0)


def iwae_wrong_axis(log_w):
    return good_logsumexp(log_w, -1) - np.log(log_w.shape[-1])


def iwae_naive(log_w):
    return np.log(np.mean(np.exp(log_w), axis=0))


def normal_dropped_log_std(x, mean, log_std):
    u = (x - mean) * np.exp(-log_std)
    return np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * u * u, axis=-1)


def normal_sign_error(x, mean, log_std):
    return -good_normal(x, mean, log_std)


def elbo_density_of_eps(log_joint, x, mean, log_std, eps):
    z = mean + np.exp(log_std) * eps
    return np.mean(log_joint(x, z) - good_normal(eps, 0.0, 0.0), axis=0)  # log N(ε) for log q(z)


def log_weights_density_of_eps(model, theta, x, eps):
    mean, log_std = model.encode(theta, x)
    z = mean + np.exp(log_std) * eps
    log_prior = good_normal(z, 0.0, 0.0)
    return good_bernoulli(x, model.decode(theta, z)) + log_prior - good_normal(eps, 0.0, 0.0)


def log_weights_encoder_k_times(model, theta, x, eps):
    """Encodes x repeated k times, then reshapes in the wrong order: sample i of point j gets the
    λ of another point."""
    k, n = eps.shape[:2]
    mean, log_std = model.encode(theta, np.repeat(x, k, axis=0))  # rows: x0,x0,..,x1,x1,..
    mean, log_std = mean.reshape(k, n, -1), log_std.reshape(k, n, -1)  # wrong: should be (n, k)
    z = mean + np.exp(log_std) * eps
    log_prior = good_normal(z, 0.0, 0.0)
    return good_bernoulli(x, model.decode(theta, z)) + log_prior - good_normal(z, mean, log_std)


def iwae_gradient_sign_error(jacobian, log_w):
    return -good_iwae_gradient(jacobian, log_w)


def iwae_gradient_uniform(jacobian, log_w):
    return jacobian.mean(axis=0)


CATALOGUE = [
    ("sign error", a1.check_normal_logpdf, normal_sign_error, "sign error"),
    ("naive logsumexp that overflows", a1.check_logsumexp, naive_logsumexp, "subtract the maximum"),
    ("naive IWAE bound that overflows", a3.check_iwae_bound, iwae_naive, "subtracting the maximum"),
    ("missing log k", a3.check_iwae_bound, iwae_missing_log_k, "off by exactly log k"),
    ("mean over the wrong axis", a3.check_iwae_bound, iwae_wrong_axis, "reduce over axis 0"),
    (
        "dropped log_std term",
        a1.check_normal_logpdf,
        normal_dropped_log_std,
        "−log σ term is missing",
    ),
    (
        "density of ε used for q(z|x) in the ELBO",
        a2.check_elbo_estimate,
        elbo_density_of_eps,
        "density of ε",
    ),
    (
        "density of ε used for q(z|x) in log-weights",
        a4.check_log_weights,
        log_weights_density_of_eps,
        "density of ε",
    ),
    (
        "encoder run k times with different results",
        a4.check_log_weights,
        log_weights_encoder_k_times,
        "must be the same for every sample",
    ),
    ("gradient with a sign error", a3.check_iwae_gradient, iwae_gradient_sign_error, "sign error"),
    (
        "ELBO gradient instead of IWAE gradient",
        a3.check_iwae_gradient,
        iwae_gradient_uniform,
        "normalized weight",
    ),
]


@pytest.mark.parametrize("mistake,check,student,phrase", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_each_wrong_answer_fails_with_a_helpful_message(mistake, check, student, phrase):
    with np.errstate(all="ignore"):
        result = check(student)
    assert not result.passed and result.points == 0
    message = str(result)
    assert "input:" in message and "expected" in message, message
    assert "got" in message or "raised" in message, message
    assert phrase in message, f"{mistake}: {message}"
    with pytest.raises(AssertionError, match="FAILED"):
        result.require()


def test_hand_derived_gradient_check_names_the_coordinate():
    precision = np.array([[2.0, 0.5], [0.5, 1.0]])
    m = np.array([0.3, -0.2])

    def elbo(params):  # −KL(N(μ, diag σ²) ‖ N(m, Λ⁻¹)) up to a constant
        mu, log_std = params[:2], params[2:]
        d = mu - m
        trace = anp.sum(anp.diag(precision) * anp.exp(2 * log_std))
        return -0.5 * (trace + d @ precision @ d) + anp.sum(log_std)

    def right(params):
        mu, log_std = params[:2], params[2:]
        return np.concatenate([-precision @ (mu - m), 1 - np.diag(precision) * np.exp(2 * log_std)])

    def wrong(params):  # sign error in the log_std part
        g = right(params)
        g[2:] *= -1
        return g

    inputs = [("μ = 0, log σ = 0", np.zeros(4)), ("random", np.array([0.5, -1.0, 0.2, -0.3]))]
    assert checks.check_gradient("elbo_gradient", right, elbo, inputs).passed
    failed = checks.check_gradient("elbo_gradient", wrong, elbo, inputs)
    assert not failed.passed
    assert "coordinate (2,)" in failed.message and "sign error" in failed.message


def test_student_exceptions_are_reported_not_raised():
    def broken(log_w):
        raise NotImplementedError()

    result = a3.check_iwae_bound(broken)
    assert not result.passed and "NotImplementedError" in result.message


def test_report_in_json_and_text(tmp_path):
    report = checks.Report("A0")
    report.add(a3.check_iwae_bound(good_iwae))
    report.add(a3.check_iwae_bound(iwae_missing_log_k))
    json_path, text_path = report.save(str(tmp_path / "A0_report"))
    data = json.loads(open(json_path).read())
    assert data["score"] == 4 and data["max_score"] == 8 and len(data["checks"]) == 2
    text = open(text_path).read()
    assert "A0: 4/8 points" in text and "off by exactly log k" in text
    assert checks.check_value("gap", 0.01, 0.0, 0.05, 2, "gap", "h").passed
    assert not checks.check_value("gap", 0.3, 0.0, 0.05, 2, "gap", "retrain").passed


# ------------------------------------------------------------------ results of the wrong kind


def test_wrong_shaped_none_and_list_results_get_a_clear_message():
    result = a1.check_logsumexp(lambda a, axis: np.expand_dims(good_logsumexp(a, axis), axis))
    assert not result.passed and "the reduced axis must go" in result.message
    other = a1.check_logsumexp(lambda a, axis: np.zeros(7))
    assert not other.passed and "expected shape (3,), got (7,)" in other.message

    def no_return(log_w):
        good_iwae(log_w)

    result = a3.check_iwae_bound(no_return)
    assert (
        not result.passed and "returned None" in result.message and "got nan" not in result.message
    )
    ragged = a3.check_iwae_bound(lambda log_w: [good_iwae(log_w)[:1], good_iwae(log_w)])
    assert not ragged.passed and "not an array of numbers" in ragged.message
    nested = a3.check_normalized_weights(lambda log_w: good_weights(log_w).tolist())
    assert nested.passed, nested.message  # a list that is the right array is accepted
    opaque = a3.check_iwae_bound(lambda log_w: {"bound": good_iwae(log_w)})
    assert not opaque.passed and "array of numbers" in opaque.message


def test_float32_solutions_pass():
    def normal32(x, mean, log_std):
        x, mean, log_std = (np.asarray(v, np.float32) for v in (x, mean, log_std))
        return good_normal(x, mean, log_std)

    assert a1.check_normal_logpdf(normal32).passed
    assert a3.check_iwae_bound(lambda log_w: good_iwae(log_w.astype(np.float32))).passed


def test_hidden_tests_are_labelled_and_hinted():
    log_w = np.random.default_rng(0).normal(size=(3, 2))
    case = ("log_w (3, 2)", (log_w,), good_iwae(log_w))
    passed = checks.hidden_test("iwae_bound", good_iwae, [case], points=1)
    assert passed.passed and passed.name == "iwae_bound (hidden test)"
    failed = checks.hidden_test("iwae_bound", iwae_missing_log_k, [case], hint="mind log k")
    # the student sees that it failed and the hint, never the input or the values
    assert not failed.passed and "a hidden test failed" in failed.message
    assert "log_w (3, 2)" not in failed.message and "expected:" not in failed.message
    assert "hint: mind log k" in failed.message
    assert "input: log_w (3, 2)" in failed.detail  # kept for the instructor's log
    axis = checks.hidden_test(
        "logsumexp",
        good_logsumexp,
        [("axis 1", checks.Call(log_w, axis=1), good_iwae(log_w.T) + np.log(3))],
    )
    assert not axis.passed  # a Call passes keywords; this expected value is off by log 3 − log 2


def test_a_float16_result_gets_no_wider_tolerance_than_float32():
    x = np.random.default_rng(1).normal(size=(4, 3))
    four_percent_off = lambda x, mean, log_std: (1.04 * good_normal(x, mean, log_std)).astype(  # noqa: E731
        np.float16
    )
    assert not a1.check_normal_logpdf(four_percent_off).passed
    expected = np.full(3, 100.0) + x[0]
    half = checks.tolerances(np.zeros(3, np.float16), 1e-5, 1e-8, expected)
    single = checks.tolerances(np.zeros(3, np.float32), 1e-5, 1e-8, expected)
    assert half == single


def test_gradient_hint_names_the_part_of_the_wrong_coordinate():
    precision, m = np.array([[2.0, 0.6], [0.6, 1.0]]), np.array([0.4, -0.3])

    def elbo(params):
        mu, s = params[:2], params[2:]
        d = mu - m
        return -0.5 * (anp.sum(anp.diag(precision) * anp.exp(2 * s)) + d @ precision @ d) + anp.sum(
            s
        )

    def wrong_mu(params):
        mu, s = params[:2], params[2:]
        return np.concatenate([-(mu - m), 1 - np.diag(precision) * np.exp(2 * s)])  # Λ forgotten

    parts = [("μ", slice(0, 2), "the μ part: −Λ(μ − m)"), ("log σ", slice(2, 4), "exp(2s)")]
    inputs = [("a point", np.array([1.0, -1.0, 0.5, -0.7]))]
    result = checks.check_gradient("g", wrong_mu, elbo, inputs, parts=parts)
    assert not result.passed and "(a μ coordinate)" in result.message
    assert "the μ part" in result.message and "exp(2s)" not in result.message.split("hint:")[1]
    none = checks.check_gradient("g", lambda p: None, elbo, inputs)
    assert not none.passed and "returned None" in none.message


def test_fit_is_checked_step_by_step_with_the_true_gradient():
    precision, m = np.array([[2.0, 0.6], [0.6, 1.0]]), np.array([0.4, -0.3])

    def objective(params):
        mu, s = params[:2], params[2:]
        d = mu - m
        return -0.5 * (anp.sum(anp.diag(precision) * anp.exp(2 * s)) + d @ precision @ d) + anp.sum(
            s
        )

    def elbo_gradient(params):  # a wrong gradient: the fit is graded without it
        return np.zeros(4)

    namespace = {"np": np, "elbo_gradient": elbo_gradient}
    exec(
        "def fit(steps=2000, lr=0.05):\n    params = np.zeros(4)\n    for _ in range(steps):\n"
        "        params = params + lr * elbo_gradient(params)\n    return params\n"
        "def descend(steps=2000, lr=0.05):\n    params = np.zeros(4)\n    for _ in range(steps):\n"
        "        params = params - lr * elbo_gradient(params)\n    return params\n",
        namespace,
    )
    assert a2.check_fit_diagonal(namespace["fit"], objective).passed
    assert namespace["elbo_gradient"] is elbo_gradient  # restored after the check
    descent = a2.check_fit_diagonal(namespace["descend"], objective)
    assert not descent.passed and "you descended" in descent.message
    optimum = np.concatenate([m, -0.5 * np.log(np.diag(precision))])
    closed = a2.check_fit_diagonal(lambda steps=2000, lr=0.05: optimum, objective)
    assert not closed.passed and "whatever the number of steps" in closed.message


def test_gaps_against_exact_answers():
    import iwae_np as iw

    lg = iw.data.linear_gaussian(n=30, x_dim=4, z_dim=2, noise_std=0.7, seed=11)
    best = a4.best_encoder(lg)
    assert a4.exact_gaps(lg, best, lg.x)[0] == pytest.approx(0, abs=1e-9)
    assert a4.check_trained_encoder(lg, best, lg.x).passed
    untrained = a4.check_trained_encoder(lg, lg.theta, lg.x)
    assert not untrained.passed and "train longer" in untrained.message
    moved_decoder = best.copy()
    moved_decoder[-1] += 1
    assert "decoder part of θ changed" in a4.check_trained_encoder(lg, moved_decoder, lg.x).message
    encoder = a4.probe(lg, seed=5)

    def exact(lg_, theta, x):
        return a4.exact_gaps(lg_, theta, x)

    for which in ("amortization", "approximation"):
        assert a4.check_gaps(exact, lg, lg.x, [encoder], which).passed
    swapped = a4.check_gaps(lambda *a: exact(*a)[::-1], lg, lg.x, [encoder], "amortization")
    assert not swapped.passed and "the other gap" in swapped.message
    scalar = a4.check_gaps(lambda *a: 0.5, lg, lg.x, [encoder], "approximation")
    assert not scalar.passed and "return two numbers" in scalar.message


def test_require_passed_fails_only_for_new_failures_and_returns_nothing(capsys):
    report = checks.Report("A0")
    report.add(a3.check_iwae_bound(good_iwae))
    assert report.require_passed() is None
    report.add(a3.check_iwae_bound(iwae_missing_log_k))
    with pytest.raises(AssertionError, match="failed: iwae_bound"):
        report.require_passed()
    assert report.require_passed() is None  # that failure was reported already
    assert "PASSED" in capsys.readouterr().out
    assert "Self-check" in report.summary() and "points" not in report.summary()


def test_passing_checks_write_nothing_to_stderr(capsys):
    import sys
    import warnings

    def noisy(log_w):
        print("debugging", file=sys.stderr)
        warnings.warn("the student's own warning", stacklevel=1)
        np.log(np.zeros(1))  # a NumPy RuntimeWarning
        return good_iwae(log_w)

    assert a3.check_iwae_bound(noisy).passed
    captured = capsys.readouterr()
    assert captured.err == "" and "debugging" in captured.out


def test_a_diagnosis_that_breaks_never_replaces_the_verdict():
    def broken(expected, actual, args):
        raise IndexError("a bug in the hint")

    cases = [("x", (np.ones(2),), np.ones(2), broken)]
    result = checks.run_cases("f", 1, cases, lambda x: x[:1])
    assert not result.passed and "expected shape (2,), got shape (1,)" in result.message


# ------------------------------------------------------------------ forbidden names


SETUP = (
    "import autograd\nimport numpy as np\nimport iwae_np as iw\n"
    "from iwae_np.classroom import a1, checks\n"
)


@pytest.mark.parametrize(
    "code,forbidden,found",
    [
        (
            "def f(x, m, s):\n    return iw.normal_logpdf(x, m, s)\n",
            ("iwae_np",),
            "iw.normal_logpdf",
        ),
        (
            "from iwae_np.distributions import normal_logpdf as n\n"
            "def f(x):\n    return n(x, 0, 0)\n",
            ("iwae_np.distributions",),
            "`n`",
        ),
        (
            "import scipy.special as sp\ndef f(a):\n    return sp.logsumexp(a, 0)\n",
            ("scipy.special",),
            "sp.logsumexp",
        ),
        (
            "def f(model, theta, x, eps):\n    return model.log_weights(theta, x, eps)\n",
            ("iwae_np.models.VAE.log_weights",),
            "model.log_weights",
        ),
        (
            "def f(model, theta, x, eps):\n"
            "    return getattr(model, 'log_weights')(theta, x, eps)\n",
            ("iwae_np.models.VAE.log_weights",),
            "getattr",
        ),
        ("from autograd import grad as g\nh = g(lambda p: p)\n", ("autograd.grad",), "`g`"),
        (
            "def f(a):\n    return eval('iw.logsumexp(a, 0)')\n",
            ("iwae_np.numerics",),
            "iw.logsumexp",
        ),
        (
            "def f(a):\n    return checks.run_cases\n",
            ("iwae_np.classroom.checks",),
            "checks.run_cases",
        ),
    ],
)
def test_forbidden_names_are_found_in_the_code(code, forbidden, found):
    from iwae_np.classroom.notebooks import forbidden_uses

    uses = forbidden_uses(code, forbidden, SETUP)
    assert uses and found in uses[0], uses


def test_allowed_names_are_not_reported():
    from iwae_np.classroom.notebooks import forbidden_uses

    allowed = (
        "import scipy.special\ndef f(log_w, model, theta, x):\n"
        "    m, s = model.encode(theta, x)\n"
        "    return scipy.special.softmax(log_w, axis=0) + iw.logsumexp(log_w) + anp.exp(m)\n"
    )
    forbidden = ("iwae_np.estimators", "iwae_np.models.VAE.log_weights", "autograd.grad")
    assert forbidden_uses(allowed, forbidden, SETUP) == []


@pytest.mark.parametrize(
    "code",
    [
        "import importlib\nf = importlib.import_module('iwae' + '_np').logsumexp\n",
        "import sys\nsys.modules['iwae_np.classroom.worker'].set = lambda *a: frozenset()\n",
        "def f(g):\n    return g.__closure__[0].cell_contents\n",
        "def f(a):\n    ns = {}\n    exec('import scipy.' + 'special as s', ns)\n",
        "def f(a):\n    return getattr(iw, 'logsum' + 'exp')(a)\n",
        "def f(a):\n    return vars(iw)['logsumexp'](a)\n",
        "import gc\nobjects = gc.get_objects()\n",
        "import ctypes\n",
        "from iwae_np.classroom import worker\n",
        "import sys as s\nm = s.modules\n",
        "import sys\nmodules_of = getattr\n",
        "import os\nrun = os.system\n",
        "import subprocess\n",
        "x = np.load('f.npy', allow_pickle=True)\n",
    ],
)
def test_dynamic_code_and_introspection_are_refused(code):
    from iwae_np.classroom.notebooks import dynamic_uses

    assert dynamic_uses(code, SETUP), code


def test_plain_code_is_not_dynamic():
    from iwae_np.classroom.notebooks import dynamic_uses

    plain = (
        "import math, sys, warnings\nimport scipy.special\nfrom scipy.special import softmax\n"
        "def f(a, axis=0):\n    sys.stderr.write('debug\\n')\n"
        "    a = np.moveaxis(np.asarray(a, np.float32), axis, 0)\n"
        "    out = np.full(a.shape[1:], -np.inf, np.float32)\n"
        "    for index in np.ndindex(*out.shape):\n        out[index] = math.exp(1.0)\n"
        "    return np.logaddexp.reduce(a, axis=0) + scipy.special.logsumexp(a) + anp.exp(0.0)\n"
        "class Model:\n    def __init__(self):\n        super().__init__()\n"
        "    def __reduce__(self):\n        return (Model, ())\n"
        "value = getattr(np, 'pi')\n"
    )
    assert dynamic_uses(plain, SETUP) == []


# ------------------------------------------------------------------ the wire


def test_the_grader_accepts_only_plain_data_from_a_worker():
    from iwae_np.classroom import wire

    value = {"a": np.arange(3.0), "b": (1, 2.5, None, "s"), "c": [np.float32(1.5)], "d": object()}
    back = wire.decode(wire.encode(value))
    assert np.array_equal(back["a"], np.arange(3.0)) and back["b"] == (1, 2.5, None, "s")
    assert back["c"][0] == np.float32(1.5) and isinstance(back["d"], wire.Opaque)
    import base64
    import io
    import pickle

    with pytest.raises(wire.WireError):
        wire.decode(pickle.dumps(value))  # a pickle is not accepted
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    forged = json.dumps({"$nd": base64.b64encode(buffer.getvalue()).decode()}).encode()
    with pytest.raises((wire.WireError, ValueError)):
        wire.decode(forged)  # an object array would need pickle: refused
    with pytest.raises(wire.WireError):
        wire.decode(b'{"__class__": "CheckResult", "passed": true}')
    with pytest.raises(wire.WireError):
        wire.decode(b"[" * 100000 + b"]" * 100000)
