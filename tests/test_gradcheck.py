"""gradcheck passes correct gradients, fails wrong ones, and names where they disagree."""

import re

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

import iwae_np as iw
from iwae_np import kernels
from iwae_np.gradcheck import check_vjp
from iwae_np.numerics import sigmoid


def _quartic(x):
    return anp.sum(anp.sin(x) * x**3) + anp.sum(x) ** 2


def test_passes_a_correct_gradient_in_both_modes():
    small = np.random.default_rng(0).normal(size=(4, 5))
    report = iw.gradcheck(_quartic, small)
    assert report.passed and len(report.checks) == 20  # every coordinate
    large = np.random.default_rng(1).normal(size=500)
    report = iw.gradcheck(_quartic, large, n_directions=7, n_coordinates=9)
    assert report.passed and len(report.checks) == 16  # sampled coordinates + directions
    assert report.max_rel_error < 1e-6


def test_fails_a_gradient_one_percent_off_in_both_modes():
    import autograd

    for x in (
        np.random.default_rng(2).normal(size=(3, 3)),
        np.random.default_rng(3).normal(size=400),
    ):
        report = iw.gradcheck(_quartic, x, grad=lambda v: 1.01 * autograd.grad(_quartic)(v))
        assert not report.passed
        assert 0.005 < report.max_rel_error < 0.02
        assert "FAILED" in repr(report)


def test_catches_a_wrong_vjp_and_names_the_coordinate():
    @primitive
    def softplus_bad(x):
        return np.logaddexp(0, x)

    def wrong_at_coordinate_3(ans, x):
        def vjp(g):
            grad = g * sigmoid(x)
            grad[3] *= -1  # a sign error in one place only
            return grad

        return vjp

    defvjp(softplus_bad, wrong_at_coordinate_3)
    x = np.linspace(-2, 2, 8)
    report = iw.gradcheck(lambda v: anp.sum(softplus_bad(v)), x)
    assert not report.passed
    assert report.worst == "coordinate (3,)"
    assert report.analytic == pytest.approx(-report.numeric, rel=1e-6)
    assert "coordinate (3,)" in repr(report)
    assert sum(c[3] > report.rtol for c in report.checks) == 1


def test_float32_input_is_checked_in_float64():
    seen = []

    def f(x):
        seen.append(np.asarray(getval(x)).dtype)
        return anp.sum(x**2)

    report = iw.gradcheck(f, np.ones(3, dtype=np.float32))
    assert report.passed and set(seen) == {np.dtype(np.float64)}


def test_bad_arguments():
    # a hand-derived gradient is for a scalar f (an array f gets its Jacobian checked)
    with pytest.raises(ValueError, match="f: expected a scalar"):
        iw.gradcheck(lambda x: x * 2, np.ones(3), grad=lambda x: 2 * x)
    with (
        pytest.raises(ValueError, match="f: expected a finite value"),
        np.errstate(invalid="ignore"),
    ):
        iw.gradcheck(lambda x: anp.sum(anp.log(x)), -np.ones(3))
    with pytest.raises(ValueError, match="grad: expected a gradient of shape"):
        iw.gradcheck(lambda x: anp.sum(x), np.ones(3), grad=lambda x: np.ones(2))
    with pytest.raises(ValueError, match="x: expected no NaN"):
        iw.gradcheck(lambda x: anp.sum(x), np.array([1.0, np.nan]))


# ---------------------------------------------------------------- derivations with several parts
#
# Shared examples: a Gaussian log-likelihood of two arguments (mu, log_std), the
# reparameterization z = μ + σ ⊙ ε (a Jacobian), and their hand derivations.

DATA = np.random.default_rng(10).normal(1.0, 2.0, size=(5, 2))
MU = np.array([0.3, -0.2])
LOG_STD = np.array([[0.1, -0.3], [0.2, 0.4], [-0.1, 0.0]])  # (3, 2): three candidate scales
EPS = np.random.default_rng(11).normal(size=(3, 2, 2))


def log_lik(mu, log_std):
    """Σ over data and candidates of log N(x; μ, σ²). mu: (2,), log_std: (3, 2) -> scalar."""
    return anp.sum(iw.normal_logpdf(DATA[:, None, :], mu, log_std))


def log_lik_grad(mu, log_std):
    """∂/∂μ = Σ (x − μ) e^{−2s};  ∂/∂s = Σ [−1 + (x − μ)² e^{−2s}]."""
    r = DATA[:, None, :] - mu
    inv_var = np.exp(-2 * log_std)
    return np.sum(r * inv_var, axis=(0, 1)), np.sum(-1 + r**2 * inv_var, axis=0)


def log_lik_hessian(mu, log_std):
    """Blocks ((∂²/∂μ∂μ, ∂²/∂μ∂s), (∂²/∂s∂μ, ∂²/∂s∂s)), each of shape a.shape + b.shape."""
    r = DATA[:, None, :] - mu  # (5, 3, 2)
    inv_var = np.exp(-2 * log_std)  # (3, 2)
    eye = np.eye(2)
    mu_mu = -np.diag(np.sum(inv_var * len(DATA), axis=0))  # (2, 2)
    mu_s = np.zeros((2, 3, 2))  # ∂²/∂μ_j∂s_{c,d} = −2 Σ_n r e^{−2s} δ_jd
    mu_s[:] = -2 * np.sum(r * inv_var, axis=0)[None] * eye[:, None, :]
    s_s = np.zeros((3, 2, 3, 2))  # diagonal: −2 Σ_n r² e^{−2s}
    diag = -2 * np.sum(r**2 * inv_var, axis=0)
    for c in range(3):
        for d in range(2):
            s_s[c, d, c, d] = diag[c, d]
    return ((mu_mu, mu_s), (np.moveaxis(mu_s, 0, -1), s_s))


def reparam(mean, log_std):
    """z = μ + σ ⊙ ε. mean, log_std: (2, 2), ε: (3, 2, 2) -> z: (3, 2, 2)."""
    return mean + anp.exp(log_std) * EPS


MEAN2 = np.array([[0.5, -1.0], [0.2, 0.3]])
LOG_STD2 = np.array([[0.1, -0.4], [0.3, 0.0]])


