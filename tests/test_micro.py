"""MicroDynamicsEstimator: layouts, learning, curriculum, frozen parts, sklearn rules, pickling.

Its predict side (rollouts, draws, encode/decode, score) is tested in test_prediction.py and test_rollout.py."""

import numpy as np
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks as ec

from skmld import MicroDynamicsEstimator, PatchTokenizer, as_fields
from skmld import _engine
from skmld.exceptions import DivergenceError

TINY = dict(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, decoupled_epochs=1, coupled_epochs=1,
            batch_size=8, random_state=0)
# Enough training for every stage to learn on 3 tiny samples; the multi-step term is
# down-weighted because with a barely trained tiny VAE it is mostly sampling noise.
LEARNING = dict(filters=4, dynamics_filters=4, horizons=(1, 2), vae_epochs=10, decoupled_epochs=4, coupled_epochs=4,
                learning_rate=3e-3, batch_size=2, multistep_weight=0.1, random_state=0)


def weights(models: dict) -> dict:
    return {k: [w.copy() for w in m.get_weights()] for k, m in models.items()}


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# -- layouts --------------------------------------------------------------------------
def test_predict_tokens_layout(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X)
    pred = micro_pipe.predict(micro_X)
    assert pred.dims == tokens.dims and pred.shape == tokens.shape
    for c in ("sample", "time", "field"):
        np.testing.assert_array_equal(pred[c].values, tokens[c].values)
    assert pred.attrs["skmld_fields"] == tokens.attrs["skmld_fields"]
    fields = micro_pipe["tokens"].inverse_transform(pred)
    assert isinstance(fields, xr.Dataset) and fields["temperature"].shape == micro_X["temperature"].shape
    assert np.isfinite(pred.values).all()


def test_plain_fields_one_token_per_sample(micro_T_only):
    tokens = PatchTokenizer().fit_transform(micro_T_only)
    plain = xr.DataArray(tokens.isel(token_y=0, token_x=0).values, dims=("sample", "time", "field", "y", "x"),
                         coords={"sample": tokens["sample"], "time": tokens["time"], "field": tokens["field"]})
    # A VAE and a dynamics stage, each validated; the decoupled stage would add nothing here.
    est = MicroDynamicsEstimator(**{**TINY, "decoupled_epochs": 0, "validation_fraction": 0.34}).fit(plain)
    assert all("val_loss" in r and np.isfinite(r["val_loss"]) for r in est.history_)
    pred = est.predict(plain)
    assert pred.dims == ("sample", "time", "field", "y", "x") and pred.shape == plain.shape
    assert est.token_shape_ == (32, 64) and est.ranges_ is None
    assert "token_y" not in est.encode(plain)["z_mean"].dims
    # Unscaled physical fields are accepted but warned about.
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        MicroDynamicsEstimator(**{**TINY, "vae_epochs": 0, "decoupled_epochs": 0, "coupled_epochs": 0}).fit(
            as_fields(micro_T_only).isel(x=slice(0, 32)))


# -- learning ----------------------------------------------------------------------------
# Two fits, run side by side on two workers: the VAE and decoupled stages, and the coupled stage
# alone (its VAE and decoupled networks untrained, so only that each stays untouched is checked).
VAE_AND_DECOUPLED = {**LEARNING, "coupled_epochs": 0}
COUPLED_ONLY = {**LEARNING, "vae_epochs": 0, "decoupled_epochs": 0}


def _recorded_fit(X, params):
    """A fit with a snapshot of every network at the start and at the end of each dynamics horizon."""
    import warnings

    from skmld._trainer import Trainer

    snapshots, ends = [], []
    original, run_horizon = _engine.make_dynamics_step, Trainer.run_horizon

    def recording(nets, **kwargs):
        snapshots.append((kwargs["coupled"], kwargs["horizon"], weights(nets.models)))
        return original(nets, **kwargs)

    def run_and_record(self, index, stage, h_index, *args, **kwargs):
        run_horizon(self, index, stage, h_index, *args, **kwargs)
        ends.append((stage.name, stage.horizons[h_index], weights(self.estimator._networks.models)))

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "After the VAE stage", UserWarning)  # no VAE epoch in COUPLED_ONLY
        mp.setattr(_engine, "make_dynamics_step", recording)
        mp.setattr(Trainer, "run_horizon", run_and_record)
        pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", MicroDynamicsEstimator(**params))]).fit(X)
    return pipe, snapshots, ends


