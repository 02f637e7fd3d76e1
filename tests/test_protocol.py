"""The model protocol (the docstring of iwae_np/models.py), kept by both models.

Every protocol method runs on a VAE and on a TwoLayerVAE with the shapes the protocol states, and
every function that takes a model either works with both or refuses with a ValueError that names
the model. The STL and DReG estimators on two layers are checked against their definitions.
"""

import numpy as np
import pytest

import iwae_np as iw
from iwae_np import checkpoint, estimators, evaluate, gaps, semi_amortized, vi
from iwae_np.app import cli, experiments, tables
from iwae_np.train import TrainResult, train

X_DIM, N = 6, 4
KINDS = ("VAE", "TwoLayerVAE")


def make_model(kind, h1=3, h2=2):
    if kind == "VAE":
        return iw.VAE(X_DIM, h1, hidden=(5,))
    return iw.TwoLayerVAE(X_DIM, h1, h2, hidden1=(5,), hidden2=(4,))


def data_for(model, n=N, seed=0):
    return (np.random.default_rng(seed).random((n, model.x_dim)) < 0.5) * 1.0


@pytest.fixture(scope="module", params=KINDS)
def case(request):
    model = make_model(request.param)
    x = data_for(model)
    theta = model.init(0, x=x)
    theta += 0.1 * np.random.default_rng(1).normal(size=theta.shape)  # σ ≠ 1 in every layer
    return model, theta, x


def refused(call, model):
    """``call()`` must raise a ValueError whose message names the model's class."""
    with pytest.raises(ValueError) as error:
        call()
    assert type(model).__name__ in str(error.value), str(error.value)
    return str(error.value)


# ------------------------------------------------------------------ the protocol's methods


def test_sizes():
    vae, two = make_model("VAE"), make_model("TwoLayerVAE")
    assert (vae.layer_dims, vae.z_dim, vae.eps_dim) == ((3,), 3, 3)
    assert (two.layer_dims, two.z_dim, two.eps_dim) == ((3, 2), 3, 5)
    assert (two.h1_dim, two.h2_dim) == (3, 2)


def test_every_protocol_method_has_the_stated_shapes(case):
    model, theta, x = case
    rng = np.random.default_rng(2)
    k, n = 7, len(x)
    assert model.init(3).shape == theta.shape == (model.layout.size,)
    assert np.any(model.layout.mask("encoder.")) and np.any(~model.layout.mask("encoder."))

    mean, log_std = model.encode(theta, x)
    assert mean.shape == log_std.shape == (n, model.z_dim)

    eps = model.draw_eps(rng, k, n)
    assert eps.shape == (k, n, model.eps_dim) and eps.dtype == model.dtype
    log_w = model.log_weights(theta, x, eps)
    assert log_w.shape == (k, n) and np.all(np.isfinite(log_w))
    # stop_q changes gradients only, never the value
    np.testing.assert_array_equal(model.log_weights(theta, x, eps, stop_q=True), log_w)

    top = model.sample_prior(rng, 5)
    assert top.shape == (5, model.layer_dims[-1])

    x_new, z = model.sample(theta, rng, 5)
    assert x_new.shape == (5, model.x_dim) and set(np.unique(x_new)) <= {0.0, 1.0}
    assert z.shape == (5, model.eps_dim)
    layers = model.split_layers(z)
    assert [layer.shape for layer in layers] == [(5, d) for d in model.layer_dims]
    np.testing.assert_array_equal(np.concatenate(layers, axis=-1), z)
    assert model.decode(theta, layers[0]).shape == (5, model.x_dim)  # decode takes layer 0
    assert model.log_joint(theta, x_new, z[None]).shape == (1, 5)

    means = model.layer_means(theta, x)
    assert [m.shape for m in means] == [(n, d) for d in model.layer_dims]
    np.testing.assert_array_equal(means[0], mean)  # layer 0's E_q is the encoder's mean


def test_decode_takes_the_layer_next_to_x():
    rng = np.random.default_rng(0)
    vae = make_model("VAE")
    theta = vae.init(0)
    # one layer: the prior's draw is what decode takes
    assert vae.decode(theta, vae.sample_prior(rng, 4)).shape == (4, X_DIM)

    two = make_model("TwoLayerVAE")
    theta = two.init(0)
    h1 = rng.standard_normal((2, 4, two.h1_dim))
    assert two.decode(theta, h1).shape == (2, 4, X_DIM)  # decode: h1 -> p(x|h1)'s logits
    # the prior draws the top layer h2, which decode does not take
    with pytest.raises(ValueError, match=r"^z: expected last dimension 3 \(the z_dim of TwoLayer"):
        two.decode(theta, two.sample_prior(rng, 4))


