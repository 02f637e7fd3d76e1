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