# One field: every stage's networks learn the same way as with three, at half the cost.
@pytest.fixture(scope="session")  # session: kept while the worker runs other modules' tests in between
def decoupled_fit(micro_T_only):
    return _recorded_fit(micro_T_only, VAE_AND_DECOUPLED)


@pytest.fixture(scope="session")
def coupled_fit(micro_T_only):
    return _recorded_fit(micro_T_only, COUPLED_ONLY)


def _losses_by_stage_and_horizon(history) -> dict:
    runs = {}
    for r in history:
        runs.setdefault((r["stage"], r["horizon"]), []).append(r["loss"])
    return runs


@pytest.mark.traced
@pytest.mark.xdist_group("micro_decoupled_fit")
def test_vae_and_decoupled_stages_reduce_training_loss(decoupled_fit):
    runs = _losses_by_stage_and_horizon(decoupled_fit[0]["micro"].history_)
    assert set(runs) == {("vae", 0), ("decoupled", 1), ("decoupled", 2)}
    for key, losses in runs.items():
        assert losses[-1] < losses[0], f"{key}: loss went from {losses[0]} to {losses[-1]}"


@pytest.mark.traced
@pytest.mark.xdist_group("micro_coupled_fit")
def test_coupled_stage_reduces_training_loss(coupled_fit):
    runs = _losses_by_stage_and_horizon(coupled_fit[0]["micro"].history_)
    assert set(runs) == {("coupled", 1), ("coupled", 2)}
    for key, losses in runs.items():
        assert losses[-1] < losses[0], f"{key}: loss went from {losses[0]} to {losses[-1]}"


@pytest.mark.traced
@pytest.mark.xdist_group("micro_decoupled_fit")
def test_vae_frozen_through_the_decoupled_stage(decoupled_fit):
    pipe, snapshots, _ = decoupled_fit
    final = weights(pipe["micro"]._networks.models)
    vae = [k for k in final if k.startswith(("encoder", "decoder"))]
    assert vae and len(snapshots) == 2
    for _, _, snap in snapshots:
        for k in vae:
            assert_same(snap[k], final[k])
    # ... while the stage's own networks did change.
    decoupled = [k for k in final if k.startswith("decoupled")]
    assert any(not np.array_equal(a, b) for k in decoupled for a, b in zip(snapshots[0][2][k], final[k]))


@pytest.mark.traced
@pytest.mark.xdist_group("micro_coupled_fit")
def test_vae_and_decoupled_frozen_through_the_coupled_stage(coupled_fit):
    pipe, snapshots, _ = coupled_fit
    final = weights(pipe["micro"]._networks.models)
    frozen = [k for k in final if k.startswith(("encoder", "decoder", "decoupled"))]
    assert frozen and [c for c, _, _ in snapshots] == [True, True]
    for _, _, snap in snapshots:
        for k in frozen:
            assert_same(snap[k], final[k])
    # ... while the stage's own networks did change.
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots[0][2]["coupled_mean"], final["coupled_mean"]))


@pytest.mark.traced
@pytest.mark.xdist_group("micro_decoupled_fit")
def test_curriculum_warm_starts(decoupled_fit):
    """Horizon 2 starts from the weights horizon 1 ended with, not from fresh ones."""
    _, snapshots, ends = decoupled_fit
    start_h2 = next(s for c, h, s in snapshots if not c and h == 2)
    after_h1 = next(s for name, h, s in ends if name == "decoupled" and h == 1)
    start_h1 = next(s for c, h, s in snapshots if not c and h == 1)
    decoupled = [k for k in after_h1 if k.startswith("decoupled")]
    for k in decoupled:
        assert_same(start_h2[k], after_h1[k])
    # ... and horizon 1 did train them, so the equality is not that of untouched weights.
    assert any(not np.array_equal(a, b) for k in decoupled for a, b in zip(start_h1[k], after_h1[k]))


def test_reproducible_with_random_state(micro_pipe, micro_X):
    again = clone(micro_pipe).fit(micro_X)
    assert again["micro"].history_ == micro_pipe["micro"].history_
    np.testing.assert_array_equal(again.predict(micro_X).values, micro_pipe.predict(micro_X).values)