def test_log_joint_and_log_weights_agree(case):
    """log w = log p(x, z) − log q(z|x) at z built from ε, layer by layer."""
    import scipy.stats as st

    model, theta, x = case
    eps = model.draw_eps(np.random.default_rng(3), 5, len(x))
    eps_layers = model.split_layers(eps)
    mean1, log_std1 = model.encode(theta, x)
    z_layers = [mean1 + np.exp(log_std1) * eps_layers[0]]
    log_q = st.norm.logpdf(z_layers[0], mean1, np.exp(log_std1)).sum(-1)
    if len(model.layer_dims) == 2:  # q(h2|h1), from the network named in the layout
        out = model.encoder_h2(theta, model.layout, z_layers[0])
        mean2, log_std2 = out[..., : model.h2_dim], out[..., model.h2_dim :]
        z_layers.append(mean2 + np.exp(log_std2) * eps_layers[1])
        log_q += st.norm.logpdf(z_layers[1], mean2, np.exp(log_std2)).sum(-1)
    z = np.concatenate(z_layers, axis=-1)
    np.testing.assert_allclose(
        model.log_joint(theta, x, z) - log_q,
        model.log_weights(theta, x, eps),
        rtol=1e-12,
        atol=1e-12,
    )


def test_two_layer_log_joint_takes_the_full_latent():
    two = make_model("TwoLayerVAE")
    theta, x = two.init(0), data_for(two)
    message = refused(lambda: two.log_joint(theta, x, np.zeros((1, N, two.h1_dim))), two)
    assert message.startswith("z: expected last dimension 5")


# ------------------------------------------------------------------ gradient estimators


def test_stop_q_is_the_path_derivative(case):
    """stop_q: ∇_θ of log w with q's parameters held constant and the samples live, i.e.
    ∂/∂θ [log p_θ(x, z(θ)) − log q_θ̄(z(θ)|x)] at θ̄ = θ, where z(θ) is every layer's sample.
    For two layers q(h2|h1) must still follow h1."""
    import autograd
    import autograd.numpy as anp

    model, theta, x = case
    eps_layers = model.split_layers(model.draw_eps(np.random.default_rng(6), 3, len(x)))

    def q_layers(theta_q, h1):  # [(mean, log_std)] of each layer, layer 1 given the sample h1
        mean1, log_std1 = model.encode(theta_q, x)
        if len(model.layer_dims) == 1:
            return [(mean1, log_std1)]
        out = model.encoder_h2(theta_q, model.layout, h1)
        return [(mean1, log_std1), (out[..., : model.h2_dim], out[..., model.h2_dim :])]

    def latent(t):
        mean1, log_std1 = model.encode(t, x)
        z = [mean1 + anp.exp(log_std1) * eps_layers[0]]
        if len(model.layer_dims) == 2:
            mean2, log_std2 = q_layers(t, z[0])[1]
            z.append(mean2 + anp.exp(log_std2) * eps_layers[1])
        return z

    def path(t, theta_q):
        z = latent(t)
        log_q = sum(
            iw.normal_logpdf(layer, mean, log_std)
            for layer, (mean, log_std) in zip(z, q_layers(theta_q, z[0]), strict=True)
        )
        return anp.sum(model.log_joint(t, x, anp.concatenate(z, axis=-1)) - log_q)

    eps = np.concatenate(eps_layers, axis=-1)
    stopped = autograd.grad(lambda t: anp.sum(model.log_weights(t, x, eps, stop_q=True)))(theta)
    np.testing.assert_allclose(stopped, autograd.grad(path)(theta, theta), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", estimators.ESTIMATORS)
def test_every_estimator_runs_and_decoder_gradients_are_identical(case, estimator):
    model, theta, x = case
    eps = model.draw_eps(np.random.default_rng(4), 4, len(x))
    decoder = ~model.layout.mask("encoder.")
    grad = estimators.gradient(model, theta, x, eps, estimator, m=2)
    assert grad.shape == theta.shape and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(
        grad[decoder], estimators.gradient(model, theta, x, eps, "iwae")[decoder]
    )
    if estimator != "iwae":  # the encoder's gradient is the estimator's own
        assert np.any(grad[~decoder] != estimators.gradient(model, theta, x, eps, "iwae")[~decoder])


def test_snr_runs(case):
    model, theta, x = case
    result = estimators.snr(model, theta, x, "dreg", 3, draws=4, seed=0)
    encoder = model.layout.mask("encoder.")
    assert set(result) == {"encoder", "decoder"}
    assert 0 < len(result["encoder"]) <= encoder.sum()
    assert 0 < len(result["decoder"]) <= (~encoder).sum()


def _encoder_z_scores(model, theta, x, estimator, k, batches, replicates, seed):
    """z-scores of E[estimator − IWAE] on the encoder's parameters, from batches × replicates
    independent draws. Each batch repeats x ``replicates`` times, so one call averages that many
    independent draws of the n-point gradient; the batch means are then independent."""
    rng = np.random.default_rng(seed)
    encoder = model.layout.mask("encoder.")
    x_rep = np.tile(x, (replicates, 1))
    diffs = []
    for _ in range(batches):
        eps = model.draw_eps(rng, k, len(x_rep))
        diffs.append(
            (
                estimators.gradient(model, theta, x_rep, eps, estimator)
                - estimators.gradient(model, theta, x_rep, eps, "iwae")
            )[encoder]
        )
    diffs = np.array(diffs)
    std = diffs.std(axis=0, ddof=1)
    varies = std > 0
    assert varies.sum() > 20  # the two estimators really differ on these parameters
    return diffs.mean(axis=0)[varies] / (std[varies] / np.sqrt(batches))


@pytest.fixture(scope="module", params=KINDS)
def tiny(request):
    """A tiny model whose weights vary enough for a wrong path derivative to show."""
    model = (
        iw.VAE(X_DIM, 2, hidden=(4,))
        if request.param == "VAE"
        else iw.TwoLayerVAE(X_DIM, 2, 2, hidden1=(4,), hidden2=(4,))
    )
    rng = np.random.default_rng(0)
    x = (rng.random((3, X_DIM)) < 0.5) * 1.0
    theta = model.init(0, x=x) + rng.normal(scale=0.5, size=model.layout.size)
    return model, theta, x


def test_dreg_encoder_gradient_is_unbiased(tiny):
    """Tucker et al.: E[DReG] = E[IWAE] = ∇_φ L_k. 6000 draws at k = 10 in 60 batches; at most
    72 parameters, so under "no bias" some |z| > 4.5 has probability about 2e-3 (t, 59 d.f.).
    (For the TwoLayerVAE, stopping q(h2|h1)'s mean and σ wholesale, rather than its parameters,
    drops ∂ log q(h2|h1)/∂h1: this test then sees |z| ≈ 7.)"""
    z = _encoder_z_scores(*tiny, "dreg", k=10, batches=60, replicates=100, seed=1)
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))


