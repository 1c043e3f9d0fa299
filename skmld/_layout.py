"""Between the xarray layouts users pass and the channels-last arrays networks see.

Two input layouts are accepted by the estimators:

* *tokens*: PatchTokenizer output, dims ``TOKEN_DIMS``, with the tokenizer's
  ``skmld_*`` attrs;
* *plain fields*: a field Dataset or DataArray (already scaled), one token per sample.

Internally everything is a whole-domain array ``(sample, time, Y, X, channels)``;
the micro estimator cuts it into independent tokens, the meso one keeps it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from skmld._tokens import TOKEN_DIMS, TokenSpec, check_token_dims, grid_step
from skmld.fields import FIELD_DIMS, _validate_view, as_fields, check_time, first_nonfinite, is_lazy, to_dataset
LATENT_DIMS = ("sample", "time", "field", "channel", "token_y", "token_x", "latent_y", "latent_x")
_WHOLE = ("sample", "time", "token_y", "patch_y", "token_x", "patch_x", "field")


@dataclass
class Layout:
    """What is needed to put a network output back into the caller's layout."""

    tokens: bool
    fields: list[str]
    token_shape: tuple[int, int]
    grid_shape: tuple[int, int]
    sample: xr.DataArray
    time: xr.DataArray
    attrs: dict = field(default_factory=dict)
    # plain-field input only
    spatial_coords: dict = field(default_factory=dict)
    as_dataset: bool = False
    field_attrs: dict = field(default_factory=dict)
    ranges: list | None = None
    bounds: list | None = None  # physical [lo, hi] per field, NaN where unbounded (tokens' skmld_bounds)
    # The data's physical scales, compared between micro and meso data (see skmld.meso); None where unknown.
    units: list | None = None  # per field, "" where it has none
    spacing: tuple = (None, None)  # grid step along y, x
    time_step: float | None = None

    @property
    def domain_shape(self) -> tuple[int, int]:
        return (self.grid_shape[0] * self.token_shape[0], self.grid_shape[1] * self.token_shape[1])

    def check_fields(self, fitted: list, name: str, owner: str) -> None:
        """Refuse input whose fields are not ``fitted``, in that order, naming what is missing and unexpected."""
        if self.fields != fitted:
            missing = [f for f in fitted if f not in self.fields]
            extra = [f for f in self.fields if f not in fitted]
            raise ValueError(
                f"{name} has fields {self.fields} but {owner} was fitted on {fitted} "
                f"(missing: {missing}, unexpected: {extra}); pass the same fields in the same order."
            )

    def time_coord(self, n_times: int) -> xr.DataArray:
        """``n_times`` times continuing the input's uniform spacing."""
        t = self.time.values
        if n_times <= t.size:
            return self.time[:n_times]
        step = t[1] - t[0] if t.size > 1 else 1
        values = t[0] + step * np.arange(n_times)
        return xr.DataArray(values, dims="time", attrs=self.time.attrs, name="time")


def time_step(coord) -> float | None:
    """The median step of a numeric ``time`` coordinate (``None``: absent, datetime, or fewer than 2 values)."""
    if coord is None or coord.ndim != 1 or coord.dtype.kind not in "iuf" or coord.size < 2:
        return None
    step = float(np.median(np.diff(np.asarray(coord.values, np.float64))))
    return step if np.isfinite(step) and step > 0 else None


def _coord(da, name: str):
    """``da``'s coordinate ``name``, or None (``da.coords.get`` gives a dim without one a default index)."""
    return da.coords[name] if name in da.coords else None


def _units(da) -> list | None:
    return None if _coord(da, "units") is None else [str(u) for u in da["units"].values]


def is_tokens(X) -> bool:
    return isinstance(X, xr.DataArray) and "token_y" in X.dims


def _check_tokens(X: xr.DataArray, name: str) -> TokenSpec:
    """Dims, values dtype, time axis and ``skmld_*`` attrs of tokens (read once, in :class:`TokenSpec`)."""
    check_token_dims(X, name)
    empty = [d for d in TOKEN_DIMS if X.sizes[d] == 0]
    if empty:
        raise ValueError(f"{name} has empty dims {empty}: sizes {dict(X.sizes)}.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype {X.dtype}.")
    spec = TokenSpec.from_attrs(X.attrs, X.sizes, name)
    if "time" in X.coords and X.sizes["time"] > 1:
        check_time(X["time"], name)
    return spec


