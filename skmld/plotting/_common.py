"""Helpers shared by the figures: saving, image extents, colour limits, input checks."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

_DPI = 110


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=_DPI, format="png")
    return fig


def _extent(arr: xr.DataArray) -> list[float] | None:
    """imshow extent from the x/y coordinates (pixel edges), when they exist."""
    if "x" not in arr.coords or "y" not in arr.coords:
        return None
    x = np.asarray(arr["x"].values, dtype=float)
    y = np.asarray(arr["y"].values, dtype=float)
    dx = (x[-1] - x[0]) / max(len(x) - 1, 1) or 1.0
    dy = (y[-1] - y[0]) / max(len(y) - 1, 1) or 1.0
    return [x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2]


def _check_physical(arr: xr.DataArray, name: str) -> None:
    missing = [d for d in ("time", "field", "y", "x") if d not in arr.dims]
    if missing:
        raise ValueError(
            f"{name} needs dims ('sample', 'time', 'field', 'y', 'x'); missing {missing} "
            f"(dims are {arr.dims}). Convert tokens with tokenizer.inverse_transform(...)."
        )


def _limits(arrays: Sequence[Any], zero: bool = False) -> tuple[float, float]:
    """Common finite colour limits for several panels."""
    values = np.concatenate([np.ravel(np.asarray(a)) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo = 0.0 if zero else float(values.min())
    hi = float(values.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
