"""Tests of skmld.metrics._scorers: get_scorer in sklearn's model selection, closed-form scorer values."""

from __future__ import annotations

import importlib
import math
import os
import pickle
import sys

import numpy as np
import pytest
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline

from skmld.metrics import (
    crps_gaussian,
    field_rmse,
    get_scorer,
    get_scorer_names,
    hotspot_mask_scores,
    probabilistic_scores,
    r2_per_field,
)

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import FIELDS, _dataset, make_fields, temperature_array


# ---------------------------------------------------------------------------
# Test-only models
# ---------------------------------------------------------------------------

class Persistence(BaseEstimator):
    """Test-only rollout model: repeat the first state, optionally scaled."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.n_fields_ = X.sizes["field"]
        return self

    def _rollout(self, X):
        first = X.isel(time=[0] * X.sizes["time"])
        return first.assign_coords(time=X["time"])

    def predict(self, X, n_steps=None, return_std=False, n_draws=16):
        pred = self._rollout(X) * self.scale
        return (pred, xr.zeros_like(pred)) if return_std else pred

    def score(self, X, y=None):
        truth = X.isel(time=slice(1, None))
        pred = self.predict(X).isel(time=slice(1, None))
        ss_res = float(((truth - pred) ** 2).sum())
        return 1.0 - ss_res / float(((truth - truth.mean()) ** 2).sum())


class Oracle(Persistence):
    """Test-only model that 'predicts' the truth, optionally scaled or time-shifted.

    ``shift=0, scale=1`` is the perfect model, an upper bound for every score;
    ``shift=k`` shows the state k steps later (cyclically), a clearly wrong one.
    """

    def __init__(self, scale=1.0, shift=0):
        self.scale = scale
        self.shift = shift

    def _rollout(self, X):
        n = X.sizes["time"]
        order = [(i + self.shift) % n for i in range(n)]
        return X.isel(time=order).assign_coords(time=X["time"])


def _tokenizer():
    try:
        return importlib.import_module("skmld.tokenizer").PatchTokenizer
    except (ImportError, AttributeError):
        return None


def _models(model):
    """The bare model and, when the tokenizer exists, the tokenizer pipeline."""
    out = [model]
    tokenizer = _tokenizer()
    if tokenizer is not None:
        out.append(Pipeline([("tokens", tokenizer()), ("model", model)]))
    return out


# ---------------------------------------------------------------------------
# Scorers in sklearn's model selection
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", get_scorer_names())
@pytest.mark.parametrize("wrap", [0, 1], ids=["bare", "pipeline"])
def test_scorer_in_cross_val_score_higher_is_better(name, wrap):
    models = _models(Persistence())
    if wrap >= len(models):
        pytest.skip("skmld.tokenizer.PatchTokenizer is not available")
    X = make_fields(n_samples=4)
    scorer = get_scorer(name)
    cv = KFold(2)
    persistence = cross_val_score(models[wrap], X, scoring=scorer, cv=cv)
    perfect = cross_val_score(_models(Oracle())[wrap], X, scoring=scorer, cv=cv)
    wrong = cross_val_score(_models(Oracle(shift=2))[wrap], X, scoring=scorer, cv=cv)
    assert persistence.shape == (2,)
    assert np.all(np.isfinite(persistence))
    best = 1.0 if name in ("r2", "hotspot_f1") else 0.0
    # Tokens are float32: the round trip costs ~1e-7 relative, ~1e-4 K on 2000 K.
    atol = 1e-9 if wrap == 0 else (1e-6 if name == "r2" else 1e-2)
    np.testing.assert_allclose(perfect, best, atol=atol)
    assert np.all(perfect > wrong)
    assert np.all(perfect > persistence)
    assert np.all(persistence <= best + 1e-12)


def test_scorers_in_grid_search_and_multimetric():
    X = make_fields(n_samples=4)
    search = GridSearchCV(
        Oracle(), {"scale": [0.8, 1.0, 1.2]}, scoring=get_scorer("neg_field_rmse"), cv=KFold(2)
    ).fit(X)
    assert search.best_params_ == {"scale": 1.0}
    scoring = {name: get_scorer(name) for name in get_scorer_names()}
    res = cross_validate(Persistence(), X, scoring=scoring, cv=KFold(2))
    for name in scoring:
        assert np.all(np.isfinite(res[f"test_{name}"]))


def test_scorer_options_pickle_and_errors():
    X = make_fields(n_samples=2)
    model = Persistence().fit(X)
    # A scorer restricted to one field equals that field's RMSE after the first step.
    score = get_scorer("neg_field_rmse", field="pressure")(model, X)
    expected = field_rmse(X, model.predict(X)).sel(field="pressure").isel(time=slice(1, None))
    truth = X.sel(field="pressure").isel(time=slice(1, None))
    pred = model.predict(X).sel(field="pressure").isel(time=slice(1, None))
    assert score == pytest.approx(-float(np.sqrt(((truth - pred) ** 2).mean()))) != 0.0
    assert expected.sizes["time"] == X.sizes["time"] - 1
    # A lower threshold counts more hot pixels and changes the area score.
    hot = get_scorer("neg_hotspot_area_rmse", threshold=300.5)(model, X)
    assert hot != get_scorer("neg_hotspot_area_rmse")(model, X)
    scorer = pickle.loads(pickle.dumps(get_scorer("neg_hotspot_temperature_rmse")))
    assert np.isfinite(scorer(model, X))
    assert get_scorer()(model, X) == pytest.approx(model.score(X))
    with pytest.raises(ValueError, match="neg_field_rmse.*r2"):
        get_scorer("rmse")
    with pytest.raises(ValueError, match="field="):
        get_scorer("hotspot_f1", field="pressure")


@pytest.mark.parametrize("name", ["neg_hotspot_temperature_rmse", "neg_hotspot_area_rmse", "hotspot_f1",
                                  "neg_excess_heat_rmse"])
def test_hotspot_scorers_take_the_temperature_name(name):
    X = make_fields(n_samples=2)
    renamed = X.assign_coords(field=["T", "P", "mu"])
    pred = _perturbed(X)
    scorer = pickle.loads(pickle.dumps(get_scorer(name, temperature="T")))
    assert scorer(FixedPrediction(pred.assign_coords(field=["T", "P", "mu"])), renamed) == pytest.approx(
        get_scorer(name)(FixedPrediction(pred), X))
    assert repr(scorer) == f"skmld.metrics.get_scorer({name!r}, temperature='T')"
    with pytest.raises(ValueError, match=r"no 'temperature' along dim 'field'.*; pass temperature='T'"):
        get_scorer(name)(FixedPrediction(pred), renamed)


def test_temperature_name_errors():
    with pytest.raises(ValueError, match=r"temperature= applies only to the hotspot scorers \[.*'hotspot_f1'"):
        get_scorer("neg_field_rmse", temperature="T")
    with pytest.raises(TypeError, match="non-empty str"):
        get_scorer("hotspot_f1", temperature="")


# ---------------------------------------------------------------------------
# Closed-form scorer values
# ---------------------------------------------------------------------------

class FixedPrediction:
    """Test-only 'estimator': predict returns a given array; score must not be called."""

    def __init__(self, pred):
        self.pred = pred

    def predict(self, X):
        return self.pred

    def score(self, X, y=None):
        raise AssertionError("the scorer called estimator.score")


def _perturbed(X, seed=0):
    """X with known noise on every field, the first step left exact."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, X.shape) * np.array([50.0, 0.5, 0.1])[:, None, None]
    values[:, 0] = 0.0
    return X + values


