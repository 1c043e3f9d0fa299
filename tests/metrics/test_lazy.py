"""Laziness of skmld.metrics (the package's promise, every module): dask-backed input stays lazy until computed."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import xarray as xr

from skmld.metrics import (
    coverage,
    field_rmse,
    hotspot_counts,
    hotspot_mask_scores,
    hotspot_metrics,
    hotspot_rmse,
    skill_score,
)

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import _raising_scheduler, make_fields


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
