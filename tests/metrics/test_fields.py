"""Tests of skmld.metrics._fields: field_rmse and skill_score (closed forms, layouts, dim checks)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import xarray as xr

from skmld.metrics import field_rmse, skill_score

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import FIELDS, make_fields


# ---------------------------------------------------------------------------
# field_rmse
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


# ---------------------------------------------------------------------------
# skill_score
# ---------------------------------------------------------------------------

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
