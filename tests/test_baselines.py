"""Persistence and climatology baselines: predictions, scores, sklearn behaviour (no TensorFlow)."""

import pickle

import numpy as np
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline

import skmld
from skmld import ClimatologyBaseline, PatchTokenizer, PersistenceBaseline
from skmld.datasets import make_pore_collapse
from skmld.metrics import r2_per_field

BASELINES = [PersistenceBaseline, ClimatologyBaseline]


@pytest.fixture(scope="module")
def ds():
    return make_pore_collapse("micro", 4, shape=(32, 32), n_steps=4, random_state=0)


@pytest.fixture(scope="module")
def X(ds):
    return skmld.as_fields(ds)


def _tokens_pipe(estimator):
    return Pipeline([("tokens", PatchTokenizer(patch_size=16, multiple_of=8)), ("baseline", estimator)])


def _closed_form_r2_per_field(truth, pred):
    """Each field's R² over samples, cells and the times after the first."""
    t, p = truth[:, 1:].astype(np.float64), pred[:, 1:].astype(np.float64)  # (S, T, F, y, x)
    axes = (0, 1, 3, 4)
    ss_res = ((t - p) ** 2).sum(axes)
    ss_tot = ((t - t.mean(axes, keepdims=True)) ** 2).sum(axes)
    return 1 - ss_res / ss_tot


def _closed_form_r2(truth, pred):
    """Mean over fields of each field's R²."""
    return float(np.mean(_closed_form_r2_per_field(truth, pred)))


# -- persistence ---------------------------------------------------------------------


def test_persistence_predicts_first_frame(X, ds):
    pers = PersistenceBaseline().fit(X)
    pred = pers.predict(X)
    assert isinstance(pred, xr.DataArray) and pred.dims == X.dims and pred.shape == X.shape
    x = X.values
    np.testing.assert_array_equal(pred.values, np.broadcast_to(x[:, :1], x.shape))
    np.testing.assert_array_equal(pred["time"].values, X["time"].values)

    pred_ds = pers.predict(ds)
    assert isinstance(pred_ds, xr.Dataset) and set(pred_ds.data_vars) == set(ds.data_vars)
    for f in ds.data_vars:
        np.testing.assert_array_equal(pred_ds[f].values, np.broadcast_to(ds[f].values[:, :1], ds[f].shape))


def test_persistence_extends_time_and_returns_zero_std(X):
    pred, std = PersistenceBaseline().fit(X).predict(X, n_steps=6, return_std=True)
    step = float(X["time"][1] - X["time"][0])
    np.testing.assert_allclose(pred["time"].values, float(X["time"][0]) + step * np.arange(7))
    np.testing.assert_array_equal(pred.isel(time=6).values, X.isel(time=0).values)
    assert std.dims == pred.dims and std.shape == pred.shape and not np.any(std.values)


def test_persistence_tokens_keep_attrs_and_invert(ds):
    pipe = _tokens_pipe(PersistenceBaseline()).fit(ds)
    tokens = pipe["tokens"].transform(ds)
    pred = pipe.predict(ds)
    assert pred.dims == tokens.dims and pred.attrs == tokens.attrs
    assert pipe["baseline"].token_shape_ == (16, 16) and pipe["baseline"].grid_shape_ == (2, 2)
    back = pipe["tokens"].inverse_transform(pred)
    for f in ds.data_vars:
        first = np.broadcast_to(ds[f].values[:, :1], ds[f].shape)
        np.testing.assert_allclose(back[f].values, first, rtol=1e-5, atol=1e-5 * float(np.abs(first).max()))


def test_persistence_score_is_closed_form_mean_per_field_r2(X, ds):
    pers = PersistenceBaseline().fit(X)
    x = X.values
    expected = _closed_form_r2(x, np.broadcast_to(x[:, :1], x.shape))
    assert pers.score(X) == pytest.approx(expected, rel=1e-6)
    per_field = pers.score_per_field(X)
    assert list(per_field) == list(X["field"].values)
    np.testing.assert_allclose(list(per_field.values()),
                               _closed_form_r2_per_field(x, np.broadcast_to(x[:, :1], x.shape)), rtol=1e-6)
    assert pers.score(ds) == pytest.approx(expected, rel=1e-6)
    # Per-field R² is invariant to the tokenizer's per-field scaling (no padding at 32 / 16).
    assert _tokens_pipe(PersistenceBaseline()).fit(ds).score(ds) == pytest.approx(expected, rel=1e-5)


def test_persistence_lazy_input_stays_lazy(X):
    pytest.importorskip("dask")
    lazy = X.chunk({"sample": 2})
    pred = PersistenceBaseline().fit(X).predict(lazy)
    assert pred.chunks is not None
    np.testing.assert_array_equal(pred.values, PersistenceBaseline().fit(X).predict(X).values)


# -- climatology ---------------------------------------------------------------------