# -- sklearn rules -------------------------------------------------------------------
def test_clone_is_unfitted_with_equal_params(micro_pipe):
    est = clone(micro_pipe["micro"])
    assert est.get_params() == micro_pipe["micro"].get_params()
    with pytest.raises(NotFittedError):
        est.predict(None)


# sklearn's estimator checks that apply to a non-tabular, self-supervised estimator.
# Not applicable (they feed 2-D numpy arrays / targets): check_estimators_unfitted,
# check_fit2d_*, check_n_features_in*, check_dont_overwrite_parameters,
# check_estimators_pickle, check_fit_idempotent, check_methods_*, check_dict_unchanged —
# their intent is covered on field data by the tests in this file (NotFittedError,
# reproducibility, pickling, parameters untouched by fit).
@pytest.mark.parametrize(
    "check",
    [ec.check_no_attributes_set_in_init, ec.check_parameters_default_constructible,
     ec.check_get_params_invariance, ec.check_set_params, ec.check_estimator_cloneable,
     ec.check_estimator_repr, ec.check_do_not_raise_errors_in_init_or_set_params],
    ids=lambda c: c.__name__,
)
def test_sklearn_checks(check):
    check("MicroDynamicsEstimator", MicroDynamicsEstimator())


def test_fit_does_not_change_params(micro_pipe):
    assert micro_pipe["micro"].get_params() == MicroDynamicsEstimator(**TINY).get_params()


# -- errors -------------------------------------------------------------------------------
def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        MicroDynamicsEstimator().predict(None)


def test_field_mismatch(micro_pipe, micro_X):
    other = PatchTokenizer(patch_size=32).fit_transform(micro_X[["temperature", "pressure"]])
    with pytest.raises(ValueError, match=r"missing: \['microstructure'\]"):
        micro_pipe["micro"].predict(other)


def test_token_shape_mismatch(micro_pipe, micro_X):
    other = PatchTokenizer(patch_size=(32, 64)).fit_transform(micro_X)
    with pytest.raises(ValueError, match=r"token shape \(32, 64\).*\(32, 32\)"):
        micro_pipe["micro"].predict(other)


@pytest.mark.parametrize("params, match", [
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"dynamics": "lstm"}, "dynamics"),
    ({"horizons": (2, 1)}, "horizons"),
    ({"decoupled_epochs": (1, 2)}, "decoupled_epochs has 2 entries"),
])
def test_bad_parameters_at_fit(micro_pipe, micro_X, params, match):
    tokens = micro_pipe["tokens"].transform(micro_X)
    est = MicroDynamicsEstimator(**{**TINY, **params})  # __init__ validates nothing
    with pytest.raises(ValueError, match=match):
        est.fit(tokens)


def test_horizon_longer_than_data(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X).isel(time=slice(0, 2))
    with pytest.raises(ValueError, match="too few for horizon 2"):
        MicroDynamicsEstimator(**{**TINY, "horizons": (1, 2)}).fit(tokens)


def test_nan_in_tokens_is_named(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X).copy()
    tokens[1, 2, 0, 0, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="field temperature, sample index 1, time index 2"):
        micro_pipe["micro"].predict(tokens)


def test_divergence_keeps_last_good_weights(micro_T_only):
    tokens = PatchTokenizer(patch_size=32).fit_transform(micro_T_only)
    est = MicroDynamicsEstimator(**{**TINY, "vae_epochs": 2, "learning_rate": 1e30})
    with pytest.raises(DivergenceError, match="stage 'vae', horizon 0, epoch") as info:
        est.fit(tokens)
    assert isinstance(info.value, FloatingPointError)
    for m in est._networks.models.values():
        assert all(np.isfinite(w).all() for w in m.get_weights())


# -- pickling ---------------------------------------------------------------------------
def test_pickle_round_trip_in_fresh_process(micro_pipe, micro_X, predict_in_fresh_process):
    tokens = micro_pipe["tokens"].transform(micro_X)
    np.testing.assert_array_equal(predict_in_fresh_process(micro_pipe["micro"], tokens),
                                  micro_pipe["micro"].predict(tokens).values)