def test_r2_scorer_for_one_field_is_its_physical_r2():
    X = make_fields(n_samples=2, n_time=4)
    pred = _perturbed(X)
    for field in FIELDS:
        t = X.sel(field=field).values[:, 1:]
        p = pred.sel(field=field).values[:, 1:]
        expected = 1.0 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
        score = get_scorer("r2", field=field)(FixedPrediction(pred), X)
        assert score == pytest.approx(expected, rel=1e-12)
        assert 0.0 < score < 1.0
    # It is r2_per_field of the rollout after the first step.
    after = slice(1, None)
    per_field = r2_per_field(X.isel(time=after), pred.isel(time=after))
    assert get_scorer("r2", field="pressure")(FixedPrediction(pred), X) == pytest.approx(
        float(per_field.sel(field="pressure"))
    )
    assert get_scorer("r2", field="temperature")(FixedPrediction(X), X) == 1.0
    assert repr(get_scorer("r2", field="pressure")) == "skmld.metrics.get_scorer('r2', field='pressure')"
    with pytest.raises(ValueError, match="bogus"):
        get_scorer("r2", field="bogus")(FixedPrediction(pred), X)


def test_hotspot_f1_scorer_closed_form_and_threshold():
    X = temperature_array(np.full((1, 2, 3, 3), 300.0)).expand_dims(field=["temperature"], axis=2)
    X[0, 1, 0, 0, :3] = 1000.0  # three hot pixels after the first step
    pred = X.copy()
    pred[0, 1, 0, 0, 2] = 800.0  # TP = 2, FN = 1 ...
    pred[0, 1, 0, 2, 2] = 900.0  # ... FP = 1
    pred[0, 0, 0, 1, 1] = 5000.0  # the first step is not scored
    scorer = get_scorer("hotspot_f1")
    assert scorer(FixedPrediction(pred), X) == pytest.approx(2.0 / 3.0)
    assert scorer(FixedPrediction(X), X) == 1.0
    # At 850 K the 900 K pixel is still hot, but not the 800 K one; at 950 K only TP = 2, FN = 1.
    assert get_scorer("hotspot_f1", threshold=850.0)(FixedPrediction(pred), X) == pytest.approx(2 / 3)
    assert get_scorer("hotspot_f1", threshold=950.0)(FixedPrediction(pred), X) == pytest.approx(0.8)
    assert get_scorer("hotspot_f1", threshold=2000.0)(FixedPrediction(pred), X) == 1.0  # both empty
    expected = hotspot_mask_scores(X.isel(time=[1]), pred.isel(time=[1]), thresholds=(950.0,))
    assert get_scorer("hotspot_f1", threshold=950.0)(FixedPrediction(pred), X) == pytest.approx(
        expected["f1"].item()
    )