def reparam_jacobian(mean, log_std):
    """∂z_kij/∂μ_ab = δ_ia δ_jb;  ∂z_kij/∂s_ab = σ_ij ε_kij δ_ia δ_jb: blocks (3, 2, 2, 2, 2)."""
    eye = np.eye(4).reshape(2, 2, 2, 2)
    d_mean = np.broadcast_to(eye, (3, 2, 2, 2, 2)).copy()
    d_log_std = (np.exp(log_std) * EPS)[..., None, None] * eye
    return (d_mean, d_log_std)


def off_by_one_percent(blocks, which, index):
    """A copy of the blocks with entry ``index`` of block ``which`` 1% off."""
    blocks = [np.array(b, dtype=float) for b in blocks]
    blocks[which][index] *= 1.01
    return tuple(blocks)


def test_several_arguments_as_a_tuple_or_a_dict():
    report = iw.gradcheck(log_lik, (MU, LOG_STD))
    assert report.passed and len(report.checks) == 2 + 6
    assert report.kind == "gradient" and "log_lik w.r.t. mu, log_std" in repr(report)
    assert iw.gradcheck(log_lik, (MU, LOG_STD), grad=log_lik_grad).passed
    as_dict = {"mu": MU, "log_std": LOG_STD}
    grad_dict = lambda mu, log_std: dict(
        zip(("mu", "log_std"), log_lik_grad(mu, log_std), strict=True)
    )
    assert iw.gradcheck(log_lik, as_dict, grad=grad_dict).passed

    def wrong(mu, log_std):
        return off_by_one_percent(log_lik_grad(mu, log_std), 1, (2, 0))

    report = iw.gradcheck(log_lik, (MU, LOG_STD), grad=wrong)
    assert not report.passed and report.worst == "`log_std`[2, 0]"
    assert len(report.failures) == 1
    assert "`log_std`[2, 0]: yours" in repr(report) and "finite differences" in repr(report)
    report = iw.gradcheck(
        log_lik, as_dict, grad=lambda **kw: dict(zip(("mu", "log_std"), wrong(**kw), strict=True))
    )
    assert not report.passed and report.worst == "`log_std`[2, 0]"


def test_a_one_percent_error_in_any_entry_is_caught_and_named():
    """Every entry of every argument's gradient, of a Jacobian (as a matrix, a VJP and a JVP)
    and of a Hessian: a 1% error there fails the check, and the report names that entry."""
    for which, shape in enumerate((MU.shape, LOG_STD.shape)):
        for index in np.ndindex(shape):
            wrong = lambda mu, log_std, w=which, i=index: off_by_one_percent(
                log_lik_grad(mu, log_std), w, i
            )
            report = iw.gradcheck(log_lik, (MU, LOG_STD), grad=wrong)
            name = ("mu", "log_std")[which]
            assert not report.passed
            assert report.worst == f"`{name}`[{', '.join(map(str, index))}]", report

    exact = reparam_jacobian(MEAN2, LOG_STD2)
    for which in (0, 1):
        for index in np.ndindex(3, 2, 2, 2, 2):
            if exact[which][index] == 0:
                continue  # a 1% error of 0 is 0
            jac = lambda mean, log_std, w=which, i=index: off_by_one_percent(
                reparam_jacobian(mean, log_std), w, i
            )
            report = iw.gradcheck(reparam, (MEAN2, LOG_STD2), jacobian=jac)
            name = ("mean", "log_std")[which]
            out, arg = ", ".join(map(str, index[:3])), ", ".join(map(str, index[3:]))
            assert report.worst == f"∂reparam[{out}]/∂`{name}`[{arg}]", report
            assert len(report.failures) == 1

    def vjp_wrong_at(which, index):  # gᵀJ with one entry of one argument's VJP 1% off
        def vjp(mean, log_std):
            def pull(g):
                grads = [np.sum(g, axis=0), np.sum(g * np.exp(log_std) * EPS, axis=0)]
                grads[which][index] *= 1.01
                return tuple(grads)

            return pull

        return vjp

    def jvp_wrong_at(index):  # J v with one output entry's tangent 1% off
        def jvp(mean, log_std):
            def push(v):
                z_dot = v[0] + np.exp(log_std) * EPS * v[1]
                z_dot[index] *= 1.01
                return z_dot

            return push

        return jvp

    for which in (0, 1):
        for index in np.ndindex(2, 2):
            report = iw.gradcheck(reparam, (MEAN2, LOG_STD2), vjp=vjp_wrong_at(which, index))
            name = ("mean", "log_std")[which]
            assert not report.passed
            assert report.worst.endswith(f"/∂`{name}`[{index[0]}, {index[1]}]"), report
    for index in np.ndindex(3, 2, 2):
        report = iw.gradcheck(reparam, (MEAN2, LOG_STD2), jvp=jvp_wrong_at(index))
        assert not report.passed
        assert report.worst.startswith(f"∂reparam[{', '.join(map(str, index))}]/∂"), report

    hessian = log_lik_hessian(MU, LOG_STD)
    for row in (0, 1):
        for col in (0, 1):
            block = hessian[row][col]
            for index in np.ndindex(block.shape):
                if block[index] == 0:
                    continue

                def wrong(mu, log_std, r=row, c=col, i=index):
                    blocks = [[np.array(b) for b in pair] for pair in log_lik_hessian(mu, log_std)]
                    blocks[r][c][i] *= 1.01
                    return blocks

                report = iw.gradcheck(log_lik, (MU, LOG_STD), order=2, hessian=wrong)
                names = ("mu", "log_std")
                split = 1 if row == 0 else 2
                first = f"`{names[row]}`[{', '.join(map(str, index[:split]))}]"
                second = f"`{names[col]}`[{', '.join(map(str, index[split:]))}]"
                assert report.worst == f"∂²log_lik/∂{first}∂{second}", report
                assert len(report.failures) == 1