def test_restore_on_divergence_retries_with_halved_rate(micro_T_only, caplog):
    tokens = PatchTokenizer(patch_size=32).fit_transform(micro_T_only)
    est = MicroDynamicsEstimator(**{**TINY, "learning_rate": 1e30, "on_divergence": "restore"})
    with caplog.at_level("WARNING", logger="skmld"), pytest.raises(DivergenceError):
        est.fit(tokens)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3 and "learning rate 5e+29" in retries[0] and "1.25e+29" in retries[2]


# bfloat16 keeps 8 significant bits (a relative rounding of 2**-9 per operation): a bf16 fit of the same
# model on the same data tracks the float32 one to about a percent, and differs from it.
BF16_RTOL = 1e-2


def test_mixed_bfloat16_on_cpu(micro_pipe, micro_X):
    # The float32 twin is the session's micro_pipe: the same parameters, data and seed.
    est = MicroDynamicsEstimator(**{**TINY, "precision": "mixed_bfloat16", "device": "cpu"})
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)]).fit(micro_X)
    # The first layer after the (float32) standardisation is the first convolution.
    conv = next(layer for layer in est._networks.models["encoder/temperature"].layers if "conv" in layer.name)
    assert conv.compute_dtype == "bfloat16"
    losses = [r["loss"] for r in est.history_]
    reference = [r["loss"] for r in micro_pipe["micro"].history_]
    np.testing.assert_allclose(losses, reference, rtol=BF16_RTOL)
    assert losses != reference  # computed in bfloat16, not float32
    pred = pipe.predict(micro_X)
    assert pred.dtype == np.float32
    # Scaled fields lie in [0, 1]: a percent of that range.
    np.testing.assert_allclose(pred.values, micro_pipe.predict(micro_X).values, rtol=0, atol=BF16_RTOL)


# XLA compiles each training step for tens of seconds: the VAE step (with the rollouts) and the
# dynamics step are compiled in two tests, which can run side by side, for one field.
@pytest.mark.traced
def test_xla_vae_training_step_and_rollout(micro_T_only):
    est = MicroDynamicsEstimator(**{**TINY, "decoupled_epochs": 0, "coupled_epochs": 0, "jit_compile": True})
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)]).fit(micro_T_only)
    assert [r["stage"] for r in est.history_] == ["vae"] and np.isfinite(est.history_[0]["loss"])
    mean, std = pipe["micro"].predict(pipe["tokens"].transform(micro_T_only), n_steps=5, return_std=True, n_draws=2)
    assert mean.sizes["time"] == 6 and np.isfinite(mean.values).all() and (std.values > 0).any()


@pytest.mark.traced
def test_xla_dynamics_training_step(micro_T_only):
    est = MicroDynamicsEstimator(**{**TINY, "vae_epochs": 0, "coupled_epochs": 0, "jit_compile": True})
    with pytest.warns(UserWarning, match="not clearly better"):  # no VAE epoch
        est.fit(PatchTokenizer(patch_size=32).fit_transform(micro_T_only))
    assert [r["stage"] for r in est.history_] == ["decoupled"] and np.isfinite(est.history_[0]["loss"])


def _xla_compiles_bf16_unet_gradients() -> bool:
    """Whether XLA on this device compiles the gradients of a mixed-bfloat16 U-Net (the dynamics networks)."""
    import keras
    import tensorflow as tf

    from skmld.nn.dynamics import build_unet

    net = build_unet(4, 4, 2, dtype=keras.DTypePolicy("mixed_bfloat16"), name="probe")

    @tf.function(jit_compile=True)
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(net(x, training=True), tf.float32))
        return tape.gradient(loss, net.trainable_variables)

    try:
        gradients(tf.ones((1, 4, 4, 4)))
    except tf.errors.InternalError as e:
        if "mixed precision is disallowed" in str(e):
            return False
        raise
    return True