def test_stl_is_unbiased_at_k_1_and_biased_above(tiny):
    """Roeder et al.: at k = 1 STL drops a score term of mean zero; for k > 1 it is biased
    (Tucker et al.)."""
    z = _encoder_z_scores(*tiny, "stl", k=1, batches=60, replicates=100, seed=2)
    assert np.max(np.abs(z)) < 4.5, np.max(np.abs(z))
    z = _encoder_z_scores(*tiny, "stl", k=10, batches=10, replicates=200, seed=3)
    assert np.max(np.abs(z)) > 10, np.max(np.abs(z))


# ------------------------------------------------------------------ evaluation


def test_log_marginal_and_expected_bound(case):
    model, theta, x = case
    log_px = evaluate.log_marginal(model, theta, x, k=200, max_rows=300)
    assert log_px.shape == (len(x),) and np.all(np.isfinite(log_px))
    elbo = evaluate.expected_bound(model, theta, x, "elbo", 1, replicates=100)
    iwae = evaluate.expected_bound(model, theta, x, "iwae", 20, replicates=10)
    assert elbo.shape == iwae.shape == (len(x),)
    assert np.all(elbo < log_px + 0.05) and iwae.mean() > elbo.mean()


def test_active_units_per_layer(case):
    model, theta, x = case
    x = data_for(model, n=50, seed=5)
    for layer, size in enumerate(model.layer_dims):
        count, variances = evaluate.active_units(model, theta, x, layer=layer)
        assert variances.shape == (size,) and 0 <= count <= size
        assert count == np.sum(np.var(model.layer_means(theta, x)[layer], axis=0) > 0.01)
    assert experiments.layer_active_units(model, theta, x) == [
        (evaluate.active_units(model, theta, x, layer=layer)[0], size)
        for layer, size in enumerate(model.layer_dims)
    ]
    message = refused(
        lambda: evaluate.active_units(model, theta, x, layer=len(model.layer_dims)), model
    )
    assert message.startswith("layer: expected a stochastic layer below")