def test_jacobians_in_every_form():
    exact = reparam_jacobian(MEAN2, LOG_STD2)
    assert iw.gradcheck(reparam, (MEAN2, LOG_STD2)).passed  # autograd's, entry by entry
    assert iw.gradcheck(reparam, (MEAN2, LOG_STD2), jacobian=reparam_jacobian).passed
    flat = np.concatenate([b.reshape(12, 4) for b in exact], axis=1)  # (m, n) matrix
    report = iw.gradcheck(reparam, (MEAN2, LOG_STD2), jacobian=lambda m, s: flat)
    assert report.passed and report.kind == "Jacobian" and len(report.checks) == 12 * 8
    vjp = lambda mean, log_std: lambda g: (g.sum(0), (g * np.exp(log_std) * EPS).sum(0))
    jvp = lambda mean, log_std: lambda v: v[0] + np.exp(log_std) * EPS * v[1]
    assert iw.gradcheck(reparam, (MEAN2, LOG_STD2), vjp=vjp).passed
    assert iw.gradcheck(reparam, (MEAN2, LOG_STD2), jvp=jvp).passed

    # the softmax is logsumexp's gradient; its Jacobian is diag(p) − p pᵀ
    a = np.array([0.3, -1.2, 2.0, 0.5])
    softmax = lambda a: anp.exp(a - iw.logsumexp(a))

    def softmax_jacobian(a):
        p = np.exp(a - iw.logsumexp(a))
        return np.diag(p) - np.outer(p, p)

    assert iw.gradcheck(softmax, a, jacobian=softmax_jacobian).passed
    report = iw.gradcheck(softmax, a, jacobian=lambda a: np.diag(np.exp(a - iw.logsumexp(a))))
    assert not report.passed and report.worst.startswith("∂f[")  # a lambda is "f"

    # two outputs (a tuple) and named outputs (a dict)
    def polar(r, angle):
        return r * anp.cos(angle), r * anp.sin(angle)

    r, angle = np.array([1.0, 2.0]), np.array([0.3, -0.7])
    assert iw.gradcheck(polar, (r, angle)).passed
    pull = lambda r, angle: (
        lambda g: (
            g[0] * np.cos(angle) + g[1] * np.sin(angle),
            -g[0] * r * np.sin(angle) + g[1] * r * np.cos(angle),
        )
    )
    assert iw.gradcheck(polar, (r, angle), vjp=pull).passed
    wrong = lambda r, angle: lambda g: (pull(r, angle)(g)[0], 1.01 * pull(r, angle)(g)[1])
    report = iw.gradcheck(polar, (r, angle), vjp=wrong)
    assert not report.passed and report.worst.startswith("∂polar[")
    assert "/∂`angle`[" in report.worst
    named = lambda r, angle: {"x": r * anp.cos(angle), "y": r * anp.sin(angle)}
    report = iw.gradcheck(named, {"r": r, "angle": angle})
    assert report.passed and any(c[0] == "∂y[1]/∂`angle`[1]" for c in report.checks)


def test_large_jacobians_use_random_directions_and_sampled_entries():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(300, 250)) / 10
    x = rng.normal(size=250)
    f = lambda x: anp.tanh(anp.dot(A, x))
    report = iw.gradcheck(f, x, n_directions=4, n_coordinates=5)
    assert report.passed and len(report.checks) == 9 * 9
    # a wrong entry in a sampled row and column is named; 1% off everywhere is caught
    entry = next(c[0] for c in report.checks if "u_" not in c[0] and "v_" not in c[0])
    row, col = (int(s[s.index("[") + 1 : s.index("]")]) for s in entry[1:].split("/∂"))
    jac = lambda x: (1 - np.tanh(A @ x) ** 2)[:, None] * A
    assert iw.gradcheck(f, x, jacobian=jac, n_directions=4, n_coordinates=5).passed

    def wrong(x):
        J = jac(x)
        J[row, col] *= 1.01
        return J

    report = iw.gradcheck(f, x, jacobian=wrong, n_directions=4, n_coordinates=5)
    assert not report.passed and report.worst == f"∂f[{row}]/∂`x`[{col}]"
    report = iw.gradcheck(f, x, jvp=lambda x: lambda v: 1.01 * jac(x) @ v, n_coordinates=0)
    assert not report.passed and "u_l, v_k" in repr(report)
    # the random checks that disagree are bisected down to an entry, which is named
    assert re.fullmatch(r"∂f\[\d+\]/∂`x`\[\d+\]", report.worst), report
    assert "bisecting their entries located" in repr(report)


def test_second_order_hessians_and_hessian_vector_products():
    report = iw.gradcheck(log_lik, (MU, LOG_STD), order=2)
    assert report.passed and report.kind == "Hessian" and len(report.checks) == 64
    assert iw.gradcheck(log_lik, (MU, LOG_STD), order=2, hessian=log_lik_hessian).passed
    # a Hessian-vector product by hand: H v with the blocks as one (8, 8) matrix
    (mu_mu, mu_s), (s_mu, s_s) = log_lik_hessian(MU, LOG_STD)
    flat_h = np.block([[mu_mu, mu_s.reshape(2, 6)], [s_mu.reshape(6, 2), s_s.reshape(6, 6)]])

    def hvp(mu, log_std):
        def product(v):
            hv = flat_h @ np.concatenate([v[0].ravel(), v[1].ravel()])
            return hv[:2], hv[2:].reshape(3, 2)

        return product

    assert iw.gradcheck(log_lik, (MU, LOG_STD), order=2, hvp=hvp).passed
    bad = lambda mu, log_std: lambda v: tuple(1.01 * p for p in hvp(mu, log_std)(v))
    assert not iw.gradcheck(log_lik, (MU, LOG_STD), order=2, hvp=bad).passed

    # your gradient, differentiated by autograd (written with autograd.numpy)
    def traceable_grad(mu, log_std):
        r = DATA[:, None, :] - mu
        inv_var = anp.exp(-2 * log_std)
        return anp.sum(r * inv_var, axis=(0, 1)), anp.sum(-1 + r**2 * inv_var, axis=0)

    report = iw.gradcheck(log_lik, (MU, LOG_STD), order=2, grad=traceable_grad)
    assert report.passed and "through your grad" in repr(report)

    # a Newton step's Hessian: one point's ELBO in λ = (μ, log σ) for the linear-Gaussian model
    model = iw.VAE(x_dim=3, z_dim=2, hidden=(), likelihood="gaussian")
    theta = model.init(0) + 0.1 * np.random.default_rng(0).normal(size=model.layout.size)
    x0, eps = DATA[:1, :1].repeat(3, axis=1), EPS[:, :1, :]

    def elbo_of(mean, log_std):
        return anp.sum(iw.elbo(model.log_weights_given(theta, x0, mean, log_std, eps)))

    lam = (np.array([[0.2, -0.1]]), np.array([[-0.3, 0.1]]))
    assert iw.gradcheck(elbo_of, lam, order=2).passed

    # a scalar f of one array: the Hessian entries are named by f's parameter
    report = iw.gradcheck(_quartic, np.array([0.3, -0.5, 1.1]), order=2)
    assert report.passed and report.worst.startswith("∂²_quartic/∂`x`[")