def test_excess_heat_scorer_closed_form():
    X = temperature_array(np.full((2, 2, 3, 3), 300.0), dx=2.0, dy=2.0)
    X = X.expand_dims(field=["temperature"], axis=2)
    X[0, 1, 0, 1, 1] = 975.0  # 100 K above 875 K on a 4 µm² pixel: 400 K·µm²
    pred = X.copy()
    pred[0, 1, 0, 1, 1] = 300.0
    # Per (sample, time) after the first step: errors (400, 0).
    score = get_scorer("neg_excess_heat_rmse")(FixedPrediction(pred), X)
    assert score == pytest.approx(-math.sqrt(400.0**2 / 2))
    assert get_scorer("neg_excess_heat_rmse", threshold=975.0)(FixedPrediction(pred), X) == 0.0
    assert get_scorer("neg_excess_heat_rmse")(FixedPrediction(X), X) == 0.0
    assert repr(get_scorer("neg_excess_heat_rmse", threshold=900.0)) == (
        "skmld.metrics.get_scorer('neg_excess_heat_rmse', threshold=900.0)"
    )
    with pytest.raises(ValueError, match="field="):
        get_scorer("neg_excess_heat_rmse", field="temperature")


# ---------------------------------------------------------------------------
# Probabilistic scorers
# ---------------------------------------------------------------------------

class GaussianModel(BaseEstimator):
    """Test-only probabilistic model: predicts the truth plus N(0, (factor·σ)²) noise, with std σ."""

    def __init__(self, factor=1.0, sigma=(40.0, 0.2, 0.05)):
        self.factor = factor
        self.sigma = sigma

    def fit(self, X, y=None):
        return self

    def predict(self, X, return_std=False):
        rng = np.random.RandomState(0)
        sigma = xr.DataArray(list(self.sigma), dims="field", coords={"field": X["field"]})
        std = xr.ones_like(X) * sigma
        mean = X + std * self.factor * rng.randn(*X.shape)
        mean[:, 0] = X[:, 0]
        return (mean, std) if return_std else mean


def test_probabilistic_scorers_pickle_and_values():
    X = make_fields(n_samples=4, n=32)
    model = GaussianModel()
    for name in ("neg_crps", "neg_coverage_error"):
        scorer = pickle.loads(pickle.dumps(get_scorer(name)))
        assert repr(scorer) == f"skmld.metrics.get_scorer({name!r})"
        value = scorer(model, X)
        assert isinstance(value, float) and np.isfinite(value) and value < 0
        # Calibrated beats over-confident.
        assert value > scorer(GaussianModel(factor=3.0), X)
    mean, std = model.predict(X, return_std=True)
    after = {"time": slice(1, None)}
    truth, mean, std = X.isel(after), mean.isel(after), std.isel(after)
    crps = crps_gaussian(truth, mean, std)
    spread = truth.std(("sample", "time", "y", "x"))
    per_field = crps.mean("time") / spread  # every time step has as many pixels
    assert get_scorer("neg_crps")(model, X) == pytest.approx(-float(per_field.mean()), rel=1e-10)
    assert get_scorer("neg_crps", field="pressure")(model, X) == pytest.approx(
        -float(crps.sel(field="pressure").mean()), rel=1e-10)
    s = probabilistic_scores(truth, mean, std)
    expected = float(np.abs(s["coverage_overall"] - s["nominal"]).mean())
    assert get_scorer("neg_coverage_error")(model, X) == pytest.approx(-expected, rel=1e-10)
    assert get_scorer("neg_coverage_error")(model, X) > -0.02  # calibrated: close to 0
    with pytest.raises(TypeError, match="return_std"):
        get_scorer("neg_crps")(FixedPrediction(X), X)
    with pytest.raises(ValueError, match="bogus"):
        get_scorer("neg_crps", field="bogus")(model, X)


def test_probabilistic_scorers_skip_pinned_pixels_of_a_dataset():
    X = make_fields(n_samples=2, n=16)
    model = GaussianModel(sigma=(40.0, 0.2, 1e-6))
    ds = _dataset(X, {"microstructure": (0.0, 1.0)})
    # The solid fraction is 0 or 1: every pixel is pinned where the noise (1e-6) keeps the mean on the bound.
    bare = get_scorer("neg_coverage_error", field="microstructure")
    with pytest.raises(ValueError, match="pinned"):
        bare(FixedDatasetModel(model, ds), ds)
    assert np.isfinite(get_scorer("neg_crps")(FixedDatasetModel(model, ds), ds))
    assert get_scorer("neg_crps")(FixedDatasetModel(model, ds), ds) != get_scorer("neg_crps")(model, X)


class FixedDatasetModel:
    """Test-only: the predictions of ``model`` on the DataArray form, returned as Datasets."""

    def __init__(self, model, ds):
        self.model, self.ds = model, ds

    def predict(self, X, return_std=False):
        from skmld import as_fields

        mean, std = self.model.predict(as_fields(X), return_std=True)
        return (_dataset(mean), _dataset(std)) if return_std else _dataset(mean)
