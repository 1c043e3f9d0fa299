"""Tests of skmld.metrics._hotspot_masks: hotspot_mask_scores (F1, IoU, hotspot counts, excess heat)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import xarray as xr

from skmld.metrics import hotspot_counts, hotspot_mask_scores

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import THETA, cold, make_fields, temperature_array


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


def test_mask_scores_temperature_name():
    X = make_fields(n_samples=2, n_time=3)
    pred = X + 60.0
    renamed = [a.assign_coords(field=["T", "P", "mu"]).to_dataset(dim="field") for a in (X, pred)]
    xr.testing.assert_allclose(hotspot_mask_scores(*renamed, temperature="T"), hotspot_mask_scores(X, pred))
    with pytest.raises(ValueError, match=r"Dataset has no 'temperature' variable; variables are \['T', 'P', 'mu'\]; "
                                         r"pass temperature='T'\.$"):
        hotspot_mask_scores(*renamed)
