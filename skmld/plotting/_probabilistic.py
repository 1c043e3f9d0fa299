"""Figures of probabilistic rollouts: reliability diagram and spread against skill.

Both take the Dataset of :func:`skmld.metrics.probabilistic_scores`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from skmld.metrics import _field_units
from skmld.plotting._common import _save


def _scores(scores: Any, needed: tuple[str, ...], what: str) -> xr.Dataset:
    """The computed scores Dataset, or an error naming what is missing."""
    if not isinstance(scores, xr.Dataset):
        raise TypeError(
            f"{what} takes the xarray.Dataset of skmld.metrics.probabilistic_scores, got {type(scores).__name__}."
        )
    missing = [name for name in needed if name not in scores.data_vars]
    if missing:
        raise ValueError(
            f"scores has no variable(s) {missing}, which {what} needs; its variables are "
            f"{list(scores.data_vars)}. Pass the output of probabilistic_scores(...)."
        )
    return scores.compute()


def _fields(arr: xr.DataArray) -> list:
    """Field labels of the panels; ``[None]`` (one panel) without a ``field`` dim."""
    if "field" not in arr.dims:
        return [None]
    return [f.item() if hasattr(f, "item") else f for f in arr["field"].values]


def _pick(arr: xr.DataArray, field: Any) -> xr.DataArray:
    return arr if field is None else arr.sel(field=field)


def _times(arr: xr.DataArray) -> tuple[np.ndarray, str]:
    """Lead times as floats (positions when not numeric) and the axis label."""
    if "time" not in arr.coords:
        return np.arange(arr.sizes["time"], dtype=float), "time step"
    values = arr["time"].values
    if np.issubdtype(values.dtype, np.timedelta64):
        return values / np.timedelta64(1, "ns"), "lead time [ns]"
    try:
        return np.asarray(values, dtype=float), f"lead time [{arr['time'].attrs.get('units', 'ns')}]"
    except (TypeError, ValueError):
        return np.arange(arr.sizes["time"], dtype=float), "time step"


def plot_reliability(
    scores: xr.Dataset,
    *,
    by_time: bool = True,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Reliability diagram: observed coverage of ``mean ± k·std`` against nominal coverage.

    One panel per field. Each point is one band half-width ``k`` of the
    scores, at ``x = erf(k/√2)``, the coverage of a calibrated Gaussian, and
    ``y`` the fraction of truths inside the band. The dashed diagonal is
    perfect calibration: points below it mean over-confident predictions (the
    std is too small), points above it under-confident ones.

    Parameters
    ----------
    scores : xarray.Dataset
        The output of :func:`skmld.metrics.probabilistic_scores`: ``coverage``
        (field, k, time), the ``nominal`` coordinate on ``k`` and, for the
        thick curve, ``coverage_overall``.
    by_time : bool, default=True
        Also draw one thin curve per lead time, coloured by time (colourbar).
    path : str or path-like, default=None
        Save the figure there as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from skmld.metrics import probabilistic_scores
    >>> rng = np.random.default_rng(0)
    >>> truth = xr.DataArray(rng.normal(size=(2, 3, 500)), dims=("field", "time", "x"),
    ...                      coords={"field": ["temperature", "pressure"], "time": [1.0, 2.0, 3.0]})
    >>> fig = plot_reliability(probabilistic_scores(truth, truth * 0, truth * 0 + 1, ks=(0.5, 1, 2)))
    >>> len(fig.axes), len(fig.axes[0].lines)  # two panels and the colourbar; diagonal, 3 times, overall
    (3, 5)
    """
    ds = _scores(scores, ("coverage",), "plot_reliability")
    cov = ds["coverage"]
    if "k" not in cov.dims:
        raise ValueError(f"coverage needs a 'k' dim (one entry per band half-width); dims are {cov.dims}.")
    ks = np.asarray(cov["k"].values, dtype=float)
    nominal = (np.asarray(ds["nominal"].values, dtype=float) if "nominal" in ds.coords
               else np.array([math.erf(k / math.sqrt(2.0)) for k in ks]))
    order = np.argsort(nominal)
    fields = _fields(cov)
    per_time = bool(by_time) and "time" in cov.dims
    overall = ds["coverage_overall"] if "coverage_overall" in ds.data_vars else None
    if overall is None and "time" in cov.dims:
        per_time = True  # nothing else to draw
    fig = Figure(figsize=(3.3 * len(fields) + (1.0 if per_time else 0.3), 3.6), layout="constrained")
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    cmap = colormaps["viridis"]
    if per_time:
        times, time_label = _times(cov)
        lo, hi = float(np.nanmin(times)), float(np.nanmax(times))
        norm = Normalize(lo, hi if hi > lo else lo + 1.0)
    for ax, field in zip(axes, fields):
        ax.plot([0.0, 1.0], [0.0, 1.0], color="0.5", ls="--", lw=1.0, label="calibrated")
        sel = _pick(cov, field)
        if per_time:
            for i, t in enumerate(times):
                ax.plot(nominal[order], sel.isel(time=i).values[order], "-o", ms=2.5, lw=0.9,
                        color=cmap(norm(t)), alpha=0.85)
        curve = _pick(overall, field) if overall is not None else (sel if "time" not in sel.dims else None)
        if curve is not None:
            y = curve.values[order]
            ax.plot(nominal[order], y, "k-s", ms=4, lw=2.0, label="all lead times")
            for k, x, yy in zip(ks[order], nominal[order], y):
                if np.isfinite(yy):
                    ax.annotate(f"k={k:g}", (x, yy), xytext=(4, -10), textcoords="offset points", fontsize=7)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("nominal coverage erf(k/√2)", fontsize=8)
        ax.set_ylabel("observed coverage", fontsize=8)
        ax.set_title("" if field is None else str(field), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    if per_time:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.tolist(), shrink=0.85, pad=0.02).set_label(
            time_label, fontsize=8
        )
    fig.suptitle("reliability: observed coverage of mean ± k·std (below the diagonal: over-confident)",
                 fontsize=9)
    return _save(fig, path)


