"""What a token DataArray is: its fields, token and grid geometry, scaling and bounds.

:class:`TokenSpec` is written to the tokens' attrs by :meth:`TokenSpec.to_attrs`
and read back, checked, by :meth:`TokenSpec.from_attrs`; the tokenizer and the
estimators' layout helper use these two and nothing else, so the attrs schema
lives here only. Also here: how a grid is seen as tokens (:func:`as_tokens`),
the coordinates of a grid (:func:`grid_step`, :func:`grid_coords`), and the
token shape and scaling ranges a tokenizer resolves from its parameters and
data. No TensorFlow here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import xarray as xr

from skmld.fields import _check_finite, is_lazy

__all__ = ["TOKEN_ATTRS", "TOKEN_DIMS", "TokenSpec", "as_tokens", "check_token_dims", "grid_coords", "grid_step",
           "resolve_patch", "resolve_ranges"]

#: Dimensions of a token DataArray, in order.
TOKEN_DIMS: tuple[str, ...] = (
    "sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x",
)
#: The attrs of tokens, in the order :meth:`TokenSpec.to_attrs` writes them.
TOKEN_ATTRS: tuple[str, ...] = (
    "skmld_fields", "skmld_ranges", "skmld_token_shape", "skmld_grid_shape", "skmld_input_shape",
    "skmld_bounds", "skmld_spacing", "skmld_origin",
)
_REQUIRED = ("skmld_fields", "skmld_token_shape", "skmld_grid_shape")
_UNCHANGED = "pass the output of PatchTokenizer.transform (or a model's prediction of it) unchanged"
Pair = tuple[float | None, float | None]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_token_dims(T, name: str) -> None:
    """Raise ValueError unless ``T`` has exactly the dims :data:`TOKEN_DIMS` (any order)."""
    missing = [d for d in TOKEN_DIMS if d not in T.dims]
    extra = [d for d in T.dims if d not in TOKEN_DIMS]
    if missing or extra:
        raise ValueError(
            f"{name} must have the token dims {TOKEN_DIMS}; it misses {missing} and has extra dims "
            f"{extra} (got {T.dims}). Tokens come from PatchTokenizer.transform."
        )


def grid_step(coord) -> tuple[float | None, float | None]:
    """``(origin, spacing)`` of a 1-D numeric coordinate with a uniform step; ``None`` where unknown."""
    if coord is None or coord.ndim != 1 or coord.dtype.kind not in "iuf" or coord.size == 0:
        return None, None
    c = np.asarray(coord.values, dtype=np.float64)
    if not np.isfinite(c).all():
        return None, None
    if c.size < 2:
        return float(c[0]), None
    step = (c[-1] - c[0]) / (c.size - 1)
    uniform = step > 0 and np.allclose(np.diff(c), step, rtol=1e-6, atol=0)
    return float(c[0]), float(step) if uniform else None


def as_tokens(grid: xr.DataArray, token_shape) -> xr.DataArray:
    """A grid (dims ``y``, ``x``, a whole number of tokens) seen as tokens, dims :data:`TOKEN_DIMS` (others first).

    A view of NumPy data, lazy on dask (chunks should span ``y`` and ``x``).
    """
    py, px = token_shape
    tokens = grid.coarsen(y=py, x=px).construct(y=("token_y", "patch_y"), x=("token_x", "patch_x"))
    return tokens.transpose(..., *[d for d in TOKEN_DIMS if d in tokens.dims])


def _close(a, b, scale: float = 0.0) -> bool:
    """Whether two coordinate values agree; ``None`` (unknown) agrees with anything."""
    return a is None or b is None or abs(a - b) <= 1e-6 * max(abs(a), abs(b), abs(scale))


def grid_coords(shape, spacing: Pair, origin: Pair, fitted: Mapping, fitted_shape) -> dict:
    """``y``/``x`` coords of a ``shape`` grid: ``fitted`` (coords of the ``fitted_shape`` grid) if they agree with
    ``spacing`` and ``origin``, else coordinates continuing them (the fitted ones where unknown)."""
    steps = [grid_step(fitted.get(d)) for d in ("y", "x")]
    if tuple(shape) == tuple(fitted_shape) and all(
            _close(o, fo, s or fs or 0.0) and _close(s, fs) for o, s, (fo, fs) in zip(origin, spacing, steps)):
        return dict(fitted)
    coords = {}
    for d, n, o, s, (fo, fs) in zip(("y", "x"), shape, origin, spacing, steps):
        o, s, old = (fo if o is None else o), (fs if s is None else s), fitted.get(d)
        if o is not None and (s is not None or n == 1):
            dtype = old.dtype if old is not None and old.dtype.kind == "f" else np.float64
            coords[d] = xr.Variable(d, (o + (s or 0.0) * np.arange(n)).astype(dtype),
                                    attrs={} if old is None else dict(old.attrs))
    return coords


def resolve_patch(patch_size, multiple_of: int, shape: tuple[int, int]) -> tuple[int, int]:
    """The token shape of ``PatchTokenizer(patch_size=..., multiple_of=...)`` on a ``shape`` grid."""
    m = int(multiple_of)
    if patch_size is None:
        return tuple(-(-n // m) * m for n in shape)
    patch = (patch_size,) * 2 if isinstance(patch_size, Integral) else tuple(patch_size)
    if len(patch) != 2 or not all(isinstance(p, Integral) and p >= 1 for p in patch):
        raise ValueError(f"patch_size must be None, a positive int or a pair of positive ints (patch_y, patch_x), "
                         f"got {patch_size!r}.")
    patch = tuple(int(p) for p in patch)
    bad = [p for p in patch if p % m]
    if bad:
        raise ValueError(f"patch_size {patch} has sides {bad} that are not multiples of multiple_of={m}; the "
                         f"networks halve the grid log2({m}) times.")
    if shape[0] < patch[0] or shape[1] < patch[1]:
        raise ValueError(f"The domain {shape} (y, x) is smaller than one token {patch}; use a smaller patch_size "
                         "or patch_size=None (the whole domain is one token).")
    return patch


def resolve_ranges(ranges, view, check: bool, check_fixed: bool) -> dict:
    """Scaling range per field of a field view: ``ranges`` (the parameter) or the data's min and max.

    With ``check``, the NumPy values of the fields the ranges tell nothing about (fixed ones when
    ``check_fixed``, computed ones that are not finite) are checked too: NaN and inf raise ValueError.
    """
    fixed = dict(ranges or {})
    unknown = [f for f in fixed if f not in view.names]
    if unknown:
        raise ValueError(f"ranges names fields {unknown} that are not in X; X has fields {view.names}.")
    for f, r in fixed.items():
        try:
            if isinstance(r, (str, bytes)) or any(isinstance(v, (bool, np.bool_, str, bytes)) for v in r):
                raise TypeError
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise ValueError(f"ranges[{f!r}] must be a pair (min, max) of numbers, got {r!r}.") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise ValueError(f"ranges[{f!r}] must be finite with min <= max, got ({lo}, {hi}).")
        fixed[f] = (lo, hi)
    given = set(fixed)
    todo = [i for i, f in enumerate(view.names) if f not in fixed]
    # NumPy-backed fields with a fixed range are read too, to warn when they lie wholly outside it
    # (lazy data are not read for a warning).
    compared = [i for i, f in enumerate(view.names) if f in given and not is_lazy(view.arrays[i])
                and view.arrays[i].size]
    if todo or compared:
        # One Dataset of per-field reductions: dask computes them in one pass. For the ranges NaN
        # propagates (skipna=False), so a range that is not finite flags a field to check.
        red = xr.Dataset({f"{k}{i}": getattr(view.arrays[i], k)(skipna=i in compared)
                          for i in todo + compared for k in ("min", "max")}).compute()
        for i in todo:
            fixed[view.names[i]] = (float(red[f"min{i}"]), float(red[f"max{i}"]))
    if check:
        suspects = [i for i, f in enumerate(view.names)
                    if (check_fixed if f in given else not np.isfinite(fixed[f]).all())]
        if suspects:
            _check_finite(view._replace(names=[view.names[i] for i in suspects],
                                        arrays=[view.arrays[i] for i in suspects]), "X")
    for i in compared:
        f, (lo, hi) = view.names[i], fixed[view.names[i]]
        vmin, vmax, span = float(red[f"min{i}"]), float(red[f"max{i}"]), max(hi - lo, 1e-300)
        # Wholly outside, as normalised data against physical ranges; partly outside is common
        # (meso data hotter than the micro ranges they are scaled with) and not warned about.
        if vmax < lo or vmin > hi:
            warnings.warn(f"Field {f!r} has values in [{vmin:g}, {vmax:g}], wholly outside its fixed range "
                          f"ranges[{f!r}] = ({lo:g}, {hi:g}): they scale to "
                          f"[{(vmin - lo) / span:.3g}, {(vmax - lo) / span:.3g}]"
                          " instead of [0, 1]. Data min-max normalised to [0, 1] get their physical units "
                          "back with normalised_from= (skmld.datasets.from_reference_arrays, "
                          "skmld.open_fields).", UserWarning, stacklevel=4)
    for f in view.names:
        lo, hi = fixed[f]
        # Tokens are float32: the scaled offset (x - min) must fit one.
        if not np.isfinite(hi - lo) or max(abs(lo), abs(hi), hi - lo) > _FLOAT32_MAX:
            where = "ranges" if f in given else "X"
            raise ValueError(f"{where} gives field {f!r} the range ({lo:g}, {hi:g}), beyond float32 (|value| <= "
                             f"{_FLOAT32_MAX:.3g}), the dtype of the tokens; rescale the field (e.g. change its "
                             "units) first.")
    return {f: fixed[f] for f in view.names}


def _ints(value, n: int):
    """``value`` as a tuple of ``n`` ints (integral reals, not bools), or None."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != n:
        return None
    if not all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in value):
        return None
    if not all(math.isfinite(v) and float(v).is_integer() for v in value):
        return None
    return tuple(int(v) for v in value)


