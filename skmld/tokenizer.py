"""Patch tokenizer: cut field data into scaled building blocks (tokens).

A meso domain is a correlated system of micro-scale building blocks. The
:class:`PatchTokenizer` scales every field to [0, 1], pads the grid to a whole
number of tokens and exposes the tokens as named dims; its inverse stitches
them back. A fitted tokenizer cuts any grid of the fitted spacing into its
tokens, so models fitted on one domain size run on another. No TensorFlow here.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skmld import _state
from skmld._tokens import (TOKEN_ATTRS, TOKEN_DIMS, TokenSpec, as_tokens, check_token_dims, grid_coords, grid_step,
                           resolve_patch, resolve_ranges)
from skmld.fields import (FIELD_DIMS, SPATIAL_DIMS, VARIABLE_DIMS, _check_finite, _coord_label, _field_view,
                          _validate_view, first_nonfinite, is_lazy)

__all__ = ["TOKEN_ATTRS", "TOKEN_DIMS", "PatchTokenizer"]

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _pad_index(n: int, pad: int, mode: str) -> np.ndarray:
    # Every non-constant numpy.pad mode is an index remapping: pad the indices.
    return np.pad(np.arange(n), (0, pad), mode=mode)


class PatchTokenizer(_state.FittedState, TransformerMixin, BaseEstimator):
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
        Number of tokens ``(token_y, token_x)`` of the fitted grid.
    padding_ : (int, int)
        Rows and columns of padding at the bottom and right of the fitted grid.

    See Also
    --------
    skmld.as_fields : The canonical field DataArray.

    Notes
    -----
    ``transform`` returns float32 tokens with dims ``("sample", "time", "field",
    "token_y", "token_x", "patch_y", "patch_x")``, a ``units`` coordinate on
    ``field`` and the ``skmld_*`` attrs of :class:`skmld._tokens.TokenSpec`
    (fields, ranges, token and grid shape, unpadded grid, bounds, coordinate
    spacing and origin). It takes any grid with the fitted spacing, and
    ``inverse_transform`` returns the grid the tokens were made from. Values
    outside the fitted range map outside [0, 1]; they are never clipped. On
    dask input ``fit`` computes only per-slice finiteness flags and per-field
    minima and maxima, and ``transform`` stays lazy.

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
    >>> big = xr.concat([X, X], dim="x")  # another grid: twice as wide
    >>> tok.transform(big).sizes["token_x"], tok.inverse_transform(tok.transform(big)).sizes["x"]
    (5, 20)
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

    # ------------------------------------------- fitted state (skmld._state)
    _fitted_attrs = {
        "fields_": ("a list of field names", _state.str_list),
        "ranges_": ("a dict of field -> (min, max)", _state.ranges),
        "units_": ("a dict of field -> units", _state.str_dict),
        "bounds_": ("a dict of field -> (min or None, max or None)", _state.bounds),
        "input_shape_": ("a pair of ints", _state.int_tuple(2)),
        "token_shape_": ("a pair of ints", _state.int_tuple(2)),
        "grid_shape_": ("a pair of ints", _state.int_tuple(2)),
        "padding_": ("a pair of ints", _state.int_tuple(2)),
        "_fit_kind": ("'Dataset' or 'DataArray'", lambda v: v in ("Dataset", "DataArray")),
        "_attrs": ("a dict", lambda v: isinstance(v, dict)),
        "_spatial_coords": ("a dict of name -> xarray variable", _state.variables),
    }

    def _fitted_state(self) -> dict:
        state = super()._fitted_state()
        if "_fit_kind" in state:  # the class, stored by name
            state["_fit_kind"] = state["_fit_kind"].__name__
        return state

    def _set_fitted_state(self, state: dict) -> None:
        kind = state.get("_fit_kind")
        super()._set_fitted_state(state if not isinstance(kind, str) else {**state, "_fit_kind": getattr(xr, kind)})

    # ------------------------------------------------------------------ fit
    def _fit(self, X, check_fixed: bool) -> None:
        for param in ("patch_size", "multiple_of"):
            value = getattr(self, param)
            parts = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(p, (bool, np.bool_)) for p in parts):
                raise TypeError(f"{param} must be made of ints, not bools; got {value!r}.")
        view = _validate_view(X, "X", check_values=False)
        lazy = any(is_lazy(a) for a in view.arrays)
        if lazy:  # one compute of per-slice flags; NumPy values are checked with the ranges' reductions
            _check_finite(view, "X")
        ranges = resolve_ranges(self.ranges, view, check=not lazy, check_fixed=check_fixed)
        first = view.arrays[0]
        shape = (int(first.sizes["y"]), int(first.sizes["x"]))
        spec = TokenSpec.for_grid(shape, resolve_patch(self.patch_size, self.multiple_of, shape),
                                  fields=tuple(view.names))
        self.fields_ = list(view.names)
        self.ranges_ = ranges
        self.units_ = dict(view.units)
        self.bounds_ = {f: view.bounds.get(f, (None, None)) for f in self.fields_}
        self.input_shape_ = shape
        self.token_shape_ = spec.token_shape
        self.grid_shape_ = spec.grid_shape
        self.padding_ = spec.padding
        # Kept to rebuild the fitted kind of object with its grid coords and attrs.
        self._fit_kind = view.kind
        self._attrs = dict(view.attrs)
        self._spatial_coords = {k: v.variable.copy(deep=True) for k, v in first.coords.items()
                                if v.dims and set(v.dims) <= set(SPATIAL_DIMS)}

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
        self._fit(X, check_fixed=True)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: xr.Dataset | xr.DataArray, y: Any = None) -> xr.DataArray:
        """``fit(X).transform(X)``, checking the values once.

        Parameters
        ----------
        X : xarray.Dataset or xarray.DataArray
            Field data (see :func:`skmld.validate_fields`).
        y : None
            Ignored.

        Returns
        -------
        xarray.DataArray
            The tokens of ``X``, see :meth:`transform`.
        """
        self._fit(X, check_fixed=False)
        # Fields with fixed ranges were not reduced in fit: the transform checks their scaled values.
        return self._transform(X, check=[f in (self.ranges or {}) for f in self.fields_])

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.array([self.ranges_[f] for f in self.fields_], dtype=np.float64).reshape(-1, 2).T
        scale = hi - lo
        scale[scale == 0] = 1.0  # constant field: shift only
        return lo, scale

    def _spec(self, input_shape, spacing=(None, None), origin=(None, None)) -> TokenSpec:
        """The tokens of an ``input_shape`` grid."""
        return TokenSpec.for_grid(
            input_shape, self.token_shape_, fields=tuple(str(f) for f in self.fields_),
            ranges=tuple(self.ranges_[f] for f in self.fields_), bounds=tuple(self.bounds_[f] for f in self.fields_),
            spacing=tuple(spacing), origin=tuple(origin))

    # ------------------------------------------------------------ transform
    def _check_fields(self, names: list, what: str) -> list[int]:
        """Positions of the fitted fields in ``names``, or a clear error."""
        missing = [f for f in self.fields_ if f not in names]
        extra = [f for f in names if f not in self.fields_]
        if missing or extra:
            parts = [f"misses fields {missing}"] * bool(missing) + [f"has fields {extra} not seen in fit"] * bool(extra)
            raise ValueError(f"{what} {' and '.join(parts)}; the tokenizer was fitted on fields {self.fields_}.")
        return [names.index(f) for f in self.fields_]

    def _field_coords(self) -> dict:
        units = [self.units_.get(f, "") for f in self.fields_]
        return {"field": ("field", np.array(self.fields_, dtype=object)),
                "units": ("field", np.array(units, dtype=object))}

    def _grid_spec(self, arr: xr.DataArray) -> TokenSpec:
        """The tokens of ``arr``'s grid: any shape, but the fitted spacing (where both are known)."""
        steps = [grid_step(arr.coords[d].variable if d in arr.coords else None) for d in SPATIAL_DIMS]
        spacing = tuple(s for _, s in steps)
        fitted = tuple(grid_step(self._spatial_coords.get(d))[1] for d in SPATIAL_DIMS)
        differ = [d for d, a, b in zip(SPATIAL_DIMS, spacing, fitted)
                  if a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-6)]
        if differ:
            raise ValueError(
                f"X's grid spacing along {differ} differs from the fitted one: X has spacing {spacing} (y, x), the "
                f"tokenizer was fitted on {fitted}. Tokens at another resolution are other building blocks: resample "
                "X to the fitted spacing, or fit a tokenizer on it."
            )
        return self._spec((int(arr.sizes["y"]), int(arr.sizes["x"])), spacing, tuple(o for o, _ in steps))

    def transform(self, X: xr.Dataset | xr.DataArray) -> xr.DataArray:
        """Scale the fields to [0, 1] and cut the padded grid into tokens.

        Parameters
        ----------
        X : xarray.Dataset or xarray.DataArray
            Field data with the fitted fields (any order), on any grid with the
            fitted spacing (``y``/``x`` coordinates, where both have them); it
            is padded to whole tokens. NumPy-backed values that are NaN or inf,
            or too large to scale to float32, raise ``ValueError`` naming
            field, sample and time; dask-backed input stays lazy and is not
            checked here.

        Returns
        -------
        xarray.DataArray
            float32, dims ``("sample", "time", "field", "token_y", "token_x",
            "patch_y", "patch_x")`` with the ``sample``, ``time``, ``field`` (in
            fitted order) and ``units`` coordinates and the ``skmld_*`` attrs of
            ``X``'s grid. Lazy if ``X`` is dask-backed.
        """
        return self._transform(X)

    def _transform(self, X, check=None) -> xr.DataArray:
        """:meth:`transform`; ``check``: which fields' NumPy values to check (``None``: all)."""
        check_is_fitted(self)
        view = _field_view(X, "X")
        arrays = [view.arrays[i] for i in self._check_fields(view.names, "X")]
        bad = [(f, a.dtype) for f, a in zip(self.fields_, arrays) if a.dtype.kind not in "biuf"]
        if bad:
            raise ValueError(f"X field {bad[0][0]!r} has non-numeric dtype {bad[0][1]}.")
        spec = self._grid_spec(arrays[0])
        lo, scale = self._scale()
        if any(is_lazy(a) for a in arrays):
            grid = self._scaled_padded_dask(arrays, lo, scale, spec)
        else:
            grid = self._scaled_padded(arrays, lo, scale, spec, check)
        coords = {k: v.variable for k, v in arrays[0].coords.items() if set(v.dims) <= {"sample", "time"}}
        grid = xr.DataArray(grid, dims=FIELD_DIMS, coords={**coords, **self._field_coords()}, attrs=spec.to_attrs())
        return as_tokens(grid, spec.token_shape).rename(None)  # not the dask array's name

    def _scaled_padded(self, arrays, lo, scale, spec: TokenSpec, check) -> np.ndarray:
        """The scaled, padded grid ``(sample, time, field, y, x)``, written in place: no temporary."""
        (H, W), (Hp, Wp) = spec.input_shape, spec.padded_shape
        grid = np.empty((arrays[0].sizes["sample"], arrays[0].sizes["time"], len(arrays), Hp, Wp), dtype=np.float32)
        inner = grid[..., :H, :W]
        for i, a in enumerate(arrays):
            np.subtract(a.data, lo[i], out=inner[:, :, i], casting="same_kind")
            np.multiply(inner[:, :, i], np.float32(1.0 / scale[i]), out=inner[:, :, i])
        which = [i for i in range(len(arrays)) if check is None or check[i]]
        where = first_nonfinite([xr.Variable(VARIABLE_DIMS, inner[:, :, i]) for i in which])
        if where is not None:
            self._raise_nonfinite(arrays, which[where[0]], *where[1:3])
        (pady, padx), mode = spec.padding, self.pad_mode
        if pady:
            grid[..., H:, :W] = 0 if mode == "constant" else grid[..., _pad_index(H, pady, mode)[H:], :W]
        if padx:
            grid[..., W:] = 0 if mode == "constant" else grid[..., _pad_index(W, padx, mode)[W:]]
        return grid

    def _raise_nonfinite(self, arrays, i: int, s: int, t: int) -> None:
        """Say why the scaled values of field ``i`` at sample ``s``, time ``t`` are NaN or inf."""
        image = np.asarray(arrays[i].isel(sample=s, time=t).values)
        if np.issubdtype(image.dtype, np.number) and not np.isfinite(image).all():
            what = "contains NaN" if np.isnan(image).any() else "contains inf"
        else:
            lo, hi = self.ranges_[self.fields_[i]]
            what = (f"has values too far outside the fitted range ({lo:g}, {hi:g}) to scale to "
                    f"float32 (max |x| = {float(np.max(np.abs(image))):g})")
        raise ValueError(f"X {what} in field {self.fields_[i]!r} at {_coord_label(arrays[i], 'sample', s)}, "
                         f"{_coord_label(arrays[i], 'time', t)}. Fill or drop non-finite values first.")

    def _scaled_padded_dask(self, arrays, lo, scale, spec: TokenSpec):
        # The same operations and dtypes as the NumPy path, so results are bit-identical.
        grid = xr.Variable.concat([a.variable for a in arrays], dim="field").transpose(*FIELD_DIMS)
        inv = xr.Variable("field", (1.0 / scale).astype(np.float32))
        grid = (grid - xr.Variable("field", lo)).astype(np.float32) * inv
        (H, W), (pady, padx) = spec.input_shape, spec.padding
        if self.pad_mode == "constant":
            grid = grid.pad(y=(0, pady), x=(0, padx), mode="constant", constant_values=0)
        else:
            grid = grid.isel(y=_pad_index(H, pady, self.pad_mode), x=_pad_index(W, padx, self.pad_mode))
        # Whole grids per chunk so the token reshape needs no rechunk across rows.
        return grid.chunk({"y": -1, "x": -1}).data

    # ---------------------------------------------------- inverse_transform
    def inverse_transform(self, T: xr.DataArray) -> xr.Dataset | xr.DataArray:
        """Stitch tokens back to their grid and undo the scaling.

        Parameters
        ----------
        T : xarray.DataArray
            Tokens with dims ``("sample", "time", "field", "token_y", "token_x",
            "patch_y", "patch_x")`` in any order, e.g. the output of
            :meth:`transform` on any grid, or a model's rollout of it (any
            number of samples and time steps).

        Returns
        -------
        xarray.Dataset or xarray.DataArray
            Same kind as the data passed to ``fit``, with the fitted units and
            attrs and ``sample``/``time`` coordinates taken from ``T``, on the
            unpadded grid the tokens were made from (``skmld_input_shape``;
            else the fitted grid for the fitted token grid, or the whole token
            grid), with ``y``/``x`` coordinates: the fitted ones on the fitted
            grid, else continuing the tokens' (or the fitted) origin and spacing.
        """
        check_is_fitted(self)
        if not isinstance(T, xr.DataArray):
            raise TypeError(f"T must be an xarray.DataArray with dims {TOKEN_DIMS}, got {type(T).__name__}.")
        check_token_dims(T, "T")
        token_shape, grid = (T.sizes["patch_y"], T.sizes["patch_x"]), (T.sizes["token_y"], T.sizes["token_x"])
        if token_shape != tuple(self.token_shape_):
            raise ValueError(
                f"T has token shape {token_shape} on a {grid} token grid, but the tokenizer makes token shape "
                f"{tuple(self.token_shape_)}."
            )
        if "field" in T.coords:
            T = T.isel(field=self._check_fields(list(T["field"].values.tolist()), "T"))
        elif T.sizes["field"] != len(self.fields_):
            raise ValueError(f"T has {T.sizes['field']} fields but the tokenizer was fitted on {len(self.fields_)}: "
                             f"{self.fields_}.")
        spec = TokenSpec.from_attrs(T.attrs, T.sizes, "T") if any(k in T.attrs for k in TOKEN_ATTRS) else None
        if spec is not None and spec.ranges is not None:
            ours = [self.ranges_[f] for f in self.fields_]
            if not np.allclose(spec.ranges, ours):
                raise ValueError(f"T was scaled with ranges {[list(r) for r in spec.ranges]}, this tokenizer uses "
                                 f"{[list(r) for r in ours]}.")
        if spec is not None and spec.input_shape is not None:
            shape = spec.input_shape
        else:
            shape = tuple(self.input_shape_) if grid == tuple(self.grid_shape_) else tuple(
                g * p for g, p in zip(grid, self.token_shape_))
        spacing, origin = (spec.spacing, spec.origin) if spec is not None else ((None, None),) * 2
        coords = grid_coords(shape, spacing, origin, self._spatial_coords, self.input_shape_)
        return self._unscaled(T.transpose(*TOKEN_DIMS), shape, coords)

    def _unscaled(self, T: xr.DataArray, shape, spatial_coords: dict) -> xr.Dataset | xr.DataArray:
        """Tokens ``T`` (dims TOKEN_DIMS, fitted fields) unscaled on the unpadded ``shape`` grid."""
        lo, scale = self._scale()
        (H, W), (py, px) = shape, self.token_shape_
        S, Tn, F, ty, tx = (T.sizes[d] for d in TOKEN_DIMS[:5])
        dtype = np.result_type(T.dtype, np.float32)
        lo, scale = (xr.Variable("field", v.astype(dtype)) for v in (lo, scale))
        if is_lazy(T):
            grid = T.transpose("sample", "time", "field", "token_y", "patch_y", "token_x", "patch_x").data
            grid = xr.Variable(FIELD_DIMS, grid.reshape(S, Tn, F, ty * py, tx * px))[..., :H, :W] * scale + lo
            grid = grid.data
        else:
            # Write the affine map straight into a token-shaped view of the grid buffer.
            grid = np.empty((S, Tn, F, ty * py, tx * px), dtype=dtype)
            view = as_tokens(xr.DataArray(grid, dims=FIELD_DIMS), self.token_shape_).variable
            np.multiply(np.asarray(T.data), scale.set_dims(TOKEN_DIMS).data, out=view.data)
            np.add(view.data, lo.set_dims(TOKEN_DIMS).data, out=view.data)
            grid = grid[..., :H, :W]
            if grid.size and not (np.isfinite(grid.min()) and np.isfinite(grid.max())):
                s, t, i = (int(v) for v in np.argwhere(~np.isfinite(grid).all(axis=(3, 4)))[0])
                raise ValueError(f"T holds NaN or inf, or values too large to unscale to {dtype}, in field "
                                 f"{self.fields_[i]!r} at sample index {s}, time index {t}.")
        coords = {k: v.variable for k, v in T.coords.items() if set(v.dims) <= {"sample", "time"}}
        coords.update(spatial_coords)
        if self._fit_kind is xr.Dataset:
            data_vars = {}
            for i, f in enumerate(self.fields_):
                attrs = {"units": self.units_[f]} if f in self.units_ else {}
                attrs.update({k: b for k, b in zip(("valid_min", "valid_max"), self.bounds_[f]) if b is not None})
                data_vars[f] = xr.Variable(VARIABLE_DIMS, grid[:, :, i], attrs=attrs)
            return xr.Dataset(data_vars, coords=coords, attrs=dict(self._attrs))
        out = xr.DataArray(grid, dims=FIELD_DIMS, coords={**coords, **self._field_coords()}, attrs=dict(self._attrs))
        out.name = None  # not the dask array's name
        return out