def plot_spread_skill(
    scores: xr.Dataset,
    *,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Spread and error of the predictive mean against lead time, and their ratio.

    One column per field. The top row draws the spread sqrt(mean std²) and the
    RMSE of the mean, in the field's units; the bottom row their ratio, with
    the calibrated value 1 dashed and the ratio over all lead times dotted. A
    ratio below 1 means the predicted std is too small for the actual error
    (over-confident), above 1 too large.

    Parameters
    ----------
    scores : xarray.Dataset
        The output of :func:`skmld.metrics.probabilistic_scores`, with
        ``spread`` and ``rmse`` on dims (field, time); ``spread_skill`` and
        ``spread_skill_overall`` are used when present.
    path : str or path-like, default=None
        Save the figure there as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from skmld.metrics import probabilistic_scores
    >>> rng = np.random.default_rng(0)
    >>> truth = xr.DataArray(rng.normal(size=(1, 4, 500)), dims=("field", "time", "x"),
    ...                      coords={"field": ["pressure"], "time": [1.0, 2.0, 3.0, 4.0]})
    >>> fig = plot_spread_skill(probabilistic_scores(truth, truth * 0, truth * 0 + 1))
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['pressure [GPa]', 'spread / RMSE']
    """
    ds = _scores(scores, ("spread", "rmse"), "plot_spread_skill")
    spread, rmse = ds["spread"], ds["rmse"]
    if "time" not in spread.dims:
        raise ValueError(f"spread needs a 'time' dim to plot against lead time; dims are {spread.dims}.")
    ratio = ds["spread_skill"] if "spread_skill" in ds.data_vars else spread / rmse.where(rmse > 0)
    overall = ds["spread_skill_overall"] if "spread_skill_overall" in ds.data_vars else None
    fields = _fields(spread)
    units = _field_units(spread)
    times, time_label = _times(spread)
    fig = Figure(figsize=(3.6 * len(fields) + 0.4, 5.4), layout="constrained")
    axes = fig.subplots(2, len(fields), squeeze=False, sharex="col")
    for c, field in enumerate(fields):
        top, bottom = axes[0, c], axes[1, c]
        top.plot(times, _pick(spread, field).values, "C0-o", ms=3, label="spread √(mean std²)")
        top.plot(times, _pick(rmse, field).values, "C1-s", ms=3, label="RMSE of the mean")
        unit = units.get(field, "") or "-"
        top.set_ylabel(f"{field} [{unit}]" if field is not None else f"[{unit}]", fontsize=8)
        top.set_title("" if field is None else str(field), fontsize=9)
        top.set_ylim(bottom=0.0)
        values = np.asarray(_pick(ratio, field).values, dtype=float)
        bottom.plot(times, values, "k-o", ms=3, label="spread / RMSE")
        bottom.axhline(1.0, color="0.5", ls="--", lw=1.0, label="calibrated")
        if overall is not None:
            value = float(_pick(overall, field))
            if np.isfinite(value):
                bottom.axhline(value, color="C3", ls=":", lw=1.2, label=f"all lead times: {value:.2f}")
        bottom.set_ylabel("spread / RMSE", fontsize=8)
        bottom.set_xlabel(time_label, fontsize=8)
        finite = values[np.isfinite(values)]
        bottom.set_ylim(0.0, max(1.25, 1.1 * float(finite.max())) if finite.size else 1.25)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("spread against skill of the predictive distribution", fontsize=9)
    return _save(fig, path)