def test_a_gradient_autograd_cannot_see_through_is_flagged():
    def numpy_grad(mu, log_std):  # plain NumPy: autograd sees a constant
        g = log_lik_grad(np.asarray(getval(mu)), np.asarray(getval(log_std)))
        return np.asarray(g[0]), np.asarray(g[1])

    report = iw.gradcheck(log_lik, (MU, LOG_STD), order=2, grad=numpy_grad)
    assert not report.passed
    assert "constant" in repr(report) and "autograd.numpy" in repr(report)


@primitive
def scaled_product(a, b):
    """a ⊙ b², a primitive of two arguments. a, b: (3,) -> (3,)."""
    return a * b**2


def test_check_vjp_names_the_argument_and_entry_of_a_wrong_vjp():
    a, b = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.7, -0.4])

    def vjp_b(ans, a, b):
        def vjp(g):
            grad = 2 * g * a * b
            grad[1] *= 1.01  # one entry of one argument's VJP 1% off
            return grad

        return vjp

    defvjp(scaled_product, lambda ans, a, b: lambda g: g * b**2, vjp_b)
    report = check_vjp(scaled_product, a, b)
    assert not report.passed and report.worst == "∂scaled_product[1]/∂`b`[1]"
    assert "scaled_product's VJP" in repr(report) and len(report.failures) == 1
    assert check_vjp(scaled_product, a, b, argnums=(0,)).passed  # a's VJP is right
    defvjp(
        scaled_product,
        lambda ans, a, b: lambda g: g * b**2,
        lambda ans, a, b: lambda g: 2 * g * a * b,
    )
    assert check_vjp(scaled_product, a, b).passed

    # the package's primitives, wrapped by the door's checks, are found through the wrapper
    report = check_vjp(iw.logsumexp, np.array([[1.0, 2.0], [0.5, -1.0]]), kwargs={"axis": 1})
    assert report.passed and "logsumexp's VJP" in repr(report)
    # a VJP declared None (not differentiated) is skipped: x is data for this kernel
    x = np.array([[0.0, 1.0]])
    report = check_vjp(kernels.bernoulli_log_terms, x, np.array([[0.3, -2.0]]))
    assert report.passed and all("`x`" not in c[0] for c in report.checks)


def test_check_vjp_second_order_checks_the_vjp_of_the_vjp():
    @primitive
    def cube(x):
        return x**3

    @primitive
    def three_squared(x):
        return 3 * x**2

    defvjp(cube, lambda ans, x: lambda g: g * three_squared(x))
    defvjp(three_squared, lambda ans, x: lambda g: g * 6.06 * x)  # d(3x²)/dx = 6x: 1% off
    x = np.array([0.5, -1.3, 2.0])
    assert check_vjp(cube, x).passed  # first order is right
    report = check_vjp(cube, x, order=2)
    assert not report.passed and report.kind == "second derivatives"
    assert report.worst.startswith("∂²(gᵀcube)/∂`x`[")
    defvjp(three_squared, lambda ans, x: lambda g: g * 6 * x)
    assert check_vjp(cube, x, order=2).passed