def test_climatology_predicts_training_mean(X):
    train, test = X.isel(sample=[0, 1, 2]), X.isel(sample=[3])
    clim = ClimatologyBaseline().fit(train)
    assert clim.climatology_.shape == (X.sizes["time"], 32, 32, 3) and clim.fields_ == list(X["field"].values)
    pred, std = clim.predict(test, return_std=True)
    assert pred.dims == test.dims and pred.shape == test.shape
    mean = train.mean("sample").values
    np.testing.assert_allclose(pred.isel(sample=0).values, mean, rtol=1e-6, atol=1e-6)
    # float64 reference: xarray's float32 std of ~300 K values is off by float32 rounding
    np.testing.assert_allclose(std.isel(sample=0).values, train.values.astype(np.float64).std(0),
                               rtol=1e-5, atol=1e-6)
    short = clim.predict(test, n_steps=2)
    assert short.sizes["time"] == 3
    np.testing.assert_allclose(short.values[0], mean[:3], rtol=1e-6, atol=1e-6)


def test_climatology_on_its_single_sample_scores_one(X):
    one = X.isel(sample=[1])
    clim = ClimatologyBaseline().fit(one)
    pred = clim.predict(one)
    r2 = r2_per_field(one.isel(time=slice(1, None)), pred.isel(time=slice(1, None)))
    np.testing.assert_array_equal(r2.values, np.ones(3))
    assert clim.score(one) == 1.0
    assert not np.any(clim.std_)


def test_climatology_score_is_closed_form(X):
    train, test = X.isel(sample=[0, 1]), X.isel(sample=[2, 3])
    clim = ClimatologyBaseline().fit(train)
    pred = np.broadcast_to(train.values.astype(np.float64).mean(0, keepdims=True), test.shape)
    assert clim.score(test) == pytest.approx(_closed_form_r2(test.values, pred), rel=1e-5)


def test_climatology_pipeline_round_trips_to_physical_units(ds):
    pipe = _tokens_pipe(ClimatologyBaseline()).fit(ds)
    pred = pipe.predict(ds)
    assert pred.dims == skmld.tokenizer.TOKEN_DIMS and dict(pred.sizes)["token_y"] == 2
    fields = pipe["tokens"].inverse_transform(pred)
    assert isinstance(fields, xr.Dataset) and dict(fields.sizes) == dict(ds.sizes)
    np.testing.assert_array_equal(fields["x"].values, ds["x"].values)
    np.testing.assert_array_equal(fields["time"].values, ds["time"].values)
    for f in ds.data_vars:
        mean = ds[f].mean("sample").values
        scale = float(np.abs(mean).max())
        for s in range(ds.sizes["sample"]):
            np.testing.assert_allclose(fields[f].isel(sample=s).values, mean, rtol=1e-5, atol=1e-5 * scale)
    # The score in token units is the physical R² of the training mean (per-field scaling, no padding).
    x = skmld.as_fields(ds).values.astype(np.float64)
    expected = _closed_form_r2(x, np.broadcast_to(x.mean(0, keepdims=True), x.shape))
    assert pipe.score(ds) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("Baseline, expected", [(PersistenceBaseline, 0.0), (ClimatologyBaseline, 1.0)])
def test_constant_field_scores_one_if_exact_else_zero(X, Baseline, expected):
    # microstructure 0.5 at t=0, then 1 everywhere: persistence misses it, climatology is exact.
    Y = X.copy()
    Y.loc[{"field": "microstructure"}] = 1.0
    Y.loc[{"field": "microstructure", "time": Y["time"][0]}] = 0.5
    per_field = Baseline().fit(Y).score_per_field(Y)
    assert per_field["microstructure"] == expected
    assert Baseline().fit(Y).score(Y) == pytest.approx(np.mean(list(per_field.values())))


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("Baseline", BASELINES)
def test_not_fitted(Baseline, X):
    with pytest.raises(NotFittedError):
        Baseline().predict(X)
    with pytest.raises(NotFittedError):
        Baseline().score(X)


def test_climatology_too_many_steps(X):
    clim = ClimatologyBaseline().fit(X)
    with pytest.raises(ValueError, match=r"n_steps=4 asks for 5 time steps .* fitted on 4 time steps"):
        clim.predict(X, n_steps=4)
    longer = PersistenceBaseline().fit(X).predict(X, n_steps=5)  # 6 times, same spacing
    with pytest.raises(ValueError, match="6 time steps .* fitted on 4"):
        clim.score(longer)


@pytest.mark.parametrize("Baseline", BASELINES)
def test_mismatched_fields(Baseline, X):
    est = Baseline().fit(X)
    with pytest.raises(ValueError, match=r"missing: \['microstructure'\]"):
        est.predict(X.sel(field=["temperature", "pressure"]))
    with pytest.raises(ValueError, match="same order"):
        est.score(X.isel(field=[2, 1, 0]))


