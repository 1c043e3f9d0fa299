"""Tests of skmld.metrics._pinned: pinned_mask, and the pinned pixels the probabilistic scores leave out."""

from __future__ import annotations

import os
import sys

import numpy as np
import xarray as xr

from skmld.metrics import coverage, crps_ensemble, pinned_mask, probabilistic_scores

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import FIELDS, _dataset, gaussian_case


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
