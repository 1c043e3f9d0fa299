"""Patch tokenizer: cut field data into scaled building blocks (tokens).

A meso domain is a correlated system of micro-scale building blocks. The
:class:`PatchTokenizer` scales every field to [0, 1], pads the grid to a whole
number of tokens and exposes the tokens as named dims; its inverse stitches
them back. No TensorFlow here.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skmld.fields import (
    SPATIAL_DIMS,
    VARIABLE_DIMS,
    _coord_label,
    _field_view,
    _validate_view,
    is_lazy,
)

__all__ = ["TOKEN_DIMS", "PatchTokenizer"]

#: Dimensions of the token DataArray returned by :meth:`PatchTokenizer.transform`.
TOKEN_DIMS: tuple[str, ...] = (
    "sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x",
)
#: Keys :meth:`PatchTokenizer.transform` writes to the tokens' attrs.
TOKEN_ATTRS: tuple[str, ...] = (
    "skmld_fields", "skmld_ranges", "skmld_token_shape", "skmld_grid_shape", "skmld_input_shape",
    "skmld_bounds",
)
_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
_FLOAT32_MAX = float(np.finfo(np.float32).max)



def _pad_index(n: int, pad: int, mode: str) -> np.ndarray:
    # Every non-constant numpy.pad mode is an index remapping: pad the indices.
    return np.pad(np.arange(n), (0, pad), mode=mode)


class PatchTokenizer(TransformerMixin, BaseEstimator):
    """Scale fields to [0, 1] and cut the grid into equal patches (tokens).

    Each token is a ``patch_y`` × ``patch_x`` building block of the domain; the
    dynamics estimators treat tokens of micro data as independent samples and
    learn the coupling between the tokens of meso data.

    Parameters
    ----------
    patch_size : int, (int, int) or None, default=None
        Token side(s) in grid points, each a multiple of ``multiple_of``.
        ``None`` makes the whole domain, rounded up to ``multiple_of``, one token.
    ranges : dict of str to (float, float), default=None
        Fixed scaling range ``(min, max)`` per field, e.g.
        ``{"temperature": (300, 5000)}``; fields not listed get the min and max
        of the data seen in ``fit``. A range with ``max == min`` (a constant
        field) uses scale 1, so the field is only shifted to 0.
    multiple_of : int, default=32
        Patch sides must be multiples of this (the networks' downsampling
        factor).
    pad_mode : {"edge", "constant", "reflect", "symmetric", "wrap"}, default="edge"
        How the grid is padded at its bottom/right end to a whole number of
        tokens, as in :func:`numpy.pad`; ``"constant"`` pads with 0 *after*
        scaling (the field's range minimum).

    Attributes
    ----------
    fields_ : list of str
        Field names, in order.
    ranges_ : dict of str to (float, float)
        Scaling range per field, in field order.
    units_ : dict of str to str
        Units of the fields that have them.
    bounds_ : dict of str to (float or None, float or None)
        Physical bounds per field, from the CF attrs ``valid_min`` /
        ``valid_max`` of a Dataset's variables (``None``: unbounded). Models
        keep their predictions within them; ``inverse_transform`` writes them back.
    input_shape_ : (int, int)
        Grid shape ``(y, x)`` seen in ``fit``.
    token_shape_ : (int, int)
        Token (patch) shape ``(patch_y, patch_x)``.
    grid_shape_ : (int, int)
        Number of tokens ``(token_y, token_x)``.
    padding_ : (int, int)
        Rows and columns of padding at the bottom and right.

    See Also
    --------
    skmld.as_fields : The canonical field DataArray.

    Notes
    -----
    ``transform`` returns float32 tokens with dims ``("sample", "time", "field",
    "token_y", "token_x", "patch_y", "patch_x")``, a ``units`` coordinate on
    ``field`` and the attrs ``skmld_fields``, ``skmld_ranges`` (``[lo, hi]``
    per field), ``skmld_token_shape``, ``skmld_grid_shape`` and
    ``skmld_input_shape`` (the unpadded grid). Values outside the fitted range
    map outside [0, 1]; they are never clipped. On dask input ``fit`` computes
    only the per-field minimum and maximum, and ``transform`` stays lazy.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.RandomState(0)
    >>> X = xr.Dataset({"temperature": (("sample", "time", "y", "x"),
    ...                                 300 + 100 * rng.rand(2, 3, 6, 10), {"units": "K"})})
    >>> tok = PatchTokenizer(patch_size=4, multiple_of=2).fit(X)
    >>> tok.grid_shape_, tok.padding_
    ((2, 3), (2, 2))
    >>> T = tok.transform(X)
    >>> T.dims
    ('sample', 'time', 'field', 'token_y', 'token_x', 'patch_y', 'patch_x')
    >>> float(T.min()), float(T.max())
    (0.0, 1.0)
    >>> back = tok.inverse_transform(T)
    >>> bool(np.allclose(back["temperature"], X["temperature"], rtol=1e-6))
    True
    """

    _parameter_constraints: dict = {
        "patch_size": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "ranges": [None, dict],
        "multiple_of": [Interval(Integral, 1, None, closed="left")],
        "pad_mode": [StrOptions(set(_PAD_MODES))],
    }

    def __init__(self, patch_size=None, ranges=None, multiple_of=32, pad_mode="edge"):
        self.patch_size = patch_size
        self.ranges = ranges
        self.multiple_of = multiple_of
        self.pad_mode = pad_mode

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Input is labelled xarray field data, not a 2-D feature matrix.
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # ------------------------------------------------------------------ fit
    def _resolve_patch(self, shape: tuple[int, int]) -> tuple[int, int]:
        m = int(self.multiple_of)
        if self.patch_size is None:
            return tuple(-(-n // m) * m for n in shape)
        if isinstance(self.patch_size, Integral):
            patch = (int(self.patch_size),) * 2
        else:
            patch = tuple(self.patch_size)
            if len(patch) != 2 or not all(isinstance(p, Integral) and p >= 1 for p in patch):
                raise ValueError(
                    f"patch_size must be None, a positive int or a pair of positive ints "
                    f"(patch_y, patch_x), got {self.patch_size!r}."
                )
            patch = tuple(int(p) for p in patch)
        bad = [p for p in patch if p % m]
        if bad:
            raise ValueError(
                f"patch_size {patch} has sides {bad} that are not multiples of "
                f"multiple_of={m}; the networks halve the grid log2({m}) times."
            )
        if shape[0] < patch[0] or shape[1] < patch[1]:
            raise ValueError(
                f"The domain {shape} (y, x) is smaller than one token {patch}; use a "
                f"smaller patch_size or patch_size=None (the whole domain is one token)."
            )
        return patch

    def _resolve_ranges(self, view) -> dict:
        fixed = dict(self.ranges or {})
        unknown = [f for f in fixed if f not in view.names]
        if unknown:
            raise ValueError(
                f"ranges names fields {unknown} that are not in X; X has fields {view.names}."
            )
        for f, r in fixed.items():
            try:
                if isinstance(r, (str, bytes)) or any(
                    isinstance(v, (bool, np.bool_, str, bytes)) for v in r
                ):
                    raise TypeError
                lo, hi = (float(v) for v in r)
            except (TypeError, ValueError):
                raise ValueError(
                    f"ranges[{f!r}] must be a pair (min, max) of numbers, got {r!r}."
                ) from None
            if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
                raise ValueError(
                    f"ranges[{f!r}] must be finite with min <= max, got ({lo}, {hi})."
                )
            fixed[f] = (lo, hi)
        todo = [i for i, f in enumerate(view.names) if f not in fixed]
        if todo:
            # A Dataset of per-field reductions: dask computes them in one pass.
            red = {}
            for i in todo:
                red[f"lo{i}"] = view.arrays[i].min()
                red[f"hi{i}"] = view.arrays[i].max()
            red = xr.Dataset(red).compute()
            for i in todo:
                fixed[view.names[i]] = (float(red[f"lo{i}"]), float(red[f"hi{i}"]))
        for f in view.names:
            lo, hi = fixed[f]
            # Tokens are float32: the scaled offset (x - min) must fit one.
            if not np.isfinite(hi - lo) or max(abs(lo), abs(hi), hi - lo) > _FLOAT32_MAX:
                where = "ranges" if f in (self.ranges or {}) else "X"
                raise ValueError(
                    f"{where} gives field {f!r} the range ({lo:g}, {hi:g}), beyond float32 "
                    f"(|value| <= {_FLOAT32_MAX:.3g}), the dtype of the tokens; rescale the field "
                    "(e.g. change its units) first."
                )
        return {f: fixed[f] for f in view.names}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: xr.Dataset | xr.DataArray, y: Any = None) -> PatchTokenizer:
        """Learn field names, scaling ranges and the token layout.

        Parameters
        ----------
        X : xarray.Dataset or xarray.DataArray
            Field data (see :func:`skmld.validate_fields`).
        y : None
            Ignored.

        Returns
        -------
        self : PatchTokenizer
            Fitted tokenizer.
        """
        for param in ("patch_size", "multiple_of"):
            value = getattr(self, param)
            parts = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(p, (bool, np.bool_)) for p in parts):
                raise TypeError(f"{param} must be made of ints, not bools; got {value!r}.")
        view = _validate_view(X, "X")
        first = view.arrays[0]
        shape = (int(first.sizes["y"]), int(first.sizes["x"]))
        patch = self._resolve_patch(shape)
        self.fields_ = list(view.names)
        self.ranges_ = self._resolve_ranges(view)
        self.units_ = dict(view.units)
        self.bounds_ = {f: view.bounds.get(f, (None, None)) for f in self.fields_}
        self.input_shape_ = shape
        self.token_shape_ = patch
        self.grid_shape_ = tuple(-(-n // p) for n, p in zip(shape, patch))
        self.padding_ = tuple(g * p - n for g, p, n in zip(self.grid_shape_, patch, shape))
        # Kept to rebuild the fitted kind of object with its grid coords and attrs.
        self._fit_kind = view.kind
        self._attrs = dict(view.attrs)
        self._spatial_coords = {
            k: v.variable.copy(deep=True) for k, v in first.coords.items()
            if v.dims and set(v.dims) <= set(SPATIAL_DIMS)
        }
        return self

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([self.ranges_[f][0] for f in self.fields_], dtype=np.float64)
        hi = np.array([self.ranges_[f][1] for f in self.fields_], dtype=np.float64)
        scale = hi - lo
        scale[scale == 0] = 1.0  # constant field: shift only
        return lo, scale

    def _token_attrs(self) -> dict:
        return {
            "skmld_fields": [str(f) for f in self.fields_],
            "skmld_ranges": [[float(lo), float(hi)] for lo, hi in self.ranges_.values()],
            "skmld_token_shape": list(self.token_shape_),
            "skmld_grid_shape": list(self.grid_shape_),
            "skmld_input_shape": list(self.input_shape_),
            # Physical bounds (CF valid_min/valid_max), NaN where a field has none.
            "skmld_bounds": [[np.nan if b is None else b for b in self.bounds_[f]] for f in self.fields_],
        }

    # ------------------------------------------------------------ transform
    def _check_fields(self, names: list, what: str) -> list[int]:
        """Positions of the fitted fields in ``names``, or a clear error."""
        missing = [f for f in self.fields_ if f not in names]
        extra = [f for f in names if f not in self.fields_]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"misses fields {missing}")
            if extra:
                parts.append(f"has fields {extra} not seen in fit")
            raise ValueError(
                f"{what} {' and '.join(parts)}; the tokenizer was fitted on fields {self.fields_}."
            )
        return [names.index(f) for f in self.fields_]

    def transform(self, X: xr.Dataset | xr.DataArray) -> xr.DataArray:
        """Scale the fields to [0, 1] and cut the padded grid into tokens.

        Parameters
        ----------
        X : xarray.Dataset or xarray.DataArray
            Field data with the fitted fields (any order) and grid shape.
            NumPy-backed values that are NaN or inf, or too large to scale to
            float32, raise ``ValueError`` naming field, sample and time;
            dask-backed input stays lazy and is not checked here.

        Returns
        -------
        xarray.DataArray
            float32, dims ``("sample", "time", "field", "token_y", "token_x",
            "patch_y", "patch_x")`` with the ``sample``, ``time``, ``field`` (in
            fitted order) and ``units`` coordinates and the ``skmld_*`` attrs.
            Lazy if ``X`` is dask-backed.
        """
        check_is_fitted(self)
        view = _field_view(X, "X")
        order = self._check_fields(view.names, "X")
        arrays = [view.arrays[i] for i in order]
        first = arrays[0]
        shape = (int(first.sizes["y"]), int(first.sizes["x"]))
        if shape != tuple(self.input_shape_):
            raise ValueError(
                f"X has grid shape {shape} (y, x) but the tokenizer was fitted on "
                f"{tuple(self.input_shape_)}; fit a tokenizer on this grid (pass "
                f"patch_size= and ranges= of the other one to share its tokens)."
            )
        for f, a in zip(self.fields_, arrays):
            if a.dtype.kind not in "biuf":
                raise ValueError(f"X field {f!r} has non-numeric dtype {a.dtype}.")
        lo, scale = self._scale()
        (H, W), (py, px), (ty, tx) = self.input_shape_, self.token_shape_, self.grid_shape_
        S, T, F = first.sizes["sample"], first.sizes["time"], len(self.fields_)
        Hp, Wp = ty * py, tx * px
        if any(is_lazy(a.data) for a in arrays):
            grid = self._scaled_padded_dask(arrays, lo, scale)
        else:
            grid = np.empty((S, T, F, Hp, Wp), dtype=np.float32)
            inner = grid[..., :H, :W]
            for i, a in enumerate(arrays):
                # Scale straight into the output buffer: no temporary full-size copy.
                np.subtract(a.data, lo[i], out=inner[:, :, i], casting="same_kind")
                np.multiply(inner[:, :, i], np.float32(1.0 / scale[i]), out=inner[:, :, i])
            self._check_finite(inner, arrays)
            self._pad_inplace(grid)
        tokens = grid.reshape(S, T, F, ty, py, tx, px).transpose(0, 1, 2, 3, 5, 4, 6)
        coords = {
            k: v.variable for k, v in first.coords.items()
            if set(v.dims) <= {"sample", "time"}
        }
        coords["field"] = ("field", np.array(self.fields_, dtype=object))
        coords["units"] = ("field", np.array([self.units_.get(f, "") for f in self.fields_],
                                             dtype=object))
        out = xr.DataArray(tokens, dims=TOKEN_DIMS, coords=coords, attrs=self._token_attrs())
        out.name = None  # not the dask array's name
        return out

    def _check_finite(self, inner: np.ndarray, arrays: list) -> None:
        """Name the first (sample, time, field) whose scaled values are NaN or inf."""
        if inner.size == 0 or np.isfinite(inner.min()) and np.isfinite(inner.max()):
            return  # reductions: no temporary array the size of the tokens
        ok = np.isfinite(inner).all(axis=(3, 4))
        if ok.all():
            return
        s, t, i = (int(v) for v in np.argwhere(~ok)[0])
        image = np.asarray(arrays[i].isel(sample=s, time=t).values)
        if np.issubdtype(image.dtype, np.number) and not np.isfinite(image).all():
            what = "contains NaN" if np.isnan(image).any() else "contains inf"
        else:
            lo, hi = self.ranges_[self.fields_[i]]
            what = (f"has values too far outside the fitted range ({lo:g}, {hi:g}) to scale to "
                    "float32 (max |x| = {:g})".format(float(np.max(np.abs(image)))))
        raise ValueError(
            f"X {what} in field {self.fields_[i]!r} at {_coord_label(arrays[i], 'sample', s)}, "
            f"{_coord_label(arrays[i], 'time', t)}. Fill or drop non-finite values first."
        )

    def _pad_inplace(self, grid: np.ndarray) -> None:
        (H, W), (pady, padx) = self.input_shape_, self.padding_
        if pady:
            if self.pad_mode == "constant":
                grid[..., H:, :W] = 0
            else:
                grid[..., H:, :W] = grid[..., _pad_index(H, pady, self.pad_mode)[H:], :W]
        if padx:
            if self.pad_mode == "constant":
                grid[..., W:] = 0
            else:
                grid[..., W:] = grid[..., _pad_index(W, padx, self.pad_mode)[W:]]

    def _scaled_padded_dask(self, arrays, lo, scale):
        import dask.array as dsa

        stacked = dsa.stack([dsa.asarray(a.data) for a in arrays], axis=2)
        shape = (1, 1, -1, 1, 1)
        # The same operations and dtypes as the numpy path, so results are bit-identical.
        inv = (1.0 / scale).astype(np.float32).reshape(shape)
        grid = (stacked - lo.reshape(shape)).astype(np.float32) * inv
        (H, W), (pady, padx) = self.input_shape_, self.padding_
        if self.pad_mode == "constant":
            grid = dsa.pad(grid, ((0, 0),) * 3 + ((0, pady), (0, padx)), mode="constant")
        else:
            if pady:
                grid = grid[..., _pad_index(H, pady, self.pad_mode), :]
            if padx:
                grid = grid[..., _pad_index(W, padx, self.pad_mode)]
        # Whole grids per chunk so the token reshape needs no rechunk across rows.
        return grid.rechunk({3: -1, 4: -1})

    # ---------------------------------------------------- inverse_transform
    def inverse_transform(self, T: xr.DataArray) -> xr.Dataset | xr.DataArray:
        """Stitch tokens back to the original grid and undo the scaling.

        Parameters
        ----------
        T : xarray.DataArray
            Tokens with dims ``("sample", "time", "field", "token_y", "token_x",
            "patch_y", "patch_x")`` in any order, e.g. the output of
            :meth:`transform` or a model's rollout (any number of samples and
            time steps).

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            Same kind as the data passed to ``fit``, on the original (unpadded)
            grid with its ``y``/``x`` coordinates, the fitted units and attrs,
            and ``sample``/``time`` coordinates taken from ``T``.
        """
        check_is_fitted(self)
        if not isinstance(T, xr.DataArray):
            raise TypeError(
                f"T must be an xarray.DataArray with dims {TOKEN_DIMS}, got {type(T).__name__}."
            )
        missing = [d for d in TOKEN_DIMS if d not in T.dims]
        extra = [d for d in T.dims if d not in TOKEN_DIMS]
        if missing or extra:
            raise ValueError(
                f"T must have the token dims {TOKEN_DIMS}; it misses {missing} and has "
                f"extra dims {extra} (got {T.dims}). Tokens come from PatchTokenizer.transform."
            )
        token_shape = (T.sizes["patch_y"], T.sizes["patch_x"])
        grid_shape = (T.sizes["token_y"], T.sizes["token_x"])
        if token_shape != tuple(self.token_shape_) or grid_shape != tuple(self.grid_shape_):
            raise ValueError(
                f"T has token shape {token_shape} on a {grid_shape} token grid, but the "
                f"tokenizer makes token shape {tuple(self.token_shape_)} on a "
                f"{tuple(self.grid_shape_)} grid."
            )
        if "skmld_ranges" in T.attrs:
            theirs = np.asarray(T.attrs["skmld_ranges"], dtype=float)
            ours = np.asarray(self._token_attrs()["skmld_ranges"], dtype=float)
            if theirs.shape != ours.shape or not np.allclose(theirs, ours):
                raise ValueError(
                    f"T was scaled with ranges {theirs.tolist()}, this tokenizer uses "
                    f"{ours.tolist()}."
                )
        if "field" in T.coords:
            names = list(T["field"].values.tolist())
            T = T.isel(field=self._check_fields(names, "T"))
        elif T.sizes["field"] != len(self.fields_):
            raise ValueError(
                f"T has {T.sizes['field']} fields but the tokenizer was fitted on "
                f"{len(self.fields_)}: {self.fields_}."
            )
        T = T.transpose(*TOKEN_DIMS)
        lo, scale = self._scale()
        (H, W), (py, px), (ty, tx) = self.input_shape_, self.token_shape_, self.grid_shape_
        S, Tn, F = T.sizes["sample"], T.sizes["time"], T.sizes["field"]
        dtype = np.result_type(T.dtype, np.float32)
        shape = (1, 1, F, 1, 1)
        if is_lazy(T.data):
            grid = T.data.transpose(0, 1, 2, 3, 5, 4, 6).reshape(S, Tn, F, ty * py, tx * px)
            grid = grid[..., :H, :W] * scale.astype(dtype).reshape(shape) \
                + lo.astype(dtype).reshape(shape)
        else:
            # Write the affine map straight into a token-shaped view of the grid buffer.
            grid = np.empty((S, Tn, F, ty * py, tx * px), dtype=dtype)
            view = grid.reshape(S, Tn, F, ty, py, tx, px).transpose(0, 1, 2, 3, 5, 4, 6)
            np.multiply(np.asarray(T.data), scale.astype(dtype).reshape(shape + (1, 1)), out=view)
            np.add(view, lo.astype(dtype).reshape(shape + (1, 1)), out=view)
            grid = grid[..., :H, :W]
            if grid.size and not (np.isfinite(grid.min()) and np.isfinite(grid.max())):
                s, t, i = (int(v) for v in np.argwhere(~np.isfinite(grid).all(axis=(3, 4)))[0])
                raise ValueError(
                    f"T holds NaN or inf, or values too large to unscale to {dtype}, in field "
                    f"{self.fields_[i]!r} at sample index {s}, time index {t}."
                )
        coords = {
            k: v.variable for k, v in T.coords.items() if set(v.dims) <= {"sample", "time"}
        }
        coords.update(self._spatial_coords)
        if self._fit_kind is xr.Dataset:
            data_vars = {}
            for i, f in enumerate(self.fields_):
                attrs = {"units": self.units_[f]} if f in self.units_ else {}
                for key, b in zip(("valid_min", "valid_max"), self.bounds_[f]):
                    if b is not None:
                        attrs[key] = b
                data_vars[f] = xr.Variable(VARIABLE_DIMS, grid[:, :, i], attrs=attrs)
            return xr.Dataset(data_vars, coords=coords, attrs=dict(self._attrs))
        coords["field"] = ("field", np.array(self.fields_, dtype=object))
        coords["units"] = ("field", np.array([self.units_.get(f, "") for f in self.fields_],
                                             dtype=object))
        out = xr.DataArray(
            grid, dims=("sample", "time", "field", "y", "x"), coords=coords,
            attrs=dict(self._attrs),
        )
        out.name = None  # not the dask array's name
        return out