def test_climatology_mismatched_grid_layout_and_time(X, ds):
    clim = ClimatologyBaseline().fit(X)
    with pytest.raises(ValueError, match=r"grid shape \(32, 16\) .* fitted on \(32, 32\)"):
        clim.predict(X.isel(x=slice(0, 16)))
    with pytest.raises(ValueError, match="X is tokens but ClimatologyBaseline was fitted on plain field data"):
        clim.predict(PatchTokenizer(patch_size=16, multiple_of=8).fit_transform(ds))
    tok = ClimatologyBaseline().fit(PatchTokenizer(patch_size=16, multiple_of=8).fit_transform(ds))
    with pytest.raises(ValueError, match=r"token shape \(patch_y, patch_x\) \(32, 32\)"):
        tok.predict(PatchTokenizer(patch_size=32, multiple_of=8).fit_transform(ds))
    with pytest.raises(ValueError, match="scaled with ranges"):
        tok.predict(PatchTokenizer(patch_size=16, multiple_of=8, ranges={"temperature": (300, 5000)})
                    .fit_transform(ds))
    with pytest.raises(ValueError, match="time coordinate"):
        clim.predict(X.isel(time=slice(1, None)))


@pytest.mark.parametrize("Baseline", BASELINES)
@pytest.mark.parametrize("n_steps", [0, -1, True, 1.5, "2"])
def test_bad_n_steps(Baseline, X, n_steps):
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        Baseline().fit(X).predict(X, n_steps=n_steps)


@pytest.mark.parametrize("Baseline", BASELINES)
def test_score_needs_two_time_steps(Baseline, ds):
    pipe = _tokens_pipe(Baseline()).fit(ds)
    tokens = pipe["tokens"].transform(ds).isel(time=[0])
    with pytest.raises(ValueError, match="at least 2 time steps"):
        pipe["baseline"].score(tokens)
    with pytest.raises(ValueError, match="single time step"):
        pipe["baseline"].predict(tokens)
    pred = pipe["baseline"].predict(tokens, n_steps=2)
    assert pred.sizes["time"] == 3
    if Baseline is ClimatologyBaseline:  # continues with the fitted times, not a unit step
        np.testing.assert_array_equal(pred["time"].values, ds["time"].values[:3])
        # The training tokens' mean over samples at the first three times, for the one sample.
        expected = pipe["tokens"].transform(ds).values.astype(np.float64).mean(0)[:3]
        np.testing.assert_allclose(pred.values[0], expected, rtol=1e-6, atol=1e-6)
    else:  # the single frame, repeated
        np.testing.assert_array_equal(pred.values, np.repeat(tokens.values, 3, axis=1))


# -- scikit-learn behaviour ----------------------------------------------------------


@pytest.mark.parametrize("Baseline", BASELINES)
def test_clone_get_params_and_tags(Baseline, X):
    est = Baseline()
    assert est.get_params() == {} and est.set_params() is est
    fitted = est.fit(X)
    copy = clone(fitted)
    assert type(copy) is Baseline and copy is not fitted and not hasattr(copy, "fields_")
    assert clone(_tokens_pipe(Baseline())).get_params()["baseline"].get_params() == {}
    tags = est.__sklearn_tags__()
    assert tags.requires_fit and not tags.target_tags.required and not tags.input_tags.two_d_array
    assert repr(est) == f"{Baseline.__name__}()"


@pytest.mark.parametrize("Baseline", BASELINES)
def test_pickle_round_trip(Baseline, ds):
    pipe = _tokens_pipe(Baseline()).fit(ds)
    again = pickle.loads(pickle.dumps(pipe))
    xr.testing.assert_identical(again.predict(ds), pipe.predict(ds))
    assert again.score(ds) == pipe.score(ds)


@pytest.mark.parametrize("Baseline", BASELINES)
def test_cross_val_score(Baseline, X, ds):
    # Each fold's score is that of a clone fitted on the fold's training samples, computed by hand.
    folds = list(KFold(2).split(X))
    scores = {}
    for kind, est in (("plain", Baseline()), ("piped", _tokens_pipe(Baseline()))):
        scores[kind] = cross_val_score(est, X, cv=KFold(2))
        expected = [clone(est).fit(X.isel(sample=train)).score(X.isel(sample=test)) for train, test in folds]
        np.testing.assert_allclose(scores[kind], expected, rtol=1e-12)
    # And the plain baseline's fold scores are the closed-form R² of its prediction.
    x = X.values.astype(np.float64)
    for score, (train, test) in zip(scores["plain"], folds):
        first = x[test][:, :1] if Baseline is PersistenceBaseline else x[train].mean(0, keepdims=True)
        assert score == pytest.approx(_closed_form_r2(x[test], np.broadcast_to(first, x[test].shape)), rel=1e-5)
