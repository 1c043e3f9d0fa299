"""skmld.outputs.predict_fields: a fitted pipeline's mean, std, intervals and draws as physical fields."""

import numpy as np
import pytest
import xarray as xr
from scipy.stats import norm
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from skmld import MicroDynamicsEstimator, PatchTokenizer, as_fields
from skmld.calibration import CalibratedDynamics
from skmld.datasets import make_pore_collapse
from skmld.outputs import predict_fields


# Trajectory ensembles run ~20x faster traced than eagerly once traced (tests/conftest.py): the
# tests that draw them run traced, and share their traces.
ENSEMBLES = pytest.mark.traced


def stitched(tokens: xr.DataArray) -> np.ndarray:
    """Tokens of an unpadded grid as ``(sample, time, field, y, x)``, by hand."""
    S, T, F, ty, tx, py, px = tokens.transpose("sample", "time", "field", "token_y", "token_x", "patch_y",
                                               "patch_x").shape
    return tokens.values.transpose(0, 1, 2, 3, 5, 4, 6).reshape(S, T, F, ty * py, tx * px)


def field_scale(tokenizer) -> np.ndarray:
    return np.array([hi - lo for lo, hi in (tokenizer.ranges_[f] for f in tokenizer.fields_)])[:, None, None]


@pytest.fixture(scope="module")
def calibrated(meso_pipe):
    """The meso pipeline with its spread calibrated on a held-out meso sample."""
    tok = meso_pipe["tokens"]
    held_out = make_pore_collapse("meso", 1, shape=(64, 64), n_steps=3, random_state=5)
    cal = CalibratedDynamics(meso_pipe["meso"], cv="prefit", n_draws=2).fit(tok.transform(held_out))
    return Pipeline([("tokens", tok), ("meso", cal)])


@ENSEMBLES
def test_mean_and_std_in_physical_units(meso_pipe, meso_X):
    tok = meso_pipe["tokens"]
    out = predict_fields(meso_pipe, meso_X, return_std=True)
    assert sorted(out.data_vars) == ["mean", "std"]
    assert out["mean"].dims == ("sample", "time", "field", "y", "x") == out["std"].dims
    assert out["units"].values.tolist() == ["K", "GPa", "1"]
    xr.testing.assert_equal(out["x"], meso_X["x"])
    mean_t, std_t = meso_pipe["meso"].predict(tok.transform(meso_X), return_std=True)
    np.testing.assert_array_equal(out["mean"].values, as_fields(tok.inverse_transform(mean_t)).values)
    # The scaling is affine per field: std_phys = std_tokens * (hi - lo).
    np.testing.assert_allclose(out["std"].values, stitched(std_t) * field_scale(tok), rtol=1e-6)
    assert (out["std"].values > 0).any()


@ENSEMBLES
def test_intervals_and_draws(meso_pipe, meso_X):
    tok = meso_pipe["tokens"]
    levels = [0.6827, 0.9545]  # about ±1σ and ±2σ
    out = predict_fields(meso_pipe, meso_X, return_std=True, coverage=levels, n_draws=3)
    lower, upper, mean, std = out["lower"], out["upper"], out["mean"], out["std"]
    assert lower.dims == ("coverage", "sample", "time", "field", "y", "x")
    np.testing.assert_allclose(out["coverage"], levels)
    k = xr.DataArray(norm.ppf(0.5 + np.array(levels) / 2), dims="coverage")
    bounds = [tok.bounds_[f] for f in tok.fields_]
    low = xr.DataArray([-np.inf if lo is None else lo for lo, _ in bounds], dims="field")
    high = xr.DataArray([np.inf if hi is None else hi for _, hi in bounds], dims="field")
    unclipped = (mean - k * std > low) & (mean + k * std < high)
    assert unclipped.any()
    float32 = 4 * np.finfo(np.float32).eps * float(abs(mean).max())  # the rounding of the ends
    np.testing.assert_allclose((upper - lower).where(unclipped), (2 * k * std).where(unclipped), rtol=1e-5,
                               atol=float32)
    micro = dict(field="microstructure")
    assert float(lower.sel(micro).min()) >= 0 and float(upper.sel(micro).max()) <= 1  # bounds_ of the field
    assert float(lower.sel(field="temperature").min()) >= 300
    assert ((lower <= mean) & (mean <= upper)).all()
    single = predict_fields(meso_pipe, meso_X, coverage=0.9545)
    assert "coverage" not in single["lower"].dims and float(single["coverage"]) == 0.9545
    xr.testing.assert_allclose(single["upper"], upper.isel(coverage=1).drop_vars("coverage").assign_coords(
        coverage=0.9545))
    draws = meso_pipe["meso"].predict_draws(tok.transform(meso_X), n_draws=3)
    assert out["draws"].dims == ("draw", "sample", "time", "field", "y", "x") and out.sizes["draw"] == 3
    np.testing.assert_array_equal(out["draws"].isel(draw=2).values,
                                  as_fields(tok.inverse_transform(draws.isel(draw=2))).values)