def _first_nonfinite(values, order: tuple, fields: list, name: str) -> None:
    """Name the field, sample and time of the first NaN/inf of ``values`` (dims ``order``); dask computes flags only."""
    var = xr.Variable(order, values)
    where = first_nonfinite([var.isel(field=i) for i in range(var.sizes["field"])])
    if where is not None:
        f, s, t, _ = where
        raise ValueError(f"{name} contains NaN or inf: first in field {fields[f]!s}, sample index {s}, time index {t}.")


def _float32(data):
    """float32 C-ordered numpy array (one copy at most), or a lazy float32 dask array (never loaded here)."""
    if is_lazy(data):
        return data.astype(np.float32)
    return np.asarray(data, dtype=np.float32, order="C")


def to_domain(X, *, name: str = "X", min_times: int = 1) -> tuple[np.ndarray, Layout]:
    """Convert tokens or plain fields to a float32 array ``(S, T, Y, X, F)`` and its layout.

    Dask-backed input gives a dask array: nothing is loaded but the per-(sample,
    time) finiteness flags.
    """
    if is_tokens(X):
        spec = _check_tokens(X, name)
        whole = X.transpose(*_WHOLE)
        S, T, ty, py, tx, px, F = whole.shape
        values = _float32(whole.data)
        if X.sizes["time"] < min_times:
            raise ValueError(f"{name} needs at least {min_times} time steps, got {X.sizes['time']}.")
        fields = list(spec.fields)
        if [str(f) for f in X["field"].values] != fields:
            raise ValueError(
                f"{name}'s field coordinate {list(X['field'].values)} differs from its "
                f"skmld_fields attribute {fields}."
            )
        _first_nonfinite(values, _WHOLE, fields, name)
        layout = Layout(
            tokens=True,
            fields=fields,
            token_shape=spec.token_shape,
            grid_shape=(ty, tx),
            sample=X["sample"] if "sample" in X.coords else xr.DataArray(np.arange(S), dims="sample"),
            time=X["time"] if "time" in X.coords else xr.DataArray(np.arange(T), dims="time"),
            attrs=dict(X.attrs),
            ranges=None if spec.ranges is None else [list(r) for r in spec.ranges],
            bounds=None if spec.bounds is None else [[np.nan if b is None else b for b in p] for p in spec.bounds],
            units=_units(X),
            spacing=spec.spacing,
            time_step=time_step(_coord(X, "time")),
        )
        return values.reshape(S, T, ty * py, tx * px, F), layout
    # The values are checked once, as float32 below (values beyond float32 become inf).
    _validate_view(X, name, check_values=False)
    da = as_fields(X)
    if da.sizes["time"] < min_times:
        raise ValueError(f"{name} needs at least {min_times} time steps, got {da.sizes['time']}.")
    order = ("sample", "time", "y", "x", "field")
    values = _float32(da.transpose(*order).data)
    S, T, H, W, F = values.shape
    fields = [str(f) for f in da["field"].values]
    _first_nonfinite(values, order, fields, name)
    layout = Layout(
        tokens=False,
        fields=fields,
        token_shape=(H, W),
        grid_shape=(1, 1),
        sample=da["sample"],
        time=da["time"],
        attrs=dict(da.attrs),
        spatial_coords={d: da[d] for d in ("y", "x") if d in da.coords},
        as_dataset=isinstance(X, xr.Dataset),
        field_attrs={str(v): dict(X[v].attrs) for v in X.data_vars} if isinstance(X, xr.Dataset) else {},
        units=_units(da),
        spacing=tuple(grid_step(_coord(da, d))[1] for d in ("y", "x")),
        time_step=time_step(_coord(da, "time")),
    )
    return values, layout


