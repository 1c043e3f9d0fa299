"""Tests of skmld.metrics: closed-form values, invariants, laziness and scorers."""

from __future__ import annotations

import importlib
import math
import pickle

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline

from skmld.metrics import (
    coverage,
    crps_ensemble,
    crps_gaussian,
    field_rmse,
    get_scorer,
    get_scorer_names,
    hotspot_counts,
    hotspot_mask_scores,
    hotspot_metrics,
    hotspot_rmse,
    pinned_mask,
    probabilistic_scores,
    r2_per_field,
    skill_score,
)

FIELDS = ["temperature", "pressure", "microstructure"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def temperature_array(values, dx=1.0, dy=1.0, time=None):
    """(sample, time, y, x) temperature with coordinates."""
    values = np.asarray(values, dtype=float)
    n_s, n_t, n_y, n_x = values.shape
    time = np.arange(n_t, dtype=float) if time is None else np.asarray(time, dtype=float)
    return xr.DataArray(
        values,
        dims=("sample", "time", "y", "x"),
        coords={"time": time, "y": np.arange(n_y) * dy, "x": np.arange(n_x) * dx},
        attrs={"units": "K"},
    )


def make_fields(n_samples=4, n_time=5, n=16, seed=0):
    """Canonical field array: a hot disc growing around a collapsing pore."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) * 0.5
    x = np.arange(n) * 0.5
    time = np.arange(n_time) * 2.0
    r = np.hypot(*np.meshgrid(y - y.mean(), x - x.mean(), indexing="ij"))
    out = np.empty((n_samples, n_time, 3, n, n))
    for s in range(n_samples):
        r0 = 0.8 + 0.3 * rng.rand()
        for t in range(n_time):
            radius = r0 + 0.35 * t
            out[s, t, 0] = 300 + 1700 * (r < radius) * (1 + 0.1 * t) + rng.rand(n, n)
            out[s, t, 1] = 5 + 3 * np.exp(-((r - radius) ** 2)) + 0.1 * rng.rand(n, n)
            out[s, t, 2] = (r > 2.5 - 0.4 * t).astype(float)
    return xr.DataArray(
        out,
        dims=("sample", "time", "field", "y", "x"),
        coords={
            "time": ("time", time, {"units": "ns"}),
            "field": FIELDS,
            "units": ("field", ["K", "GPa", "-"]),
            "y": ("y", y, {"units": "µm"}),
            "x": ("x", x, {"units": "µm"}),
        },
    )


def _raising_scheduler(dsk, keys, **kwargs):
    raise AssertionError("dask computed eagerly")


# ---------------------------------------------------------------------------
# Hotspot metrics: hand-computed values
# ---------------------------------------------------------------------------


def test_no_hotspot_gives_zero_temperature_and_area():
    T = temperature_array(np.full((2, 3, 4, 5), 875.0))  # at, not above, the threshold
    hs = hotspot_metrics(T)
    np.testing.assert_array_equal(hs["T_hs"], 0.0)
    np.testing.assert_array_equal(hs["A_hs"], 0.0)
    np.testing.assert_array_equal(hs["dT_hs_dt"], 0.0)
    assert hs["T_hs"].dims == ("sample", "time")
    assert hs["dT_hs_dt"].dims == ("sample", "interval")


def test_one_hot_pixel():
    values = np.full((1, 2, 4, 4), 300.0)
    values[0, 1, 2, 3] = 1500.0
    hs = hotspot_metrics(temperature_array(values, dx=2.0, dy=0.5, time=[0.0, 4.0]))
    assert hs["T_hs"].values.tolist() == [[0.0, 1500.0]]
    assert hs["A_hs"].values.tolist() == [[0.0, 1.0]]  # one pixel of 2 µm × 0.5 µm
    assert hs["dT_hs_dt"].values.tolist() == [[1500.0 / 4.0]]
    assert hs["dA_hs_dt"].values.tolist() == [[1.0 / 4.0]]
    assert hs["interval"].values.tolist() == [0.0]
    assert hs.attrs["pixel_area"] == 1.0


def test_growing_hot_square_non_uniform_time():
    # Sides 0, 1, 2, 3 px of 1 µm × 0.5 µm at non-uniform times.
    time = [0.0, 0.5, 1.5, 3.0]
    values = np.full((1, 4, 10, 10), 300.0)
    for t, side in enumerate(range(4)):
        values[0, t, :side, :side] = 1000.0 + 100.0 * t
    hs = hotspot_metrics(temperature_array(values, dx=1.0, dy=0.5, time=time))
    np.testing.assert_allclose(hs["A_hs"][0], [0.0, 0.5, 2.0, 4.5])
    np.testing.assert_allclose(hs["T_hs"][0], [0.0, 1100.0, 1200.0, 1300.0])
    np.testing.assert_allclose(hs["dA_hs_dt"][0], [0.5 / 0.5, 1.5 / 1.0, 2.5 / 1.5])
    np.testing.assert_allclose(hs["dT_hs_dt"][0], [1100.0 / 0.5, 100.0, 100.0 / 1.5])
    np.testing.assert_allclose(hs["interval"], time[:-1])


def test_growing_hot_disc_area_and_rate():
    dx = 0.25  # µm, 200 × 200 px
    n = 200
    c = (np.arange(n) - n / 2 + 0.5) * dx
    r = np.hypot(*np.meshgrid(c, c, indexing="ij"))
    time = np.arange(4) * 2.0  # ns
    radii = 5.0 + 1.5 * time  # µm
    values = np.stack([np.where(r < rad, 2000.0, 300.0) for rad in radii])[None]
    hs = hotspot_metrics(temperature_array(values, dx=dx, dy=dx, time=time))
    area = np.pi * radii**2
    np.testing.assert_allclose(hs["A_hs"][0], area, rtol=0.02)
    np.testing.assert_allclose(hs["dA_hs_dt"][0], np.diff(area) / 2.0, rtol=0.03)
    np.testing.assert_allclose(hs["T_hs"][0], 2000.0)
    np.testing.assert_allclose(hs["dT_hs_dt"][0], 0.0)
    assert hs["A_hs"].attrs["units"] == "µm^2"
    assert hs["dA_hs_dt"].attrs["units"] == "µm^2/ns"
    assert hs["dT_hs_dt"].attrs["units"] == "K/ns"


def test_threshold_pixel_area_and_dt_arguments():
    values = np.full((1, 2, 3, 3), 300.0)
    values[0, 1, 0, :2] = 600.0
    T = temperature_array(values)
    hs = hotspot_metrics(T, threshold=500.0, pixel_area=3.0, dt=0.5)
    assert hs["A_hs"].values.tolist() == [[0.0, 6.0]]
    assert hs["dA_hs_dt"].values.tolist() == [[12.0]]
    assert hs.attrs["threshold"] == 500.0


def test_pixel_area_without_coordinates_warns_and_counts_pixels():
    values = np.full((1, 1, 3, 3), 1000.0)
    T = xr.DataArray(values, dims=("sample", "time", "y", "x"))
    with pytest.warns(UserWarning, match="pixel area"):
        hs = hotspot_metrics(T)
    assert hs["A_hs"].values.tolist() == [[9.0]]
    assert hs["A_hs"].attrs["units"] == "pixel"
    assert "note" in hs.attrs
    assert hs.sizes["interval"] == 0  # one snapshot, no rate


def test_hotspot_metrics_accepts_fields_and_dataset():
    X = make_fields()
    temperature = X.sel(field="temperature", drop=True).drop_vars("units", errors="ignore")
    expected = hotspot_metrics(temperature)
    from_array = hotspot_metrics(X)
    from_dataset = hotspot_metrics(X.to_dataset(dim="field"))
    xr.testing.assert_allclose(from_array, expected)
    xr.testing.assert_allclose(from_dataset, expected)
    assert from_array["T_hs"].attrs["units"] == "K"


def test_hotspot_metrics_rejects_tokens_with_hint():
    tokens = xr.DataArray(
        np.zeros((1, 2, 1, 1, 1, 4, 4)),
        dims=("sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x"),
        coords={"field": ["temperature"]},
    )
    with pytest.raises(ValueError, match="inverse_transform"):
        hotspot_metrics(tokens)
    with pytest.raises(ValueError, match="'temperature'"):
        hotspot_metrics(make_fields().sel(field=["pressure"]))


# ---------------------------------------------------------------------------
# Hotspot metrics: properties
# ---------------------------------------------------------------------------

temperatures = arrays(
    np.float64,
    st.tuples(
        st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)
    ),
    elements=st.floats(250.0, 2500.0),
)


@settings(max_examples=60, deadline=None)
@given(values=temperatures, data=st.data())
def test_hotspot_properties(values, data):
    n_s, n_t = values.shape[:2]
    steps = data.draw(st.lists(st.floats(0.1, 5.0), min_size=n_t, max_size=n_t))
    time = np.cumsum(steps)
    threshold = 875.0
    # Explicit pixel area: a single row or column has no spacing to derive it from.
    hs = hotspot_metrics(temperature_array(values, time=time), threshold, pixel_area=1.0)

    # Areas are non-negative; T_hs is above the threshold or exactly 0.
    assert (hs["A_hs"] >= 0).all()
    t_hs = hs["T_hs"].values
    assert np.all((t_hs > threshold) | (t_hs == 0.0))
    # A hotspot exists exactly where the area is positive.
    np.testing.assert_array_equal(t_hs > 0, hs["A_hs"].values > 0)

    # Rates integrate back to the values: M[0] + cumsum(rate * dt) == M[1:].
    dt = np.diff(time)
    for value, rate in (("T_hs", "dT_hs_dt"), ("A_hs", "dA_hs_dt")):
        m = hs[value].values
        rebuilt = m[:, :1] + np.cumsum(hs[rate].values * dt, axis=1)
        np.testing.assert_allclose(rebuilt, m[:, 1:], rtol=1e-9, atol=1e-6)

    # Reordering samples reorders the metrics and nothing else.
    perm = data.draw(st.permutations(range(n_s)))
    hs_perm = hotspot_metrics(
        temperature_array(values[list(perm)], time=time), threshold, pixel_area=1.0
    )
    for name in hs.data_vars:
        np.testing.assert_allclose(hs_perm[name].values, hs[name].values[list(perm)])


# ---------------------------------------------------------------------------
# RMSEs and coverage
# ---------------------------------------------------------------------------


def test_field_rmse_self_zero_and_offset_is_abs_offset():
    X = make_fields()
    zero = field_rmse(X, X)
    assert zero.dims == ("field", "time")
    np.testing.assert_array_equal(zero, 0.0)
    offset = field_rmse(X, X - 7.5)
    np.testing.assert_allclose(offset, 7.5)
    assert offset["units"].values.tolist() == ["K", "GPa", "-"]
    # A Dataset gives the same answer.
    ds = X.to_dataset(dim="field")
    xr.testing.assert_allclose(
        field_rmse(ds, ds + 2.0).drop_vars("units", errors="ignore"),
        xr.full_like(zero, 2.0).drop_vars("units", errors="ignore"),
    )


def test_field_rmse_per_field_closed_form_and_token_layout():
    truth = xr.DataArray(
        np.zeros((2, 3, 2, 1, 1, 2, 2)),
        dims=("sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x"),
        coords={"field": ["temperature", "pressure"]},
    )
    pred = truth.copy()
    pred[:, :, 1, ..., 0, :] = 3.0  # half the pressure pixels off by 3
    rmse = field_rmse(truth, pred)
    np.testing.assert_allclose(rmse.sel(field="temperature"), 0.0)
    np.testing.assert_allclose(rmse.sel(field="pressure"), math.sqrt(9.0 / 2))


def test_field_rmse_compares_common_times_and_checks_dims():
    X = make_fields()
    short = X.isel(time=slice(0, 3)) + 1.0
    assert field_rmse(X, short).sizes["time"] == 3
    with pytest.raises(ValueError, match="'field'"):
        field_rmse(X, X.isel(field=0))
    with pytest.raises(ValueError, match="'x'"):
        field_rmse(X, X.isel(x=slice(0, 4)))


def test_hotspot_rmse_closed_form():
    values = np.full((2, 3, 4, 4), 1000.0)
    truth = temperature_array(values, time=[0.0, 2.0, 4.0])
    pred_values = values.copy()
    pred_values[0] += 10.0  # sample 0: T_hs off by 10 everywhere
    pred_values[1, 2, 0, 0] = 300.0  # sample 1, last time: one pixel lost
    pred = temperature_array(pred_values, time=[0.0, 2.0, 4.0])
    r = hotspot_rmse(truth, pred)
    np.testing.assert_allclose(r["T_hs"], [math.sqrt(100 / 2)] * 3)
    np.testing.assert_allclose(r["A_hs"], [0.0, 0.0, math.sqrt(1 / 2)])
    np.testing.assert_allclose(r["A_hs_overall"], math.sqrt(1 / 6))
    np.testing.assert_allclose(r["T_hs_overall"], math.sqrt(100 / 2))
    # Rates: only the last interval of sample 1 changes, by -1 µm² / 2 ns.
    np.testing.assert_allclose(r["dA_hs_dt"], [0.0, math.sqrt(0.25 / 2)])
    assert r["dA_hs_dt"].dims == ("interval",)
    assert r["T_hs_overall"].ndim == 0
    assert r["T_hs"].attrs["units"] == "K"


def test_coverage_closed_form():
    z = np.arange(-10.0, 11.0)  # 21 residuals
    truth = xr.DataArray(np.stack([z, z]), dims=("field", "x"), coords={"field": ["a", "b"]})
    mean = xr.zeros_like(truth)
    std = xr.DataArray([[4.0] * 21, [2.0] * 21], dims=("field", "x"), coords=truth.coords)
    cov = coverage(truth, mean, std)
    np.testing.assert_allclose(cov["coverage"], [9 / 21, 5 / 21])
    np.testing.assert_allclose(cov["coverage_overall"], 14 / 42)
    np.testing.assert_allclose(coverage(truth, mean, std, k=2)["coverage"], [17 / 21, 9 / 21])
    assert cov.attrs["nominal"] == pytest.approx(0.6827, abs=1e-4)


def test_coverage_of_calibrated_gaussian_matches_nominal():
    rng = np.random.RandomState(0)
    X = make_fields(n_samples=2, n_time=3)
    std = xr.full_like(X, 2.0)
    truth = X + rng.normal(size=X.shape) * 2.0
    for k in (1, 2):
        cov = coverage(truth, X, std, k=k)
        assert float(cov["coverage_overall"]) == pytest.approx(math.erf(k / math.sqrt(2)), abs=0.01)


# ---------------------------------------------------------------------------
# Laziness
# ---------------------------------------------------------------------------


def test_metrics_stay_lazy_on_dask_input():
    pytest.importorskip("dask")
    import dask.array  # noqa: F401
    X = make_fields()
    # Dask-backed values, in-memory coordinates: what skmld.open_fields gives.
    X = X.copy(data=dask.array.from_array(X.values, chunks=(1, 2, 3, 16, 16)))
    with dask.config.set(scheduler=_raising_scheduler):
        rmse = field_rmse(X, X + 1.0)
        hs = hotspot_metrics(X)
        hr = hotspot_rmse(X, X * 1.01)
        cov = coverage(X, X, xr.ones_like(X))
        for obj in (rmse, *hs.data_vars.values(), *hr.data_vars.values(), cov["coverage"]):
            assert obj.chunks is not None, obj.name
    np.testing.assert_allclose(rmse.compute(), 1.0)
    xr.testing.assert_allclose(hs.compute(), hotspot_metrics(X.compute()))
    assert float(cov["coverage_overall"].compute()) == 1.0


# ---------------------------------------------------------------------------
# Graded hotspot metrics and skill score
# ---------------------------------------------------------------------------

THETA = 875.0


def cold(n_samples=1, n_time=1, n_y=4, n_x=4, dx=1.0, dy=1.0):
    """A cold (300 K) temperature array, writable, with coordinates."""
    return temperature_array(np.full((n_samples, n_time, n_y, n_x), 300.0), dx=dx, dy=dy)


def test_mask_scores_identical_masks_are_perfect():
    T = make_fields(n_samples=3, n_time=4)
    s = hotspot_mask_scores(T, T)
    assert s["f1"].dims == s["iou"].dims == ("threshold",)
    assert s["f1"].values.tolist() == s["iou"].values.tolist() == [1.0]
    assert s["f1_per_time"].dims == ("threshold", "time")
    assert s["f1_per_time"].values.tolist() == [[1.0] * 4]
    assert s["n_hotspots_rmse"].item() == s["excess_heat_rmse"].item() == 0.0
    assert s["n_hotspots_true"].item() == s["n_hotspots_pred"].item() == 1.0  # one hot disc each
    assert s["excess_heat_true"].item() == s["excess_heat_pred"].item() > 0


def test_mask_scores_disjoint_masks_score_zero():
    truth, pred = cold(), cold()
    truth[0, 0, 0, 0] = 1000.0
    pred[0, 0, 3, 3] = 1000.0
    s = hotspot_mask_scores(truth, pred)
    assert s["f1"].item() == s["iou"].item() == 0.0
    assert s["n_hotspots_rmse"].item() == 0.0  # one hotspot each, in the wrong place
    assert s["excess_heat_rmse"].item() == 0.0


def test_mask_scores_pool_known_confusion_counts():
    # time 0: TP = 2, FP = 1 (F1 4/5); time 1: FN = 1 only (F1 0), in another sample.
    truth, pred = cold(n_samples=2, n_time=2), cold(n_samples=2, n_time=2)
    truth[0, 0, 0, :2] = pred[0, 0, 0, :2] = 1000.0
    pred[0, 0, 2, 2] = 1000.0
    truth[1, 1, 3, 0] = 1000.0
    s = hotspot_mask_scores(truth, pred)
    # Pooled: TP = 2, FP = 1, FN = 1, not the mean of the per-time values (0.4).
    assert s["f1"].item() == pytest.approx(2.0 / 3.0)
    assert s["iou"].item() == pytest.approx(0.5)
    np.testing.assert_allclose(s["f1_per_time"].sel(threshold=THETA), [0.8, 0.0])
    # Hotspots per image: truth (1, 0, 0, 1), pred (2, 0, 0, 0).
    assert s["n_hotspots_true"].item() == pytest.approx(0.5)
    assert s["n_hotspots_pred"].item() == pytest.approx(0.5)
    assert s["n_hotspots_rmse"].item() == pytest.approx(math.sqrt((1 + 1) / 4))


def test_mask_scores_both_empty_score_one():
    truth, pred = cold(n_time=2), cold(n_time=2)
    truth[0, 1, 1, 1] = pred[0, 1, 1, 1] = 2000.0  # hot at t = 1 only, in both
    pred[0, 1, 1, 2] = 2000.0
    s = hotspot_mask_scores(truth, pred)
    # At t = 0 neither is hot: nothing to find and nothing found is a perfect score.
    assert s["f1_per_time"].values.tolist() == [[1.0, pytest.approx(2 / 3)]]
    s = hotspot_mask_scores(cold(n_time=2), cold(n_time=2) + 500.0)  # 800 K: still cold
    assert s["f1"].item() == s["iou"].item() == 1.0
    assert s["n_hotspots_pred"].item() == s["excess_heat_pred"].item() == 0.0


def test_hotspot_counts_blobs_and_4_connectivity():
    T = cold(n_samples=1, n_time=3, n_y=5, n_x=6)
    T[0, 0, 0:2, 0:2] = 1000.0  # two separated blobs
    T[0, 0, 3:5, 3:6] = 1000.0
    T[0, 1, 0, 0] = T[0, 1, 1, 1] = 1000.0  # touch at a corner only: two hotspots
    T[0, 2, 0, 0] = T[0, 2, 0, 1] = 1000.0  # share an edge: one hotspot
    n = hotspot_counts(T)
    assert n.name == "n_hotspots" and n.dims == ("sample", "time")
    assert n.values.tolist() == [[2, 2, 1]]
    assert n.attrs["connectivity"] == 4 and n.attrs["threshold"] == THETA
    assert hotspot_counts(T, threshold=1000.0).values.tolist() == [[0, 0, 0]]  # strictly above
    s = hotspot_mask_scores(T, T)
    assert s["n_hotspots_true"].item() == pytest.approx(5 / 3)


def test_excess_heat_of_one_pixel_closed_form():
    truth, pred = cold(n_samples=2, dx=2.0, dy=2.0), cold(n_samples=2, dx=2.0, dy=2.0)
    truth[0, 0, 1, 2] = THETA + 100.0
    s = hotspot_mask_scores(truth, pred, pixel_area=4.0)
    # Per image: truth (400, 0), pred (0, 0) K·µm².
    assert s["excess_heat_true"].item() == pytest.approx(200.0)
    assert s["excess_heat_pred"].item() == 0.0
    assert s["excess_heat_rmse"].item() == pytest.approx(math.sqrt(400.0**2 / 2))
    assert s["excess_heat_true"].attrs["units"] == "K·µm^2"
    # The pixel area from the 2 µm spacing of the coordinates is the same 4 µm².
    xr.testing.assert_identical(hotspot_mask_scores(truth, pred), s)
    single = hotspot_mask_scores(truth.isel(sample=[0]), pred.isel(sample=[0]), pixel_area=4.0)
    assert single["excess_heat_true"].item() == pytest.approx(400.0)


def test_mask_scores_thresholds_inputs_and_errors():
    X = make_fields(n_samples=2, n_time=4)
    pred = X * 1.05
    s = hotspot_mask_scores(X, pred, thresholds=[500.0, 875.0, 1500.0])
    assert s["threshold"].values.tolist() == [500.0, 875.0, 1500.0]
    assert s["f1_per_time"].sizes == {"threshold": 3, "time": 4}
    # A higher threshold leaves less heat above it.
    assert np.all(np.diff(s["excess_heat_true"].values) < 0)
    for name, var in s.data_vars.items():
        assert "units" in var.attrs, name
    # A scalar threshold, the temperature DataArray and the field Dataset agree.
    one = hotspot_mask_scores(X, pred, thresholds=875.0)
    xr.testing.assert_allclose(one, s.sel(threshold=[875.0]))
    temperature = X.sel(field="temperature", drop=True)
    xr.testing.assert_allclose(hotspot_mask_scores(temperature, temperature * 1.05), one)
    xr.testing.assert_allclose(
        hotspot_mask_scores(X.to_dataset(dim="field"), pred.to_dataset(dim="field")), one
    )
    # Only the common times are compared.
    short = hotspot_mask_scores(X, pred.isel(time=slice(0, 2)))
    assert short["f1_per_time"].sizes["time"] == 2
    with pytest.raises(ValueError, match="duplicate"):
        hotspot_mask_scores(X, pred, thresholds=(875.0, 875.0))
    with pytest.raises(ValueError, match="empty"):
        hotspot_mask_scores(X, pred, thresholds=())
    with pytest.raises(TypeError, match="thresholds"):
        hotspot_mask_scores(X, pred, thresholds="875")
    with pytest.raises(ValueError, match="pixel_area"):
        hotspot_mask_scores(X, pred, pixel_area=-1.0)


def test_mask_scores_without_coordinates_warn_and_count_pixels():
    T = xr.DataArray(np.full((1, 1, 2, 2), 300.0), dims=("sample", "time", "y", "x"))
    T[0, 0, 0, 0] = THETA + 10.0
    with pytest.warns(UserWarning, match="pixel_area="):
        s = hotspot_mask_scores(T, T)
    assert s["excess_heat_true"].item() == pytest.approx(10.0)
    assert s["excess_heat_true"].attrs["units"] == "K·pixel" and "note" in s.attrs


def test_f1_iou_identity_and_symmetry():
    rng = np.random.default_rng(0)
    truth = temperature_array(rng.uniform(300, 1500, (3, 4, 8, 8)))
    pred = temperature_array(rng.uniform(300, 1500, (3, 4, 8, 8)))
    s = hotspot_mask_scores(truth, pred, thresholds=(600.0, 875.0, 1200.0))
    r = hotspot_mask_scores(pred, truth, thresholds=(600.0, 875.0, 1200.0))
    np.testing.assert_allclose(s["f1"], 2 * s["iou"] / (1 + s["iou"]))
    np.testing.assert_allclose(s["f1"], r["f1"])
    assert np.all((s["iou"] > 0) & (s["iou"] < s["f1"]) & (s["f1"] < 1))
    # The counts match a direct flood fill of the true masks.
    expected = [[sum(1 for _ in _regions(truth.values[i, t] > 875.0)) for t in range(4)] for i in range(3)]
    assert hotspot_counts(truth).values.tolist() == expected
    assert float(s["n_hotspots_true"].sel(threshold=875.0)) == pytest.approx(np.mean(expected))


def _regions(mask):
    """Yield one pixel per 4-connected region of ``mask`` (plain flood fill)."""
    seen = np.zeros_like(mask, dtype=bool)
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack = [start]
        seen[start] = True
        while stack:
            i, j = stack.pop()
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    stack.append((a, b))
        yield start


def test_skill_score_reference_zero_truth_one_closed_form():
    X = make_fields(n_samples=2, n_time=3)
    reference = X.isel(time=[0, 0, 0]).assign_coords(time=X["time"]).isel(time=slice(1, None))
    truth = X.isel(time=slice(1, None))
    skill = skill_score(truth, truth, reference)
    assert skill.name == "skill" and skill.dims == ("field",)
    assert skill["field"].values.tolist() == FIELDS
    np.testing.assert_allclose(skill, 1.0)
    np.testing.assert_allclose(skill_score(truth, reference, reference), 0.0, atol=1e-12)
    # Errors of 1 and 2 units: 1 - 1/4 for every field; worse than the reference is negative.
    np.testing.assert_allclose(skill_score(truth, truth + 1.0, truth + 2.0), 0.75)
    np.testing.assert_allclose(skill_score(truth, truth + 2.0, truth + 1.0), -3.0)
    # Per field: only the pressure is predicted exactly.
    pred = truth + xr.DataArray([3.0, 0.0, 1.0], dims="field", coords={"field": FIELDS})
    np.testing.assert_allclose(skill_score(truth, pred, truth - 2.0), [1 - 9 / 4, 1.0, 1 - 1 / 4])
    # An exact reference leaves nothing to measure skill against.
    assert np.isnan(skill_score(truth, pred, truth).values).tolist() == [True, True, True]
    # A Dataset gives the same; a shorter prediction is compared on the common times.
    ds = truth.to_dataset(dim="field")
    xr.testing.assert_allclose(
        skill_score(ds, (truth + 1.0).to_dataset(dim="field"), (truth + 2.0).to_dataset(dim="field")),
        skill_score(truth, truth + 1.0, truth + 2.0),
    )
    assert float(skill_score(X, X.isel(time=[0]), X + 1.0).sel(field="pressure")) == 1.0


def test_graded_metrics_stay_lazy_on_dask_input():
    pytest.importorskip("dask")
    import dask.array  # noqa: F401
    X = make_fields()
    lazy = X.copy(data=dask.array.from_array(X.values, chunks=(1, 2, 3, 8, 16)))
    with dask.config.set(scheduler=_raising_scheduler):
        s = hotspot_mask_scores(lazy, lazy * 1.02, thresholds=(875.0, 2000.0))
        n = hotspot_counts(lazy)
        skill = skill_score(lazy, lazy * 1.01, lazy * 1.02)
        for obj in (*s.data_vars.values(), n, skill):
            assert obj.chunks is not None, obj.name
    xr.testing.assert_allclose(s.compute(), hotspot_mask_scores(X, X * 1.02, thresholds=(875.0, 2000.0)))
    xr.testing.assert_equal(n.compute(), hotspot_counts(X))
    xr.testing.assert_allclose(skill.compute(), skill_score(X, X * 1.01, X * 1.02))


# ---------------------------------------------------------------------------
# Scorers
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
# Probabilistic rollouts: coverage, spread-skill, CRPS, pinned pixels
# ---------------------------------------------------------------------------

PROB_FIELDS = ["temperature", "pressure"]


def gaussian_case(n_samples=8, n_time=3, n=50, seed=0, fields=PROB_FIELDS):
    """(truth, mean, std): truth drawn from N(mean, std²), the std varying by pixel."""
    rng = np.random.RandomState(seed)
    shape = (n_samples, n_time, len(fields), n, n)
    scale = np.array([100.0, 0.5, 0.05][: len(fields)])[:, None, None]
    mean = np.array([800.0, 6.0, 0.5][: len(fields)])[:, None, None] + scale * rng.randn(*shape)
    std = scale * (0.2 + rng.rand(*shape))
    truth = mean + std * rng.randn(*shape)
    coords = {
        "time": ("time", 1.0 + np.arange(n_time), {"units": "ns"}),
        "field": fields,
        "units": ("field", ["K", "GPa", "-"][: len(fields)]),
    }
    dims = ("sample", "time", "field", "y", "x")
    return tuple(xr.DataArray(a, dims=dims, coords=coords) for a in (truth, mean, std))


def _binomial_tol(p, n, sigmas=5.0):
    return sigmas * np.sqrt(p * (1 - p) / n)


def test_gaussian_truth_gives_nominal_coverage_and_unit_spread_skill():
    truth, mean, std = gaussian_case()
    s = probabilistic_scores(truth, mean, std, ks=(0.5, 1.0, 2.0))
    assert s["coverage"].dims == ("field", "k", "time")
    assert s["coverage_overall"].dims == ("field", "k")
    for name in ("spread", "rmse", "spread_skill", "crps", "n_pixels"):
        assert s[name].dims == ("field", "time"), name
    assert s["spread_skill_overall"].dims == s["crps_overall"].dims == ("field",)
    nominal = np.array([math.erf(k / math.sqrt(2)) for k in (0.5, 1.0, 2.0)])
    np.testing.assert_allclose(s["nominal"], nominal)
    n = 8 * 50 * 50  # pixels per (field, time)
    assert (s["n_pixels"] == n).all()
    tol = _binomial_tol(nominal, n)[None, :, None]
    assert (np.abs(s["coverage"].values - nominal[None, :, None]) < tol).all()
    tol_all = _binomial_tol(nominal, 3 * n)[None, :]
    assert (np.abs(s["coverage_overall"].values - nominal[None, :]) < tol_all).all()
    # The ratio of sqrt(mean σ²) to sqrt(mean σ²ε²): relative std ≈ sqrt(2 Σσ⁴) / (2 Σσ²).
    s4, s2 = (std.values**4).sum((0, 3, 4)), (std.values**2).sum((0, 3, 4))
    rel = np.sqrt(2 * s4) / (2 * s2)
    assert (np.abs(s["spread_skill"].values.T - 1) < 5 * rel).all()
    np.testing.assert_allclose(s["spread_skill_overall"], 1.0, atol=0.02)
    assert s["units"].values.tolist() == ["K", "GPa"]


def test_overconfident_std_lowers_coverage_and_spread_skill():
    truth, mean, std = gaussian_case(n_samples=4)
    good = probabilistic_scores(truth, mean, std)
    over = probabilistic_scores(truth, mean, std / 2)
    under = probabilistic_scores(truth, mean, std * 2)
    n = 4 * 50 * 50
    nominal = good["nominal"].values[None, :, None]
    assert (over["coverage"].values < nominal - _binomial_tol(nominal, n)).all()
    assert (under["coverage"].values > nominal + _binomial_tol(nominal, n)).all()
    np.testing.assert_allclose(over["spread_skill_overall"], 0.5, atol=0.02)
    np.testing.assert_allclose(under["spread_skill_overall"], 2.0, atol=0.05)
    # The CRPS is proper: the true distribution scores best.
    assert (good["crps_overall"] < over["crps_overall"]).all()
    assert (good["crps_overall"] < under["crps_overall"]).all()
    # RMSE is the mean's: the std does not change it.
    xr.testing.assert_allclose(good["rmse"], over["rmse"])


def _brute_crps(y, x, fair):
    """Ensemble CRPS per pixel by the O(m²) definition; members on the last axis."""
    m = x.shape[-1]
    pairs = np.abs(x[..., :, None] - x[..., None, :]).sum((-1, -2))
    return np.abs(x - y[..., None]).mean(-1) - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


@pytest.mark.parametrize("fair", [True, False])
def test_crps_ensemble_equals_brute_force(fair):
    rng = np.random.RandomState(1)
    truth = xr.DataArray(rng.randn(2, 3, 4, 5), dims=("field", "time", "sample", "x"),
                         coords={"field": ["a", "b"], "time": [1.0, 2.0, 3.0]})
    x = rng.randn(2, 3, 4, 5, 7) * 2 + 0.5
    x[..., 3] = x[..., 1]  # ties among members
    draws = xr.DataArray(x, dims=(*truth.dims, "draw"), coords=truth.coords)
    expected = _brute_crps(truth.values, x, fair).mean((2, 3))
    out = crps_ensemble(truth, draws, fair=fair)
    assert out.dims == ("field", "time")
    np.testing.assert_allclose(out.values, expected, rtol=1e-12)
    # The member order does not matter, nor where the member dim sits.
    shuffled = draws.isel(draw=rng.permutation(7)).transpose("draw", ...)
    np.testing.assert_allclose(crps_ensemble(truth, shuffled, fair=fair).values, expected, rtol=1e-12)


def test_crps_ensemble_of_one_or_identical_members_is_the_mae():
    truth, mean, _ = gaussian_case(n_samples=2, n=8)
    mae = np.abs(truth - mean).mean(("sample", "y", "x")).transpose("field", "time")
    one = mean.expand_dims(draw=1, axis=-1)
    np.testing.assert_allclose(crps_ensemble(truth, one, fair=False).values, mae.values, rtol=1e-12)
    same = mean.expand_dims(draw=4, axis=-1)
    for fair in (True, False):
        np.testing.assert_allclose(crps_ensemble(truth, same, fair=fair).values, mae.values, rtol=1e-12)
    with pytest.raises(ValueError, match="at least two members"):
        crps_ensemble(truth, one)


def test_crps_gaussian_zero_std_is_mae_and_matches_monte_carlo():
    truth, mean, std = gaussian_case(n_samples=2, n=8)
    mae = np.abs(truth - mean).mean(("sample", "y", "x")).transpose("field", "time")
    np.testing.assert_allclose(crps_gaussian(truth, mean, xr.zeros_like(std)).values, mae.values, rtol=1e-12)
    # Monte Carlo: E|X − y| − E|X − X'| / 2 with X, X' ~ N(μ, σ²), at a few pixels.
    rng = np.random.RandomState(2)
    y, mu, sigma = np.array([0.0, 1.5, -3.0]), np.array([0.3, 0.0, -1.0]), np.array([1.0, 0.5, 2.0])
    x1 = mu + sigma * rng.randn(400_000, 3)
    x2 = mu + sigma * rng.randn(400_000, 3)
    mc = np.abs(x1 - y).mean(0) - 0.5 * np.abs(x1 - x2).mean(0)
    da = lambda v: xr.DataArray(v[:, None], dims=("field", "time"), coords={"field": ["a", "b", "c"]})  # noqa: E731
    np.testing.assert_allclose(crps_gaussian(da(y), da(mu), da(sigma)).values[:, 0], mc, rtol=1e-2)
    # The fair ensemble CRPS of many draws estimates the same value.
    draws = xr.DataArray(x1.T[:, None, :2000], dims=("field", "time", "draw"), coords={"field": ["a", "b", "c"]})
    np.testing.assert_allclose(crps_ensemble(da(y), draws).values[:, 0],
                               crps_gaussian(da(y), da(mu), da(sigma)).values[:, 0], rtol=0.05)


def _with_pinned_solid(n_samples=4, n=20, seed=3):
    """A Dataset whose solid fraction is 1 (truth) and 0.9995 (mean) away from a pore."""
    truth, mean, std = gaussian_case(n_samples=n_samples, n=n, seed=seed, fields=FIELDS)
    solid = np.ones((n, n), dtype=bool)
    solid[:5, :5] = False  # the pore: 25 free pixels per image
    for arr, value in ((truth, 1.0), (mean, 0.9995)):
        arr.loc[{"field": "microstructure"}] = xr.where(
            xr.DataArray(solid, dims=("y", "x")), value, arr.sel(field="microstructure"))
    std.loc[{"field": "microstructure"}] = xr.where(
        xr.DataArray(solid, dims=("y", "x")), 1e-5, std.sel(field="microstructure"))
    return truth, mean, std, solid


def _dataset(arr, bounds=None):
    ds = arr.to_dataset(dim="field").drop_vars("units")
    for var in ds.data_vars:
        ds[var].attrs["units"] = str(arr["units"].sel(field=var).item())
    for var, (lo, hi) in (bounds or {}).items():
        ds[var].attrs.update(valid_min=lo, valid_max=hi)
    return ds


def test_pinned_pixels_are_excluded():
    truth, mean, std, solid = _with_pinned_solid()
    bounds = {"microstructure": (0.0, 1.0)}
    pinned = pinned_mask(truth, mean, bounds)
    assert pinned.dtype == bool and pinned.dims == truth.dims
    assert int(pinned.sel(field="microstructure").sum()) == solid.sum() * 4 * 3
    assert not pinned.sel(field=["temperature", "pressure"]).any()
    masked = probabilistic_scores(truth, mean, std, bounds=bounds)
    unmasked = probabilistic_scores(truth, mean, std, bounds={})
    free = truth.sel(field="microstructure").values[..., ~solid]
    assert (masked["n_pixels"].sel(field="microstructure") == free[:, 0].size).all()
    # The pinned pixels are 5e-4 off with σ = 1e-5: counted, they would ruin the coverage ...
    assert (unmasked["coverage"].sel(field="microstructure") < 0.2).all()
    cov = masked["coverage"].sel(field="microstructure", k=1.0)
    err = np.abs(truth - mean).sel(field="microstructure").values[..., ~solid]
    sig = std.sel(field="microstructure").values[..., ~solid]
    np.testing.assert_allclose(cov, (err <= sig).mean((0, 2)))
    # ... and leave the other fields alone.
    xr.testing.assert_allclose(masked.sel(field="pressure").drop_vars("n_pixels"),
                               unmasked.sel(field="pressure").drop_vars("n_pixels"))
    # CF attrs of a Dataset give the same bounds; a DataArray without bounds pins nothing.
    from_attrs = probabilistic_scores(_dataset(truth, bounds), _dataset(mean), _dataset(std))
    xr.testing.assert_allclose(from_attrs, masked)
    assert not pinned_mask(truth, mean).any()
    # crps_ensemble judges pinned pixels with the ensemble mean; coverage(bounds=) masks too.
    draws = mean.expand_dims(draw=2, axis=-1).copy()
    draws[..., 1] = draws[..., 1] + 1e-6
    sel = {"field": "microstructure"}
    assert (crps_ensemble(truth, draws, bounds=bounds).sel(sel)
            > 3 * crps_ensemble(truth, draws, bounds={}).sel(sel)).all()
    old = coverage(truth, mean, std)
    assert float(coverage(truth, mean, std, bounds=bounds)["coverage"].sel(sel)) > float(old["coverage"].sel(sel))
    assert float(coverage(truth, mean, std, bounds={})["coverage"].sel(sel)) == float(old["coverage"].sel(sel))


def test_pinned_mask_needs_both_on_the_same_bound():
    c = {"field": ["microstructure"]}
    truth = xr.DataArray([[[0.0, 0.0, 1.0, 1.0, 0.5, 0.0]]], dims=("field", "time", "x"), coords=c)
    mean = xr.DataArray([[[0.0005, 1.0, 0.9995, 0.995, 0.5, 0.002]]], dims=("field", "time", "x"), coords=c)
    b = {"microstructure": (0.0, 1.0)}
    assert pinned_mask(truth, mean, b).values.ravel().tolist() == [True, False, True, False, False, False]
    assert pinned_mask(truth, mean, b, rtol=0.01).values.ravel().tolist() == [True, False, True, True, False, True]
    # A single bound: the tolerance is rtol times the field's range in truth (1 here).
    assert pinned_mask(truth, mean, {"microstructure": (None, 1.0)}).values.ravel().tolist() == [
        False, False, True, False, False, False]


def test_probabilistic_inputs_errors_name_the_problem():
    truth, mean, std = gaussian_case(n_samples=2, n=6, fields=FIELDS)
    with pytest.raises(ValueError, match="'microstructure'"):
        probabilistic_scores(truth, mean.sel(field=["temperature", "pressure"]), std)
    with pytest.raises(ValueError, match="std has no field 'pressure'"):
        probabilistic_scores(truth, mean, std.sel(field=["temperature", "microstructure"]))
    with pytest.raises(ValueError, match="share no time step"):
        probabilistic_scores(truth, mean.assign_coords(time=mean["time"] + 100), std)
    with pytest.raises(ValueError, match=r"std has no time step\(s\) \[3.0\]"):
        probabilistic_scores(truth, mean, std.isel(time=[0, 1]))
    with pytest.raises(ValueError, match="'sample' coordinates"):
        probabilistic_scores(truth.assign_coords(sample=[5, 6]), mean.assign_coords(sample=[0, 1]), std)
    with pytest.raises(ValueError, match="non-negative"):
        probabilistic_scores(truth, mean, -std)
    with pytest.raises(ValueError, match="ks must be"):
        probabilistic_scores(truth, mean, std, ks=(1.0, -2.0))
    with pytest.raises(ValueError, match="bounds names field 'density'"):
        probabilistic_scores(truth, mean, std, bounds={"density": (0.0, 1.0)})
    with pytest.raises(ValueError, match=r"bounds\['pressure'\]"):
        pinned_mask(truth, mean, {"pressure": (2.0, 1.0)})
    with pytest.raises(ValueError, match="no 'draw' dim"):
        probabilistic_scores(truth, mean, std, draws=mean)
    with pytest.raises(ValueError, match="'x' is only in"):
        crps_gaussian(truth, mean.isel(x=0), std)
    with pytest.raises(ValueError, match="share no time step"):
        crps_ensemble(truth, mean.assign_coords(time=mean["time"] + 100).expand_dims(draw=2, axis=-1))
    # A shorter rollout is scored on the common steps, and says how many pixels it used.
    short = probabilistic_scores(truth, mean.isel(time=[1, 2]), std)
    assert short["time"].values.tolist() == [2.0, 3.0]


def test_probabilistic_scores_dataset_dask_and_draws():
    dask = pytest.importorskip("dask")
    truth, mean, std = gaussian_case(n_samples=4, n=10)
    ref = probabilistic_scores(truth, mean, std)
    lazy = [_dataset(a).chunk({"sample": 2}) for a in (truth, mean, std)]
    with dask.config.set(scheduler=_raising_scheduler):
        out = probabilistic_scores(*lazy)
    xr.testing.assert_allclose(out.compute(), ref)
    # With draws the CRPS is the fair ensemble one; the other statistics do not change.
    rng = np.random.RandomState(4)
    draws = mean + std * xr.DataArray(rng.randn(*mean.shape, 6), dims=(*mean.dims, "draw"))
    with_draws = probabilistic_scores(truth, mean, std, draws=draws)
    xr.testing.assert_allclose(with_draws["crps"], crps_ensemble(truth, draws, bounds={}))
    xr.testing.assert_allclose(with_draws.drop_vars(["crps", "crps_overall"]), ref.drop_vars(["crps", "crps_overall"]))
    assert with_draws.attrs["n_members"] == 6
    xr.testing.assert_allclose(ref["crps"], crps_gaussian(truth, mean, std))


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