@pytest.mark.traced
def test_xla_with_bfloat16_fits_or_names_the_limitation(micro_T_only):
    # XLA's CPU backend (TensorFlow 2.21) cannot compile the U-Nets' bf16 max-pool gradients: where a
    # probe of that op fails, the fit must say which parameters to change, not fail with an XLA dump;
    # where it compiles, the fit must succeed.
    est = MicroDynamicsEstimator(**{**TINY, "vae_epochs": 0, "precision": "mixed_bfloat16", "jit_compile": True})
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", est)])
    if _xla_compiles_bf16_unet_gradients():
        with pytest.warns(UserWarning, match="not clearly better"):  # no VAE epoch
            pipe.fit(micro_T_only)
        assert [r["stage"] for r in est.history_] == ["decoupled", "coupled"]
        assert np.isfinite(pipe.predict(micro_T_only).values).all()
    else:
        with pytest.raises(ValueError, match=r"jit_compile=True with precision='mixed_bfloat16'.* decoupled "
                                             r"training step .*MaxPoolGrad.*Use jit_compile=False"):
            pipe.fit(micro_T_only)


def test_gradient_chunk_size_gives_the_fit_of_whole_batches(micro_T_only, monkeypatch):
    # One field. 6 tokens: 24 frames (batches 8, 8, 8), then 18 windows (8, 8, 2) per epoch, in chunks of 3 rows;
    # Adam steps between the batches, so later batches see the updates of earlier ones.
    chunks = []
    original = _engine._chunked

    def recording(gradients, chunk, *args):
        chunks.append(chunk)
        return original(gradients, chunk, *args)

    monkeypatch.setattr(_engine, "_chunked", recording)
    # The calibrated VAE loss estimates its pixel variance on each chunk's rows (documented), so
    # the equivalence holds for the summed squared error.
    params = {**TINY, "decoupled_epochs": 0, "dropout": 0.0, "vae_loss": "sse"}
    tokens = PatchTokenizer(patch_size=32).fit_transform(micro_T_only)
    whole = MicroDynamicsEstimator(**params).fit(tokens)
    assert chunks == []
    chunked = MicroDynamicsEstimator(**params, gradient_chunk_size=3).fit(tokens)
    assert chunks == [3, 3]  # the VAE and the coupled steps (the decoupled one is the same code)
    assert [(r["stage"], r["epoch"]) for r in chunked.history_] == [(r["stage"], r["epoch"]) for r in whole.history_]
    for a, b in zip(whole.history_, chunked.history_):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4, err_msg=f"{a['stage']} epoch {a['epoch']}")


def test_history_has_every_vae_term_per_field_and_channel(micro_pipe):
    est = micro_pipe["micro"]
    record = next(r for r in est.history_ if r["stage"] == "vae")
    for f in est.fields_:
        for term in ("reconstruction", "kl", "edge", "mse"):
            assert np.isfinite(record[f"{term}_{f}"])
        channels = [record[f"kl_{f}_c{k}"] for k in range(est.latent_channels)]
        assert record[f"kl_{f}"] == pytest.approx(sum(channels), rel=1e-5)
    assert record["kl"] == pytest.approx(sum(record[f"kl_{f}"] for f in est.fields_), rel=1e-5)


def test_untrained_vae_is_named_in_a_warning(micro_X):
    # No VAE epoch: every decoder outputs its field's training mean, a constant.
    params = {**TINY, "vae_epochs": 0, "decoupled_epochs": 0, "coupled_epochs": 0}
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=32)), ("micro", MicroDynamicsEstimator(**params))])
    with pytest.warns(UserWarning, match="'temperature'.*'pressure'.*'microstructure'.*not clearly better"):
        pipe.fit(micro_X)
    ratios = pipe["micro"].reconstruction_rmse_ratio_
    np.testing.assert_allclose(list(ratios.values()), 1.0, atol=1e-3)


def test_fresh_decoders_start_at_the_training_mean(micro_X):
    tokens = PatchTokenizer(patch_size=32).fit_transform(micro_X)
    est = MicroDynamicsEstimator(**{**TINY, "vae_epochs": 0, "decoupled_epochs": 0, "coupled_epochs": 0})
    with pytest.warns(UserWarning):
        est.fit(tokens)
    decoded = est.decode(est.encode(tokens))
    dims = ["sample", "time", "token_y", "token_x", "patch_y", "patch_x"]
    # Un-standardised decoder output: the mean plus a random-init term far below the field's spread.
    deviation = abs(decoded - tokens.mean(dims)).max(dims)
    assert (deviation < 0.1 * tokens.std(dims)).all(), (deviation.values, tokens.std(dims).values)
