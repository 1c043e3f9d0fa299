"""MesoDynamicsEstimator: backbone checks, frozen parts, time ratio, CV without refitting the backbone."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator, PatchTokenizer, as_fields
from skmld import _engine, persistence
from skmld.datasets import make_pore_collapse

MESO = dict(epochs=1, horizons=(1,), batch_size=8, random_state=0)


def weights(models: dict) -> dict:
    return {k: [w.copy() for w in m.get_weights()] for k, m in models.items()}


def assert_weights_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        for x, y in zip(a[k], b[k]):
            np.testing.assert_array_equal(x, y, err_msg=k)


def meso_tokenizer(micro_pipe, **overrides):
    kw = dict(patch_size=micro_pipe["tokens"].token_shape_, ranges=micro_pipe["tokens"].ranges_)
    return PatchTokenizer(**{**kw, **overrides})


def test_predict_layout_and_physical_fields(meso_pipe, meso_X):
    pred = meso_pipe.predict(meso_X)
    tokens = meso_pipe["tokens"].transform(meso_X)
    assert pred.dims == tokens.dims and pred.shape == tokens.shape
    fields = meso_pipe["tokens"].inverse_transform(pred)
    assert fields["temperature"].shape == meso_X["temperature"].shape
    assert fields["temperature"].attrs.get("units") == meso_X["temperature"].attrs["units"]
    mean, std = meso_pipe["meso"].predict(tokens, return_std=True, n_draws=3)
    np.testing.assert_array_equal(mean.values, pred.values)
    assert (std.values >= 0).all() and (std.values > 0).any()
    z = meso_pipe["meso"].encode(tokens)
    assert z["z_mean"].sizes["token_y"] == 2 and z["z_mean"].sizes["latent_y"] == 4
    assert meso_pipe["meso"].decode(z).shape == tokens.shape
    assert np.isfinite(meso_pipe.score(meso_X))


def test_grid_not_whole_tokens_is_padded(micro_pipe):
    X = make_pore_collapse("meso", 1, shape=(40, 64), n_steps=3, random_state=2)
    pipe = Pipeline([("tokens", meso_tokenizer(micro_pipe)),
                     ("meso", MesoDynamicsEstimator(micro_pipe["micro"], **{**MESO, "epochs": 0}))]).fit(X)
    back = pipe["tokens"].inverse_transform(pipe.predict(X))
    assert back["pressure"].shape == X["pressure"].shape
    np.testing.assert_array_equal(back["y"].values, X["y"].values)


def test_frozen_parts_bit_identical_and_coupled_starts_from_backbone(micro_pipe, meso_X, monkeypatch):
    backbone = micro_pipe["micro"]
    before = weights(backbone._networks.models)
    starts = []
    original = _engine.make_dynamics_step

    def recording(nets, **kwargs):
        starts.append(weights({k: nets.models[k] for k in _engine.COUPLED}))
        return original(nets, **kwargs)

    monkeypatch.setattr(_engine, "make_dynamics_step", recording)
    meso = MesoDynamicsEstimator(backbone, freeze=("vae", "decoupled"), **{**MESO, "epochs": 2, "learning_rate": 1e-3})
    meso.fit(meso_tokenizer(micro_pipe).fit_transform(meso_X))
    assert_weights_equal(weights(backbone._networks.models), before)  # backbone untouched
    assert_weights_equal(starts[0], {k: before[k] for k in _engine.COUPLED})
    ours = meso._networks.models
    for name, model in ours.items():
        if name in _engine.COUPLED:
            assert model is not backbone._networks.models[name]
            assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), before[name]))
        else:  # frozen parts are the backbone's own networks
            assert model is backbone._networks.models[name]


def test_unfrozen_decoupled_trains_a_copy(micro_pipe, meso_X):
    backbone = micro_pipe["micro"]
    before = weights(backbone._networks.models)
    meso = MesoDynamicsEstimator(backbone, freeze=("vae",), **{**MESO, "learning_rate": 1e-3})
    meso.fit(meso_tokenizer(micro_pipe).fit_transform(meso_X))
    assert_weights_equal(weights(backbone._networks.models), before)
    name = f"decoupled_mean/{backbone.fields_[0]}"
    assert meso._networks.models[name] is not backbone._networks.models[name]


def test_time_ratio_applies_micro_step_twice(micro_pipe, meso_X):
    """Untrained meso (epochs=0): one meso step is exactly two backbone micro steps."""
    backbone = micro_pipe["micro"]
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    meso = MesoDynamicsEstimator(backbone, time_ratio=2, **{**MESO, "epochs": 0}).fit(tokens)
    x, _ = meso._to_arrays(tokens)
    _, _, z_mean, z_log_var = meso._rollout_block(x[:, 0], 1, 0, 0)
    zm, zv = backbone._networks.encode(x[:, 0])
    step = backbone._networks.stepper()
    lo, hi = meso._latent_limits()  # each micro step's latents within the training latents' range
    for _ in range(2):
        zm, zv = step(zm, zv)
        zm = np.clip(zm, lo, hi)
    np.testing.assert_allclose(z_mean[:, 1], np.asarray(zm), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z_log_var[:, 1], np.asarray(zv), rtol=1e-5, atol=1e-5)
    # time_ratio=1 needs meso data at the micro time step (2 ns, not 4 ns).
    once = MesoDynamicsEstimator(backbone, time_ratio=1, **{**MESO, "epochs": 0}).fit(
        tokens.assign_coords(time=tokens["time"] / 2))
    assert not np.allclose(once._rollout_block(x[:, 0], 1, 0, 0)[2][:, 1], z_mean[:, 1])


# -- mismatches with the backbone --------------------------------------------------------
def test_token_shape_mismatch(micro_pipe, meso_X):
    tokens = meso_tokenizer(micro_pipe, patch_size=64).fit_transform(meso_X)
    with pytest.raises(ValueError, match=r"token shape \(64, 64\).*backbone has token shape \(32, 32\)"):
        MesoDynamicsEstimator(micro_pipe["micro"], **MESO).fit(tokens)


def test_field_mismatch(micro_pipe, meso_X):
    X = meso_X[["temperature", "pressure"]]
    tokens = PatchTokenizer(patch_size=32, ranges={k: micro_pipe["tokens"].ranges_[k] for k in X}).fit_transform(X)
    with pytest.raises(ValueError, match=r"fields \['temperature', 'pressure'\].*backbone was fitted on"):
        MesoDynamicsEstimator(micro_pipe["micro"], **MESO).fit(tokens)


def test_range_mismatch(micro_pipe, meso_X):
    tokens = PatchTokenizer(patch_size=32).fit_transform(meso_X)  # meso's own ranges
    with pytest.raises(ValueError, match=r"scaled with ranges.*ranges=micro_pipeline\['tokens'\].ranges_"):
        MesoDynamicsEstimator(micro_pipe["micro"], **MESO).fit(tokens)


def test_scale_mismatches_are_named_in_one_error(micro_pipe, meso_X):
    """Another grid spacing, another unit and another time step: one error, one line per difference."""
    X = meso_X.assign_coords(x=meso_X["x"] * 2, time=meso_X["time"] * 1.25)  # dx 2 µm, dt 5 ns
    X["temperature"].attrs["units"] = "degC"
    tokens = meso_tokenizer(micro_pipe).fit_transform(X)  # the documented meso tokenizer accepts it
    with pytest.raises(ValueError, match="do not match the backbone's micro data") as info:
        MesoDynamicsEstimator(micro_pipe["micro"], **MESO).fit(tokens)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 3, lines
    assert lines[0] == "- field 'temperature' is in 'degC' in the meso data but in 'K' in the backbone's."
    assert lines[1].startswith("- the grid spacing along 'x' is 2 in the meso data but 1 in the backbone's;")
    assert lines[2].startswith("- the time step is 5 in the meso data but 2 in the backbone's, a ratio of 2.5; "
                               "time_ratio='auto' needs a whole number")


def test_micro_and_meso_record_their_scales(micro_pipe, meso_pipe):
    micro, meso = micro_pipe["micro"], meso_pipe["meso"]
    assert micro.units_ == {"temperature": "K", "pressure": "GPa", "microstructure": "1"} == meso.units_
    assert micro.spacing_ == (1.0, 1.0) == meso.spacing_
    assert (micro.time_step_, meso.time_step_, meso.time_ratio) == (2.0, 4.0, "auto")
    assert meso.time_ratio_ == 2 and meso._time_ratio == 2


@pytest.mark.parametrize("factor, ratio", [(0.5, 1), (1.5, 3)])
def test_time_ratio_auto_is_derived(micro_pipe, meso_X, factor, ratio):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    tokens = tokens.assign_coords(time=tokens["time"] * factor)  # 2 ns, 6 ns
    meso = MesoDynamicsEstimator(micro_pipe["micro"], **{**MESO, "epochs": 0}).fit(tokens)
    assert meso.time_ratio_ == ratio


@pytest.mark.parametrize("factor, match", [
    (0.75, r"time step is 3 in the meso data but 2 in the backbone's, a ratio of 1\.5; time_ratio='auto' needs a "
           r"whole number of micro steps per meso step \(1 to 100\)"),
    (0.25, r"a ratio of 0\.5;"),
])
def test_time_ratio_auto_not_whole(micro_pipe, meso_X, factor, match):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    with pytest.raises(ValueError, match=match):
        MesoDynamicsEstimator(micro_pipe["micro"], **MESO).fit(tokens.assign_coords(time=tokens["time"] * factor))


def test_explicit_time_ratio_is_checked(micro_pipe, meso_X):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    with pytest.raises(ValueError, match=r"time step is 4 in the meso data but 2 in the backbone's, and "
                                         r"time_ratio=3 needs 6; pass time_ratio='auto'"):
        MesoDynamicsEstimator(micro_pipe["micro"], time_ratio=3, **MESO).fit(tokens)
    meso = MesoDynamicsEstimator(micro_pipe["micro"], time_ratio=2, **{**MESO, "epochs": 0}).fit(tokens)
    assert meso.time_ratio_ == 2


def test_time_ratio_auto_without_time_steps_warns_and_uses_2(micro_pipe, meso_X, recwarn):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    backbone = micro_pipe["micro"]
    with pytest.warns(UserWarning, match=r"time_ratio='auto' cannot compare time steps: the meso data have no "
                                         r"numeric time coordinate .* using time_ratio=2"):
        meso = MesoDynamicsEstimator(backbone, **{**MESO, "epochs": 0}).fit(tokens.drop_vars("time"))
    assert meso.time_ratio_ == 2 and meso.time_step_ is None
    # A backbone pickled before skmld recorded the scales: nothing to compare, as before.
    old = pickle.loads(pickle.dumps(backbone))
    for name in ("units_", "spacing_", "time_step_"):
        delattr(old, name)
    with pytest.warns(UserWarning, match="the backbone has no numeric time coordinate"):
        assert MesoDynamicsEstimator(old, **{**MESO, "epochs": 0}).fit(tokens).time_ratio_ == 2
    recwarn.clear()
    assert MesoDynamicsEstimator(old, time_ratio=2, **{**MESO, "epochs": 0}).fit(tokens).time_ratio_ == 2
    assert not [w for w in recwarn if "time_ratio" in str(w.message)]


def test_estimators_saved_before_the_scales_load_and_predict_alike(meso_pipe, meso_X, tmp_path):
    """Pickles and files of meso estimators fitted with an int time_ratio and no time_ratio_ still predict."""
    meso, tokens = meso_pipe["meso"], meso_pipe["tokens"].transform(meso_X)
    state = meso.__getstate__()
    for name in ("units_", "spacing_", "time_step_", "time_ratio_"):
        state.pop(name)
    old = MesoDynamicsEstimator.__new__(MesoDynamicsEstimator)
    old.__setstate__({**state, "time_ratio": 2})
    assert old._time_ratio == 2
    np.testing.assert_array_equal(old.predict(tokens).values, meso.predict(tokens).values)
    persistence.save(meso_pipe, tmp_path / "meso.skmld")
    loaded = persistence.load(tmp_path / "meso.skmld")["meso"]
    assert (loaded.time_ratio, loaded.time_ratio_, loaded.spacing_, loaded.backbone.time_step_) == ("auto", 2,
                                                                                                    (1.0, 1.0), 2.0)
    assert MesoDynamicsEstimator._state_problem({**state, "time_ratio_": 0}) == (
        "fitted attribute 'time_ratio_' must be a positive int, got int 0.")
    assert MesoDynamicsEstimator._state_problem({**state, "spacing_": (1.0, -1.0)}) == (
        "fitted attribute 'spacing_' must be a pair (y, x) of positive floats or None, got tuple (1.0, -1.0).")


def test_latent_channels_mismatch(micro_pipe, meso_X):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    with pytest.raises(ValueError, match=r"latent_channels=8 but the backbone has latent_channels=4"):
        MesoDynamicsEstimator(micro_pipe["micro"], latent_channels=8, **MESO).fit(tokens)


def test_unfitted_backbone(meso_X):
    tokens = PatchTokenizer(patch_size=32).fit_transform(meso_X)
    with pytest.raises(Exception, match="backbone must be a fitted"):
        MesoDynamicsEstimator(MicroDynamicsEstimator(), **MESO).fit(tokens)


@pytest.mark.parametrize("freeze", [("coupled",), {"vae": 1}])
def test_bad_freeze(micro_pipe, meso_X, freeze):
    tokens = meso_tokenizer(micro_pipe).fit_transform(meso_X)
    with pytest.raises(ValueError, match="freeze must name parts among"):
        MesoDynamicsEstimator(micro_pipe["micro"], freeze=freeze, **MESO).fit(tokens)


# -- from scratch ---------------------------------------------------------------------------
def test_from_scratch_baseline(meso_X):
    tokens = PatchTokenizer(patch_size=32).fit_transform(meso_X[["temperature"]])  # one field: half the cost
    meso = MesoDynamicsEstimator(None, filters=2, dynamics_filters=2, vae_epochs=1, decoupled_epochs=1, **MESO)
    meso.fit(tokens)
    assert [r["stage"] for r in meso.history_] == ["vae", "decoupled", "meso"]
    assert meso.predict(tokens).shape == tokens.shape
    assert meso.token_shape_ == (32, 32)


# -- model selection -------------------------------------------------------------------------
def test_clone_keeps_fitted_backbone(meso_pipe):
    cloned = clone(meso_pipe)
    assert cloned["meso"].backbone is meso_pipe["meso"].backbone
    assert not hasattr(cloned["meso"], "history_")


@pytest.mark.slow
def test_cross_val_and_grid_search_leave_backbone_unchanged(micro_pipe, meso_X):
    backbone = micro_pipe["micro"]
    before = weights(backbone._networks.models)
    X = as_fields(meso_X).isel(sample=slice(0, 2))
    pipe = Pipeline([("tokens", meso_tokenizer(micro_pipe)), ("meso", MesoDynamicsEstimator(backbone, **MESO))])
    lr = pipe.get_params()["meso__learning_rate"]
    # One split, two candidates, all fitted in this process: every clone holds this very backbone, so
    # a fit that wrote to it would show (in loky workers each fit would change a copy; the loky path
    # is tested in test_scaling.py).
    split = [(np.array([0]), np.array([1]))]
    search = GridSearchCV(pipe, {"meso__learning_rate": [lr, lr / 10]}, cv=split).fit(X)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_["meso"].backbone is backbone  # refit in this process, same backbone
    # The worker's fit at the pipeline's own learning rate scores as the same split fitted here.
    here = clone(pipe).fit(X.isel(sample=[0])).score(X.isel(sample=[1]))
    np.testing.assert_allclose(search.cv_results_["split0_test_score"][0], here, rtol=1e-5)
    assert_weights_equal(weights(backbone._networks.models), before)


def test_pickle_in_fresh_process(meso_pipe, meso_X, predict_in_fresh_process):
    np.testing.assert_array_equal(predict_in_fresh_process(meso_pipe, meso_X), meso_pipe.predict(meso_X).values)


def test_predicts_on_a_grid_twice_as_large(meso_pipe):
    """Fitted on 64 x 64, the pipeline rolls out a 128 x 128 domain: the networks are convolutional."""
    big = make_pore_collapse("meso", 1, shape=(128, 128), n_steps=3, random_state=3)
    pred = meso_pipe.predict(big)
    assert (pred.sizes["token_y"], pred.sizes["token_x"]) == (4, 4) and pred.sizes["time"] == 3
    assert np.isfinite(pred.values).all()
    back = meso_pipe["tokens"].inverse_transform(pred)
    assert back["temperature"].shape == big["temperature"].shape
    for d in ("y", "x"):
        np.testing.assert_allclose(back[d].values, big[d].values)
        assert back[d].attrs == big[d].attrs
    assert np.isfinite(meso_pipe.score(big))