@ENSEMBLES
def test_calibrated_last_step(calibrated, meso_X):
    tok, cal = calibrated["tokens"], calibrated["meso"]
    out = predict_fields(calibrated, meso_X, return_std=True, n_draws=2, random_state=0)
    _, std_t = cal.predict(tok.transform(meso_X), return_std=True)
    np.testing.assert_allclose(out["std"].values, stitched(std_t) * field_scale(tok), rtol=1e-6)
    again = predict_fields(calibrated, meso_X, n_draws=2, random_state=0)
    xr.testing.assert_equal(again["draws"], out["draws"])  # random_state seeds the calibration's noise


def test_micro_pipeline_longer_rollout(micro_pipe, micro_X):
    out = predict_fields(micro_pipe, micro_X.isel(sample=[0]), n_steps=5, return_std=True)
    assert out.sizes["time"] == 6 and out.sizes["y"] == micro_X.sizes["y"]
    np.testing.assert_allclose(out["time"].values, 2.0 * np.arange(6))  # the time step continued
    assert np.isfinite(out["std"].values).all()


def test_refuses_what_it_cannot_map(micro_pipe):
    est = micro_pipe["micro"]
    with pytest.raises(TypeError, match="pipeline must be a fitted sklearn Pipeline .* got a MicroDynamicsEstimator"):
        predict_fields(est, None)
    with pytest.raises(ValueError, match=r"needs a pipeline of a PatchTokenizer, then a dynamics estimator.*"
                                         r"This pipeline has steps \[\('micro', 'MicroDynamicsEstimator'\)\]"):
        predict_fields(Pipeline([("micro", est)]), None)
    with pytest.raises(NotFittedError, match=r"step 'tokens' \(PatchTokenizer\) is not fitted; call pipeline.fit"):
        predict_fields(Pipeline([("tokens", PatchTokenizer()), ("micro", est)]), None)
    with pytest.raises(NotFittedError, match=r"step 'micro' \(MicroDynamicsEstimator\) is not fitted"):
        predict_fields(Pipeline([("tokens", micro_pipe["tokens"]), ("micro", MicroDynamicsEstimator())]), None)


@pytest.mark.parametrize("kwargs, match", [
    ({"coverage": 1.0}, r"coverage must be a number or a non-empty sequence of numbers in \(0, 1\).*got 1.0"),
    ({"coverage": [0.5, 0]}, r"coverage must be .*got \[0.5, 0\]"),
    ({"coverage": []}, "coverage must be"),
    ({"coverage": "0.9"}, "coverage must be"),
    ({"coverage": True}, "coverage must be"),
    ({"n_draws": 1}, r"n_draws must be 0 \(no draws\) or an int >= 2, got 1"),
    ({"n_draws": -2}, "n_draws must be"),
    ({"n_draws": 2.0}, "n_draws must be"),
])
def test_bad_arguments(micro_pipe, micro_X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict_fields(micro_pipe, micro_X, **kwargs)