def test_step_sweep_shows_the_v_and_the_more_accurate_methods(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    f = lambda x: anp.sum(anp.sin(x) * x**2) + anp.sum(x)
    report = iw.gradcheck(f, np.array([0.3, 1.3, -0.8]), sweep=True)
    sweep = report.sweep
    assert report.passed and sweep.label == report.worst
    h, central = sweep.steps, sweep.central
    at_chosen = sweep.chosen_error
    # a V: both ends are far worse than gradcheck's step
    assert central[0] > 1e4 * at_chosen and central[-1] > 1e4 * at_chosen
    best_h, best_error = sweep.best("central")
    assert 1e-7 < best_h < 1e-4 and best_error < 1e-9
    assert sweep.best("richardson")[1] < best_error / 10  # Richardson is more accurate
    assert sweep.best("complex step")[1] < 1e-14  # and the complex step, to rounding
    assert 1e-7 < sweep.predicted_step < 1e-4
    # the slopes: truncation ∝ h² on the right, round-off ∝ 1/h on the left
    right = (h > 1e-4) & (h < 1e-2)
    slope = np.polyfit(np.log(h[right]), np.log(central[right]), 1)[0]
    assert 1.8 < slope < 2.2
    left = h < 1e-10
    slope = np.polyfit(np.log(h[left]), np.log(np.maximum(central[left], 1e-300)), 1)[0]
    assert -1.4 < slope < -0.6
    ax = sweep.plot(path=tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("truncation" in label for label in labels)
    assert any("round-off" in label for label in labels)
    assert any("gradcheck's h" in label for label in labels)
    assert "step sweep for" in repr(report) and "richardson" in repr(sweep)
    # a sweep at a chosen check; a function that refuses complex input has no complex step
    report = iw.gradcheck(iw.logsumexp, np.array([0.3, 1.0]), sweep="coordinate (1,)")
    assert report.sweep.label == "coordinate (1,)" and report.sweep.complex_step is None
    assert "not available" in repr(report.sweep)
    # a wrong derivative: every method floors at its error, whatever the step
    g = lambda x: 1.01 * (np.cos(x) * x**2 + 2 * x * np.sin(x) + 1)
    wrong = iw.gradcheck(f, np.array([0.3, 1.3]), grad=g, sweep=True)
    floor = 0.01 / 1.01 * abs(wrong.sweep.derivative)
    assert wrong.sweep.disagrees and "the derivative is off, not the step" in repr(wrong)
    assert wrong.sweep.estimate == pytest.approx(wrong.sweep.derivative / 1.01, rel=1e-12)
    middle = (wrong.sweep.steps > 1e-8) & (wrong.sweep.steps < 1e-4)
    for errors in (wrong.sweep.central, wrong.sweep.richardson, wrong.sweep.complex_step):
        assert np.allclose(errors[middle], floor, rtol=1e-3)


def test_richardson_and_complex_step_methods():
    f = lambda x: anp.sum(anp.exp(0.5 * x) * anp.cos(x))
    x = np.array([0.2, -1.0, 3.0])
    for method in ("richardson", "complex"):
        report = iw.gradcheck(f, x, method=method)
        assert report.passed and report.max_rel_error < 1e-10, report
        g = lambda x: 1.01 * (0.5 * np.exp(0.5 * x) * np.cos(x) - np.exp(0.5 * x) * np.sin(x))
        assert not iw.gradcheck(f, x, grad=g, method=method).passed
    assert iw.gradcheck(reparam, (MEAN2, LOG_STD2), method="complex").passed
    with pytest.raises(ValueError, match="method: expected a function that accepts complex"):
        iw.gradcheck(iw.logsumexp, x, method="complex")


def test_float32_arguments_are_checked_in_float64():
    seen = []

    def f(a, b):
        seen.extend(np.asarray(getval(v)).dtype for v in (a, b))
        return anp.sum(a * b**2)

    args = (np.ones(2, dtype=np.float32), np.full(2, 3, dtype=np.float32))
    assert iw.gradcheck(f, args).passed and iw.gradcheck(f, args, order=2).passed
    assert set(seen) == {np.dtype(np.float64)}


def test_bad_arguments_of_the_wider_checks():
    x = (MU, LOG_STD)
    with pytest.raises(ValueError, match="grad, vjp: expected at most one"):
        iw.gradcheck(log_lik, x, grad=log_lik_grad, vjp=lambda *a: None)
    with pytest.raises(ValueError, match="hessian: expected order=2"):
        iw.gradcheck(log_lik, x, hessian=log_lik_hessian)
    with pytest.raises(ValueError, match="jacobian: expected grad= or vjp= for order=2"):
        iw.gradcheck(reparam, (MEAN2, LOG_STD2), order=2, jacobian=reparam_jacobian)
    with pytest.raises(ValueError, match="f: expected a scalar output for hessian="):
        iw.gradcheck(reparam, (MEAN2, LOG_STD2), order=2, hessian=lambda *a: 0)
    with pytest.raises(ValueError, match=r"grad: expected a gradient for `log_std` of shape"):
        iw.gradcheck(log_lik, x, grad=lambda mu, log_std: (mu, mu))
    with pytest.raises(ValueError, match=r"grad: expected a tuple of 2 arrays \(mu, log_std\)"):
        iw.gradcheck(log_lik, x, grad=lambda mu, log_std: mu)
    with pytest.raises(ValueError, match="jacobian: expected a .* matrix or the block"):
        iw.gradcheck(reparam, (MEAN2, LOG_STD2), jacobian=lambda m, s: (np.eye(2), np.eye(2)))
    with pytest.raises(ValueError, match=r"x: expected no NaN, got NaN at index \(1,\)"):
        iw.gradcheck(log_lik, (MU, np.array([0.0, np.nan])))
    with pytest.raises(ValueError, match="x: expected argument names as dict keys"):
        iw.gradcheck(log_lik, {1: MU})
    with pytest.raises(ValueError, match="order: expected one of"):
        iw.gradcheck(log_lik, x, order=3)
    with pytest.raises(ValueError, match="method: expected one of"):
        iw.gradcheck(log_lik, x, method="forward")
    with pytest.raises(ValueError, match="sweep: expected True or the label of a check"):
        iw.gradcheck(log_lik, x, sweep="`mu`[7]")
    with pytest.raises(ValueError, match="primitive: expected an autograd primitive"):
        check_vjp(_quartic, np.ones(3))  # a composite function: gradcheck it instead
    with pytest.raises(ValueError, match="args: expected at least one real-float argument"):
        check_vjp(kernels.block, np.arange(4), 0, 2, (2,))  # an integer θ has no gradient
    with pytest.raises(ValueError, match="args: expected no NaN"):
        check_vjp(iw.softplus, np.array([np.nan]))
    with pytest.raises(ValueError, match="argnums: expected a non-empty tuple"):
        check_vjp(iw.softplus, np.ones(2), argnums=0)


# ---------------------------------------------------------------- the package's own derivatives


def test_the_package_derivatives_pass_first_and_second_order():
    """Acceptance: every primitive's VJP (and the VJP of that VJP), and the gradients and
    Hessians of the composite functions built on them, agree with finite differences."""
    rng = np.random.default_rng(7)
    a = rng.normal(scale=2.0, size=(3, 4))
    for primitive_function, kwargs in [
        (iw.logsumexp, {}),
        (iw.logsumexp, {"axis": 0}),
        (iw.logsumexp, {"axis": 1, "keepdims": True}),
        (iw.softplus, {}),
        (iw.log_sigmoid, {}),
        (iw.sigmoid, {}),
        (kernels.sum_last, {}),
    ]:
        for order in (1, 2):
            report = check_vjp(primitive_function, a, kwargs=kwargs, order=order)
            assert report.passed, report
    theta = rng.normal(size=12)
    h = rng.normal(size=(3, 2))
    w_block, b_block = (1, 7, (2, 3)), (7, 10, (3,))
    for order in (1, 2):
        assert check_vjp(kernels.block, theta, 2, 8, (3, 2), order=order).passed
        for activation in (None, "tanh", "relu"):
            report = check_vjp(kernels.dense, theta, h, w_block, b_block, activation, order=order)
            assert report.passed, report
        x = (rng.random((2, 4)) < 0.5).astype(float)
        report = check_vjp(kernels.bernoulli_log_terms, x, rng.normal(size=(3, 2, 4)), order=order)
        assert report.passed, report

    # composites: log_mean_exp, the bounds, params.block
    log_w = rng.normal(scale=2.0, size=(6, 3))
    c = rng.normal(size=3)
    for bound in (
        iw.log_mean_exp,
        iw.elbo,
        iw.iwae_bound,
        lambda lw: iw.vr_bound(lw, 0.5),
        lambda lw: iw.miwae_bound(lw, 2),
        lambda lw: iw.ciwae_bound(lw, 0.3),
    ):
        assert iw.gradcheck(bound, log_w).passed  # Jacobian (6·3 → 3)
        report = iw.gradcheck(lambda lw, bound=bound: anp.sum(c * bound(lw)), log_w, order=2)
        assert report.passed, report
    read = lambda theta: anp.sum(anp.tanh(iw.block(theta, 2, 8, (3, 2))) * h)
    assert iw.gradcheck(read, theta).passed and iw.gradcheck(read, theta, order=2).passed

    # the model's log-weights, w.r.t. θ and ε, both tiers and both likelihoods
    for likelihood, fast in (("bernoulli", True), ("gaussian", False)):
        model = iw.VAE(x_dim=4, z_dim=2, hidden=(3,), likelihood=likelihood, fast=fast)
        x = (
            (rng.random((2, 4)) < 0.5).astype(float)
            if likelihood == "bernoulli"
            else rng.normal(size=(2, 4))
        )
        theta = model.init(0, x) + 0.3 * rng.normal(size=model.layout.size)
        eps = rng.standard_normal((3, 2, 2))
        log_weights = lambda theta, eps, model=model, x=x: model.log_weights(theta, x, eps)
        report = iw.gradcheck(log_weights, (theta, eps))
        assert report.passed and report.kind == "Jacobian", report
        report = iw.gradcheck(log_weights, (theta, eps), order=2)
        assert report.passed and report.kind == "second derivatives", report


# ---------------------------------------------------------------- the step and the tolerance
#
# Regressions from an independent review: the step grew with |x| and never went below 6e-6, and
# the old floor max(1, |f|)·100ε/h, or 1e-6 of a row's largest entry, hid errors in a tiny f or
# beside a huge entry. The rule now: |A − N| ≤ atol + rtol·max(|A|, |N|) + noise + truncation.

X3 = np.array([0.3, -1.2, 0.7])


def test_a_tiny_f_is_judged_on_its_own_scale():
    f = lambda x: anp.exp(-30 - anp.sum(x**2))  # a density value near 1e-14
    right = lambda x: -2 * x * np.exp(-30 - np.sum(x**2))
    assert iw.gradcheck(f, X3, grad=right).passed
    report = iw.gradcheck(f, X3, grad=lambda x: -right(x))  # the sign slip
    assert not report.passed and len(report.failures) == 3
    report = iw.gradcheck(
        lambda x: 1e-13 * anp.sum(anp.sin(x)), X3, grad=lambda x: -1e-13 * np.cos(x)
    )
    assert not report.passed
    one_off = lambda x: 1e-13 * np.cos(x) * np.array([1, 1.01, 1])
    report = iw.gradcheck(lambda x: 1e-13 * anp.sum(anp.sin(x)), X3, grad=one_off)
    assert not report.passed and report.worst == "coordinate (1,)"


def test_an_entry_beside_a_huge_one_is_judged_on_its_own_scale():
    x = np.array([0.0, 0.3, -1.2, 0.7])
    f = lambda x: 1e10 * x[0] + anp.sum(anp.sin(x[1:]))

    def wrong(x):
        g = np.concatenate([[1e10], np.cos(x[1:])])
        g[2] *= -1
        return g

    assert iw.gradcheck(f, x).passed
    report = iw.gradcheck(f, x, grad=wrong)
    assert not report.passed and report.worst == "coordinate (2,)"
    # a Jacobian row with the same spread
    f3 = lambda x: anp.stack([1e9 * x[0] + anp.sin(x[1]), anp.cos(x[2])])
    jac = lambda x: np.array([[1e9, -np.cos(x[1]), 0, 0], [0, 0, -np.sin(x[2]), 0]])
    report = iw.gradcheck(f3, x, jacobian=jac)
    assert not report.passed and report.worst == "∂f[0]/∂`x`[1]"


def test_one_wrong_entry_among_a_hundred_thousand_is_found_and_named():
    """Random directions dilute a 1% error in one of n entries to 1%/√n: the random checks are
    screened against the finite-difference error alone and bisected down to the entry."""
    n = 100_000
    x = np.random.default_rng(0).normal(size=n)
    f = lambda x: anp.sum(anp.sin(x))
    for factor in (1.01, -1.0):
        g = np.cos(x)
        g[n // 3] *= factor
        report = iw.gradcheck(f, x, grad=lambda x, g=g: g)
        assert not report.passed and report.worst == f"coordinate ({n // 3},)", report
        assert "bisecting their entries located" in repr(report)


def test_the_package_at_realistic_scales_of_log_weights():
    """Log-weights of 10 to 1e4 are normal in the course: the package's own derivatives pass
    there, first and second order, and a 1% error is still caught."""
    rng = np.random.default_rng(6)
    wide = 30 * rng.normal(size=(4, 3))
    assert check_vjp(iw.logsumexp, wide, order=2).passed  # failed at rel 3.8e-3 before
    for offset in (-1e4, -3e4):
        low = offset + rng.normal(size=6)
        assert iw.gradcheck(iw.logsumexp, low).passed
        assert iw.gradcheck(iw.iwae_bound, low.reshape(3, 2)).passed
        softmax = np.exp(low - iw.logsumexp(low))
        report = iw.gradcheck(
            iw.logsumexp, low, grad=lambda a, s=softmax: s * [1, 1, 1.01, 1, 1, 1]
        )
        assert not report.passed and report.worst == "coordinate (2,)"
    for scale in (10, 100):
        log_w = scale * rng.normal(size=(4, 3))
        for bound in (
            iw.log_mean_exp,
            lambda lw: iw.vr_bound(lw, 0.5),
            lambda lw: iw.ciwae_bound(lw, 0.3),
        ):
            assert iw.gradcheck(bound, log_w).passed
        assert iw.gradcheck(iw.iwae_bound, log_w, order=2).passed
    report = iw.gradcheck(lambda a: anp.sum(iw.log_sigmoid(a)), np.array([-800.0, -30.0]), order=2)
    assert report.passed, report


@pytest.mark.parametrize(
    "f, x",
    [
        (lambda x: anp.sum(anp.sin(x)), [1e4, 0.5]),
        (lambda x: anp.sum(anp.sin(x)), [1e5, 1e5 + 0.3]),
        (lambda x: anp.sum(anp.exp(x - 1e5)), [1e5, 1e5 + 0.3]),
        (lambda x: anp.sum(anp.sin(1e4 * x)), [0.1, 0.5]),
        (lambda x: anp.sum(anp.log(x)), [1e-4, 0.5]),
        (lambda x: anp.sum(anp.sqrt(x)), [1e-4, 0.5]),
        (lambda x: anp.sum(anp.maximum(x, 0)), [3e-6, 1.0]),
        (lambda x: anp.sum(anp.tanh(1e3 * x)), [1e-3, 2e-3]),
    ],
    ids=["sin-1e4", "sin-1e5", "exp-1e5", "sin-fast", "log-1e-4", "sqrt-1e-4", "relu-3e-6", "tanh"],
)
def test_the_step_follows_how_fast_f_varies_not_the_size_of_x(f, x):
    """A step of 6e-6·max(1, |x|) was 0.06 at x = 1e4 and crossed log's and relu's features at
    1e-4 and 3e-6; PyTorch passes all of these, and so do we (and a 1% error still fails)."""
    x = np.array(x)
    report = iw.gradcheck(f, x)
    assert report.passed, report
    g = np.array(autograd_grad(f)(x)) * np.array([1.01, 1.0])
    assert not iw.gradcheck(f, x, grad=lambda x: g).passed


def autograd_grad(f):
    import autograd

    return autograd.grad(f)


def test_differences_far_below_f_are_not_mistaken_for_errors():
    """f = 100 + Σ(x − 1)² near its minimum: a difference of 4e-10 on a gradient of 2e-5 failed 9
    of 20 seeds, because f's rounding (1e-14 / h) swamped the step."""
    f = lambda x: 100 + anp.sum((x - 1) ** 2)
    for seed in range(20):
        x = 1 + 1e-5 * np.random.default_rng(seed).normal(size=5)
        report = iw.gradcheck(f, x)
        assert report.passed, report
    g = lambda x: 2 * (x - 1) * np.array([1, 1, 1.01, 1, 1])
    assert not iw.gradcheck(f, x, grad=g).passed


def test_atol_is_added_to_the_allowance_and_the_report_states_the_rule():
    x = np.array([0.5, 1.0])
    f = lambda x: anp.sum(anp.sin(x))
    off = lambda x: np.cos(x) + np.array([1e-3, 0.0])  # off by 1e-3 in one entry
    assert not iw.gradcheck(f, x, grad=off).passed
    report = iw.gradcheck(f, x, grad=off, atol=1e-2)
    assert report.passed and report.atol == 1e-2
    assert not iw.gradcheck(f, x, grad=off, atol=1e-4).passed
    text = repr(report)
    assert "rule: |yours − fd| ≤ atol + rtol·max(|yours|, |fd|) + noise + truncation" in text
    for check in report.checks:  # rel_error ≤ rtol exactly when the rule holds
        holds = abs(check[1] - check[2]) <= check.allowance + report.rtol * max(
            abs(check[1]), abs(check[2])
        )
        assert holds == (check[3] <= report.rtol)
    assert iw.gradcheck(f, x, atol=0).passed  # atol = 0 is allowed


def test_nested_list_outputs_are_one_array_each():
    report = iw.gradcheck(lambda x: [[x[0], x[1]], [x[2], x[0]]], X3)
    assert report.passed and report.kind == "Jacobian"
    assert any(c[0] == "∂f[1][1]/∂`x`[0]" for c in report.checks)
    report = iw.gradcheck(lambda x: ((x, 2 * x), x), X3)
    assert report.passed and any(c[0] == "∂f[0][1, 2]/∂`x`[2]" for c in report.checks)
    with pytest.raises(ValueError, match=r"f: expected an array \(or a rectangular nested list\)"):
        iw.gradcheck(lambda x: ((x, x[0]), x), X3)
    with pytest.raises(ValueError, match="f: expected an array or a number for f\\[1\\], got dict"):
        iw.gradcheck(lambda x: (x, {"a": x}), X3)


def test_the_complex_step_on_a_function_that_is_not_complex_analytic():
    f = lambda x: anp.sum(anp.abs(x))
    report = iw.gradcheck(f, X3, method="complex")
    assert report.passed  # autograd's sign(x) agrees with central differences
    assert any("not complex-analytic" in note for note in report.notes)
    assert "complex step 0, central differences 1" in repr(report)
    wrong = iw.gradcheck(f, X3, grad=lambda x: -np.sign(x), method="complex")
    assert not wrong.passed and wrong.numeric == pytest.approx(-wrong.analytic)  # a sign slip
    report = iw.gradcheck(f, X3, method="complex", sweep=True)
    assert not report.sweep.disagrees and "derivative is off" not in repr(report)
    assert "not complex-analytic" in repr(report.sweep)


def test_the_sweep_stops_at_the_edge_of_the_domain():
    import matplotlib

    matplotlib.use("Agg")
    report = iw.gradcheck(lambda x: anp.sum(anp.log(x)), np.array([0.01, 0.5]), sweep=True)
    sweep = report.sweep
    assert report.passed and sweep.domain_edge == pytest.approx(0.01, rel=0.5)
    assert np.all(np.isnan(sweep.central[sweep.steps >= sweep.domain_edge]))
    assert np.all(np.isfinite(sweep.central[sweep.steps < sweep.domain_edge]))
    assert "edge of f's domain" in repr(report)
    assert sweep.best("central")[0] < sweep.domain_edge
    sweep.plot()


def test_a_jump_gets_no_truncation_allowance():
    """At a kink of f the gradient jumps: its finite differences grow like 1/h, and the
    Hessian of relu at 0 is not 0 (PyTorch's gradgradcheck fails it too)."""
    relu = lambda x: anp.sum(anp.maximum(x, 0))
    report = iw.gradcheck(relu, np.array([0.0, 1.0]), order=2)
    assert not report.passed and any("jumps" in note for note in report.notes)
    step = lambda x: anp.sum(anp.where(x > 0, 1.0, 0.0) + 0 * x)  # a step function
    assert not iw.gradcheck(step, np.array([0.0, 1.0])).passed


def test_checks_that_cannot_resolve_a_one_percent_error_are_named_in_the_notes():
    # ∂²/∂a_i∂a_j logsumexp = −p_i p_j underflows to 1e-57 beside entries of 0.25
    a = 30 * np.random.default_rng(6).normal(size=(4, 3))
    report = check_vjp(iw.logsumexp, a, order=2)
    assert report.passed
    assert any("cannot resolve a 1% error" in note for note in report.notes)


# ---------------------------------------------------------------- bad arguments, named


@primitive
def _product_of(a, b):
    return a * b


def test_bad_derivatives_and_outputs_are_value_errors_naming_the_argument():
    x = X3
    cases = [
        (dict(vjp=lambda x: 2 * x), "vjp: expected a function x -> \\(cotangent -> VJP\\)"),
        (dict(jvp=lambda x: 2 * x), "jvp: expected a function x -> \\(tangent -> JVP\\)"),
        (dict(order=2, vjp=lambda x: 2 * x), "vjp: expected a function"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            iw.gradcheck(lambda x: x**2, x, **kwargs)
    with pytest.raises(ValueError, match="hvp: expected a function x -> \\(v -> Hessian"):
        iw.gradcheck(lambda x: anp.sum(x**3), x, order=2, hvp=lambda x: 6 * x)
    with pytest.raises(ValueError, match="grad: expected a function that can be evaluated"):
        iw.gradcheck(lambda x: anp.sum(x), x, grad=lambda x: 1 / 0)

    # Jacobian blocks: a structure that does not match the outputs or the arguments
    two = lambda x: {"p": x**2, "q": x[0]}
    with pytest.raises(ValueError, match="jacobian: expected the blocks for the outputs as a dict"):
        iw.gradcheck(two, x, jacobian=lambda x: (2 * np.diag(x), np.eye(3)[0]))
    with pytest.raises(ValueError, match=r"got a dict with keys \['p'\]"):
        iw.gradcheck(two, x, jacobian=lambda x: {"p": 2 * np.diag(x)})
    extra = lambda x: {"p": 2 * np.diag(x), "q": np.eye(3)[0], "r": 1}
    with pytest.raises(ValueError, match=r"got a dict with keys \['p', 'q', 'r'\]"):
        iw.gradcheck(two, x, jacobian=extra)
    product = lambda a, b: {"p": a * b}
    with pytest.raises(ValueError, match=r"blocks for the arguments \(a, b\) as a tuple of 2"):
        iw.gradcheck(product, (x, x), jacobian=lambda a, b: {"p": {"a": np.diag(b), "b": 0}})
    with pytest.raises(
        ValueError, match=r"blocks for the arguments as a dict with keys \['a', 'b'\]"
    ):
        iw.gradcheck(
            lambda a, b: (a * b,), {"a": x, "b": x}, jacobian=lambda a, b: ((np.diag(b), 0),)
        )

    # f's output and f itself
    with pytest.raises(ValueError, match="f: expected at least one output value"):
        iw.gradcheck(lambda x: x[:0], x)
    with pytest.raises(ValueError, match="f: expected an output with real values, got complex"):
        iw.gradcheck(lambda x: anp.sum(x**2) + 1j * anp.sum(x), x)
    with pytest.raises(
        ValueError, match="f: expected a function autograd can differentiate.*float"
    ):
        iw.gradcheck(lambda x: float(np.sum(x**2)), x)
    with pytest.raises(ValueError, match="f: expected a function that can be evaluated at x"):
        iw.gradcheck(lambda a: anp.sum(a), {"b": x})

    # a primitive whose VJP forgets to unbroadcast: a wrong VJP shape, naming the argument
    defvjp(_product_of, lambda ans, a, b: lambda g: g * b, lambda ans, a, b: lambda g: g * a)
    with pytest.raises(ValueError, match=r"primitive: expected _product_of's VJP for `b`.*\(2,\)"):
        check_vjp(_product_of, np.ones((3, 2)), np.full(2, 0.5))


def test_check_vjp_says_which_arguments_it_skipped():
    a = np.array([0.5, -1.0, 2.0])
    defvjp(
        _product_of,
        lambda ans, a, b: lambda g: g * b,
        lambda ans, a, b: lambda g: g * a * np.array([1, 1.01, 1]),  # wrong, but b is integer
    )
    report = check_vjp(_product_of, a, np.array([1, 2, 3]))
    assert report.passed and "not checked: `b` (its values are int64" in repr(report)
    report = check_vjp(_product_of, a, np.array([1.0, 2.0, 3.0]))  # as floats: checked, wrong
    assert not report.passed and report.worst == "∂_product_of[1]/∂`b`[1]"
    x = np.array([[0.0, 1.0]])
    report = check_vjp(kernels.bernoulli_log_terms, x, np.array([[0.3, -2.0]]))
    assert "not checked: `x` (its VJP is None" in repr(report)


def test_an_unwritten_gradient_stays_not_implemented():
    """A lesson's unsolved exercise (``raise NotImplementedError``) is reported as unsolved, not
    as a wrong function; autograd's own missing derivative is still a ValueError."""

    def unwritten(x):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not written yet"):
        iw.gradcheck(lambda x: np.sum(x**2), np.ones(3), grad=unwritten)
    with pytest.raises(NotImplementedError, match="not written yet"):
        iw.gradcheck(unwritten, np.ones(3))

    @primitive
    def no_vjp(x):
        return x * 2.0

    with pytest.raises(ValueError, match="autograd has no derivative"):
        iw.gradcheck(lambda x: np.sum(no_vjp(x)), np.ones(3))