def _pairs(value, n: int, name: str, key: str, *, allow_nan: bool) -> np.ndarray:
    """``value`` as an ``(n, 2)`` float array of ``(min, max)`` pairs, else ValueError."""
    try:
        pairs = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        pairs = None
    ok = pairs is not None and pairs.shape == (n, 2)
    if ok:
        finite = ~np.isinf(pairs) if allow_nan else np.isfinite(pairs)
        ok = finite.all() and not (pairs[:, 1] < pairs[:, 0]).any()
    if not ok:
        nan = ", NaN where a field has no bound" if allow_nan else ""
        raise ValueError(
            f"{name}'s {key} attribute {value!r} must hold a {'' if allow_nan else 'finite '}(min, max) pair per "
            f"field ({n} fields){nan}."
        )
    return pairs


def _optional(pair: Pair) -> list:
    return [np.nan if v is None else float(v) for v in pair]


@dataclass(frozen=True)
class TokenSpec:
    """Fields and geometry of tokens: the content of their ``skmld_*`` attrs.

    Parameters
    ----------
    fields : tuple of str
        Field names, in the order of the ``field`` dim.
    token_shape : (int, int)
        Token (patch) shape ``(patch_y, patch_x)``.
    grid_shape : (int, int)
        Number of tokens ``(token_y, token_x)``.
    input_shape : (int, int) or None, default=None
        The grid ``(y, x)`` before padding to whole tokens.
    ranges : tuple of (float, float) or None, default=None
        Scaling range ``(min, max)`` per field.
    bounds : tuple of (float or None, float or None) or None, default=None
        Physical bounds per field (``None``: unbounded).
    spacing, origin : (float or None, float or None), default=(None, None)
        Step and first value of the ``y`` and ``x`` coordinates (``None``: unknown).
    """

    fields: tuple[str, ...]
    token_shape: tuple[int, int]
    grid_shape: tuple[int, int]
    input_shape: tuple[int, int] | None = None
    ranges: tuple[tuple[float, float], ...] | None = None
    bounds: tuple[Pair, ...] | None = None
    spacing: Pair = (None, None)
    origin: Pair = (None, None)

    @classmethod
    def for_grid(cls, input_shape, token_shape, **kwargs) -> TokenSpec:
        """The spec of an ``input_shape`` grid padded to whole tokens of ``token_shape``."""
        grid = tuple(-(-int(n) // int(p)) for n, p in zip(input_shape, token_shape))
        return cls(token_shape=tuple(int(p) for p in token_shape), grid_shape=grid,
                   input_shape=tuple(int(n) for n in input_shape), **kwargs)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """The grid ``(y, x)`` the tokens cover, padding included."""
        return tuple(g * p for g, p in zip(self.grid_shape, self.token_shape))

    @property
    def padding(self) -> tuple[int, int]:
        """Rows and columns of padding at the bottom and right (0 where ``input_shape`` is unknown)."""
        if self.input_shape is None:
            return (0, 0)
        return tuple(p - n for p, n in zip(self.padded_shape, self.input_shape))

    def to_attrs(self) -> dict:
        """The ``skmld_*`` attrs of tokens with this spec (keys in :data:`TOKEN_ATTRS` order, unknowns left out)."""
        attrs = {
            "skmld_fields": [str(f) for f in self.fields],
            "skmld_ranges": None if self.ranges is None else [[float(lo), float(hi)] for lo, hi in self.ranges],
            "skmld_token_shape": list(self.token_shape),
            "skmld_grid_shape": list(self.grid_shape),
            "skmld_input_shape": None if self.input_shape is None else list(self.input_shape),
            # NaN where a field has no bound, or a coordinate is unknown: attrs hold no None.
            "skmld_bounds": None if self.bounds is None else [_optional(b) for b in self.bounds],
            "skmld_spacing": None if self.input_shape is None else _optional(self.spacing),
            "skmld_origin": None if self.input_shape is None else _optional(self.origin),
        }
        return {k: v for k, v in attrs.items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs: Mapping, sizes: Mapping, name: str = "T") -> TokenSpec:
        """Read and check the spec of tokens with ``attrs`` and dim ``sizes``.

        Raises
        ------
        ValueError
            If a required attr (fields, token and grid shape) is missing, or an
            attr is malformed or disagrees with ``sizes``; the message names it.
        """
        for key in _REQUIRED:
            if key not in attrs:
                raise ValueError(
                    f"{name} has token dims but no {key!r} attribute; {_UNCHANGED} (its attrs record fields, "
                    "ranges and token shape)."
                )
        n = sizes["field"]
        fields = attrs["skmld_fields"]
        if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields) or len(fields) != n:
            raise ValueError(f"{name}'s skmld_fields attribute {fields!r} must list the names of its {n} fields.")
        shapes = {}
        for key, dims in (("skmld_token_shape", ("patch_y", "patch_x")), ("skmld_grid_shape", ("token_y", "token_x"))):
            value, expected = attrs[key], tuple(sizes[d] for d in dims)
            shapes[key] = _ints(value, 2)
            if shapes[key] != expected:
                raise ValueError(
                    f"{name}'s {key} attribute {value!r} does not match its {dims} sizes {list(expected)} (a "
                    f"{tuple(sizes[d] for d in ('token_y', 'token_x'))} token grid); {_UNCHANGED}."
                )
        token, grid = shapes["skmld_token_shape"], shapes["skmld_grid_shape"]
        input_shape = None
        if "skmld_input_shape" in attrs:
            input_shape = _ints(attrs["skmld_input_shape"], 2)
            if input_shape is None or any(not (g - 1) * p < s <= g * p for s, g, p in zip(input_shape, grid, token)):
                raise ValueError(
                    f"{name}'s skmld_input_shape attribute {attrs['skmld_input_shape']!r} is not a grid that a "
                    f"{grid} token grid of {token} tokens covers with less than a token of padding; {_UNCHANGED}."
                )
        ranges = bounds = None
        if "skmld_ranges" in attrs:
            ranges = tuple(map(tuple, _pairs(attrs["skmld_ranges"], n, name, "skmld_ranges", allow_nan=False).tolist()))
        if "skmld_bounds" in attrs:
            raw = _pairs(attrs["skmld_bounds"], n, name, "skmld_bounds", allow_nan=True).tolist()
            bounds = tuple(tuple(None if math.isnan(b) else b for b in pair) for pair in raw)
        geometry = {}
        for key in ("spacing", "origin"):
            value = attrs.get(f"skmld_{key}", [np.nan, np.nan])
            try:
                pair = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                pair = None
            if pair is None or pair.shape != (2,) or np.isinf(pair).any() or (key == "spacing" and (pair <= 0).any()):
                raise ValueError(
                    f"{name}'s skmld_{key} attribute {value!r} must be a pair (y, x) of finite "
                    f"{'positive ' if key == 'spacing' else ''}numbers, NaN where unknown."
                )
            geometry[key] = tuple(None if math.isnan(v) else float(v) for v in pair)
        return cls(tuple(fields), token, grid, input_shape, ranges, bounds, geometry["spacing"], geometry["origin"])