@pytest.mark.parametrize("kind", KINDS)
def test_quadrature_over_the_full_latent(kind):
    """Quadrature of log_joint over every latent unit matches importance sampling with
    log_weights: a VAE with z_dim = 2, a TwoLayerVAE with h1_dim = h2_dim = 1."""
    model = make_model(kind, h1=2) if kind == "VAE" else make_model(kind, h1=1, h2=1)
    x = data_for(model, n=3)
    theta = model.init(0, x=x)
    exact = evaluate.log_marginal_quadrature(model, theta, x, grid=201)
    estimate = evaluate.log_marginal(model, theta, x, k=20000)
    np.testing.assert_allclose(exact, estimate, atol=0.05)
    z1, z2, density = evaluate.posterior_on_grid(model, theta, x[0], grid=41)
    assert density.shape == (41, 41)
    np.testing.assert_allclose(density.sum() * (z1[1] - z1[0]) * (z2[1] - z2[0]), 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_quadrature_refuses_more_than_two_latent_units(kind):
    model = make_model(kind)  # 3 units (VAE) or 3 + 2 (TwoLayerVAE)
    theta, x = model.init(0), data_for(model)
    message = refused(lambda: evaluate.log_marginal_quadrature(model, theta, x), model)
    assert message.startswith("model: expected a latent of at most 2 units")
    refused(lambda: evaluate.posterior_on_grid(model, theta, x[0]), model)


# ------------------------------------------------------------------ a q given per point


def test_a_given_q_works_for_the_vae():
    model = make_model("VAE")
    x = data_for(model)
    theta = model.init(0, x=x)
    lam = model.encode(theta, x)
    np.testing.assert_allclose(
        evaluate.log_marginal(model, theta, x, k=50, lam=lam),
        evaluate.log_marginal(model, theta, x, k=50),
        rtol=1e-12,
    )
    assert evaluate.expected_bound(model, theta, x, "elbo", 1, replicates=5, lam=lam).shape == (N,)
    fit = vi.fit_local(model, theta, x, steps=3, eval_replicates=5)
    assert fit.mean.shape == fit.log_std.shape == (N, model.z_dim)
    result, _ = gaps.amortization_gap(model, theta, x, steps=3, replicates=5)
    assert result["gap"].shape == (N,)
    assert gaps.inference_gaps(model, theta, x, np.zeros(N), steps=3, replicates=5)[
        "approximation_gap"
    ].shape == (N,)


def test_a_given_q_is_refused_for_two_layers():
    model = make_model("TwoLayerVAE")
    x = data_for(model)
    theta = model.init(0, x=x)
    lam = (np.zeros((N, model.z_dim)), np.zeros((N, model.z_dim)))
    eps = model.draw_eps(np.random.default_rng(0), 2, N)
    calls = {
        "log_weights_given": lambda: model.log_weights_given(theta, x, *lam, eps),
        "check_lambda": lambda: model.check_lambda(lam, N),
        "log_marginal lam": lambda: evaluate.log_marginal(model, theta, x, k=5, lam=lam),
        "expected_bound lam": lambda: evaluate.expected_bound(model, theta, x, "elbo", 1, lam=lam),
        "fit_local": lambda: vi.fit_local(model, theta, x, steps=2),
        "amortization_gap": lambda: gaps.amortization_gap(model, theta, x, steps=2),
        "inference_gaps": lambda: gaps.inference_gaps(model, theta, x, np.zeros(N), steps=2),
        "classic_vs_amortized": lambda: experiments.classic_vs_amortized(model, theta, x, steps=2),
        "refine": lambda: semi_amortized.refine(model, theta, x, eps[None], 0.1),
    }
    for name, call in calls.items():
        message = refused(call, model)
        assert message.startswith("model: expected a model with one stochastic layer"), name


# ------------------------------------------------------------------ training and checkpoints


@pytest.mark.parametrize("kind", KINDS)
def test_trainer_and_checkpoints(kind, tmp_path):
    model = make_model(kind)
    x = data_for(model, n=20)
    path = tmp_path / "model.npz"
    result = train(
        model,
        model.init(0, x=x),
        x,
        k=3,
        epochs=2,
        batch_size=10,
        lr=1e-2,
        checkpoint=path,
        progress=False,
    )
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["train_bound"])
    loaded, theta, metadata = checkpoint.load_model(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    assert loaded.layout.to_dict() == model.layout.to_dict() and metadata["epoch"] == 2
    np.testing.assert_array_equal(theta, result.theta)
    # resuming continues exactly where an uninterrupted run would be
    resumed = train(
        model,
        model.init(0, x=x),
        x,
        k=3,
        epochs=3,
        batch_size=10,
        lr=1e-2,
        checkpoint=path,
        resume=True,
        progress=False,
    )
    straight = train(
        model, model.init(0, x=x), x, k=3, epochs=3, batch_size=10, lr=1e-2, progress=False
    )
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    # encoder-only training leaves all of p alone, every layer of it
    theta0 = model.init(0, x=x)
    encoder_only = train(
        model, theta0, x, k=3, epochs=1, batch_size=10, update="encoder", progress=False
    ).theta
    decoder = ~model.layout.mask("encoder.")
    np.testing.assert_array_equal(encoder_only[decoder], theta0[decoder])
    assert np.any(encoder_only[~decoder] != theta0[~decoder])


def test_trainer_refuses_a_semi_amortized_objective_for_two_layers():
    model = make_model("TwoLayerVAE")
    x = data_for(model, n=10)
    refused(
        lambda: train(
            model,
            model.init(0, x=x),
            x,
            objective=semi_amortized.sa_elbo(1),
            k=1,
            epochs=1,
            progress=False,
        ),
        model,
    )


# ------------------------------------------------------------------ the command line's tables


def test_active_units_text_is_one_count_per_layer_over_its_size():
    assert tables.active_units_text([(7, 10)]) == "7/10"
    assert tables.active_units_text([(3, 4), (1, 2)]) == "h1 3/4, h2 1/2"


def test_family_table_for_both_models():
    x = data_for(make_model("VAE"), n=30)
    trained = {}
    for kind in KINDS:
        model = make_model(kind)
        trained[kind] = (model, TrainResult(model.init(0, x=x), [], 1.0))
    rows = experiments.evaluate_family(trained, x, k_eval=20, progress=False)
    assert [len(row["layer_units"]) for row in rows] == [1, 2]
    assert [size for _, size in rows[1]["layer_units"]] == [3, 2]
    assert all(row["active_units"] == row["layer_units"][0][0] for row in rows)
    text = tables.family_table(rows, 20)
    lines = text.splitlines()
    assert "test log p(x), k=20" in lines[0] and "active units" in lines[0]
    assert lines[2].split(" | ")[4].strip() == tables.active_units_text(rows[0]["layer_units"])
    assert lines[3].split(" | ")[4].strip() == tables.active_units_text(rows[1]["layer_units"])
    assert experiments.format_table is tables.format_table  # lessons 05 and 09 call it there


@pytest.mark.parametrize("kind", KINDS)
def test_cli_evaluate_prints_active_units_per_layer(kind, tmp_path, capsys):
    data = iw.data.load("bars", seed=0)  # what the command loads: 64 pixels
    model = (
        iw.VAE(data.x_dim, 4, hidden=(8,))
        if kind == "VAE"
        else iw.TwoLayerVAE(data.x_dim, 4, 2, hidden1=(8,), hidden2=(4,))
    )
    path = tmp_path / "model.npz"
    checkpoint.save(path, model, {"theta": model.init(0, x=data.x_train)}, {"epoch": 0})
    args = cli.build_parser().parse_args(
        ["evaluate", "--checkpoint", str(path), "--quiet", "--points", "20", "--k", "10"]
    )
    assert cli.run_evaluate(args) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    units = line.split("active units: ")[1]
    if kind == "VAE":
        assert units.endswith("/4") and "," not in units
    else:
        h1, h2 = units.split(", ")
        assert h1.startswith("h1 ") and h1.endswith("/4")
        assert h2.startswith("h2 ") and h2.endswith("/2")


def test_two_layer_ancestral_samples_follow_the_model(assert_normal_sample):
    """h2 ~ N(0, I); h1 | h2 ~ N(μ(h2), σ(h2)²) from the p(h1|h2) network; x | h1 ~ Bern(σ(ℓ))."""
    model = iw.TwoLayerVAE(X_DIM, 3, 2, hidden1=(5,), hidden2=(4,))
    theta = model.init(1) + 0.3 * np.random.default_rng(2).standard_normal(model.layout.size)
    n = 20000
    x, z = model.sample(theta, np.random.default_rng(3), n)
    h1, h2 = model.split_layers(z)
    assert_normal_sample(h2, np.zeros(2), np.ones(2))
    prior = model.decoder_h1(theta, model.layout, h2)
    mean1, log_std1 = prior[:, : model.h1_dim], prior[:, model.h1_dim :]
    assert_normal_sample((h1 - mean1) / np.exp(log_std1), np.zeros(3), np.ones(3))
    p = iw.sigmoid(model.decode(theta, h1))
    residual = (x - p) / np.sqrt(p * (1 - p))  # standardized Bernoulli residuals: mean 0, var 1
    assert np.all(np.abs(residual.mean(axis=0)) < 5 / np.sqrt(n))
    assert np.all(np.abs(residual.var(axis=0) - 1) < 0.1)