def _check_output(values, fields, what: str) -> None:
    """A model output ``(S, T, ..., F)`` computed from finite input must be finite (NumPy arrays only)."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(values)
    if bad.any():
        s, t = (int(v) for v in np.argwhere(bad.any(axis=tuple(range(2, values.ndim))))[0])
        f = int(np.argwhere(bad[s, t].reshape(-1, values.shape[-1]).any(axis=0))[0][0])
        raise ValueError(
            f"The model's {what} is NaN or inf (first at sample index {s}, time index {t}, "
            f"{fields[f * len(fields) // values.shape[-1]]!r}) although its input was finite: the input is "
            "likely far outside the range the model was fitted on; scale it as the training data."
        )


def from_domain(values: np.ndarray, layout: Layout, *, sample=None):
    """Inverse of :func:`to_domain` for a (possibly longer) ``(S, T', Y, X, F)`` array."""
    _check_output(values, layout.fields, "output")
    S, T = values.shape[:2]
    time = layout.time_coord(T)
    sample = layout.sample if sample is None else sample
    coords = {"sample": sample.values, "time": time, "field": layout.fields}
    if layout.tokens:
        (ty, tx), (py, px) = layout.grid_shape, layout.token_shape
        arr = values.reshape(S, T, ty, py, tx, px, len(layout.fields))
        da = xr.DataArray(arr, dims=_WHOLE, coords=coords, attrs=dict(layout.attrs))
        return da.transpose(*TOKEN_DIMS)
    da = xr.DataArray(
        values, dims=("sample", "time", "y", "x", "field"), coords={**coords, **layout.spatial_coords},
        attrs=dict(layout.attrs),
    ).transpose(*FIELD_DIMS)
    if layout.as_dataset:
        ds = to_dataset(da)
        for v, attrs in layout.field_attrs.items():
            if v in ds:
                ds[v].attrs.update(attrs)
        return ds
    return da


def latents_to_xarray(z: np.ndarray, layout: Layout, latent_channels: int, name: str) -> xr.DataArray:
    """Whole-domain latents ``(S, T, y, x, F*C)`` to dims ``LATENT_DIMS`` (token dims kept for tokens)."""
    _check_output(z, layout.fields, name)
    S, T, Yl, Xl, _ = z.shape
    ty, tx = layout.grid_shape
    F, C = len(layout.fields), latent_channels
    arr = z.reshape(S, T, ty, Yl // ty, tx, Xl // tx, F, C)
    da = xr.DataArray(
        arr,
        dims=("sample", "time", "token_y", "latent_y", "token_x", "latent_x", "field", "channel"),
        coords={"sample": layout.sample.values, "time": layout.time_coord(T), "field": layout.fields,
                "channel": np.arange(C)},
        name=name,
    ).transpose(*LATENT_DIMS)
    return da if layout.tokens else da.squeeze(("token_y", "token_x"), drop=True)


def latents_from_xarray(Z: xr.DataArray, name: str = "Z") -> np.ndarray:
    """Inverse of :func:`latents_to_xarray`: ``(S, T, y, x, F*C)``."""
    dims = list(LATENT_DIMS) if "token_y" in Z.dims else [d for d in LATENT_DIMS if not d.startswith("token")]
    if set(Z.dims) != set(dims):
        raise ValueError(f"{name} must have dims {tuple(dims)} (the output of encode), got {Z.dims}.")
    empty = [d for d in Z.dims if Z.sizes[d] == 0]
    if empty:
        raise ValueError(f"{name} has empty dims {empty}: sizes {dict(Z.sizes)}.")
    if Z.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {Z.dtype}.")
    if "token_y" not in Z.dims:
        Z = Z.expand_dims(token_y=1, token_x=1)
    arr = np.asarray(
        Z.transpose("sample", "time", "token_y", "latent_y", "token_x", "latent_x", "field", "channel").data,
        dtype=np.float32,
    )
    bad = ~np.isfinite(arr)
    if bad.any():
        s, t = (int(v) for v in np.argwhere(bad.any(axis=(2, 3, 4, 5, 6, 7)))[0])
        f = int(np.argwhere(bad[s, t].any(axis=(0, 1, 2, 3, 5)))[0][0])
        raise ValueError(
            f"{name} contains NaN or inf (or values beyond float32): first in field "
            f"{Z['field'].values[f] if 'field' in Z.coords else f}, sample index {s}, time index {t}."
        )
    S, T, ty, ly, tx, lx, F, C = arr.shape
    return arr.reshape(S, T, ty * ly, tx * lx, F * C)


def to_blocks(a: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(S, T, ty*py, tx*px, C) -> (S*ty*tx, T, py, px, C)``: each token its own sample."""
    S, T, Y, X, C = a.shape
    ty, tx = grid
    a = a.reshape(S, T, ty, Y // ty, tx, X // tx, C).transpose(0, 2, 4, 1, 3, 5, 6)
    return a.reshape(S * ty * tx, T, Y // ty, X // tx, C)


def from_blocks(a: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_blocks`."""
    N, T, py, px, C = a.shape
    ty, tx = grid
    S = N // (ty * tx)
    a = a.reshape(S, ty, tx, T, py, px, C).transpose(0, 3, 1, 4, 2, 5, 6)
    return a.reshape(S, T, ty * py, tx * px, C)
