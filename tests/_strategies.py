"""Hypothesis strategies of malformed skmld input, and the fuzz properties that use them.

Shared by ``tests/test_fuzz.py`` (a bounded number of examples in CI) and
``benchmarks/fuzz.py`` (a larger run); both put ``tests/`` on ``sys.path``.

The property checked by every target: the public call either succeeds with
finite output (when its input was finite) or raises one of
:data:`skmld.exceptions.DOCUMENTED_ERRORS` with a non-empty message — never
another exception type and never NaN/inf output from finite input.

Nothing here fits a network: estimator targets take already fitted models, and
the ``fit`` targets stop an estimator at the point where it would start building
its networks (an instance attribute replaces ``_make_networks``), so only
parameter and input validation runs.
"""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr
from hypothesis import strategies as st

from skmld.exceptions import DOCUMENTED_ERRORS

FIELD_NAMES = ("temperature", "pressure", "microstructure")
FIELD_DIMS = ("sample", "time", "field", "y", "x")
TOKEN_DIMS = ("sample", "time", "field", "token_y", "token_x", "patch_y", "patch_x")
TOKEN_ATTRS = ("skmld_fields", "skmld_ranges", "skmld_token_shape", "skmld_grid_shape", "skmld_input_shape")


class ReachedTraining(Exception):
    """Raised instead of building networks: fit accepted its parameters and input."""


# ----------------------------------------------------------------------------- the property
def _numeric_arrays(out: Any):
    """Every numeric array in an output (xarray objects, arrays, scalars, tuples, dicts)."""
    if isinstance(out, xr.Dataset):
        for v in out.data_vars.values():
            yield from _numeric_arrays(v)
    elif isinstance(out, xr.DataArray):
        yield str(out.name), np.asarray(out.values)
    elif isinstance(out, np.ndarray):
        yield "array", out
    elif isinstance(out, (float, np.floating, int, np.integer)) and not isinstance(out, bool):
        yield "scalar", np.asarray(out)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _numeric_arrays(v)
    elif isinstance(out, dict):
        for v in out.values():
            yield from _numeric_arrays(v)


def assert_finite(out: Any, what: str) -> None:
    """Fail if a numeric part of ``out`` holds NaN or inf."""
    for name, a in _numeric_arrays(out):
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise AssertionError(f"{what} returned non-finite values in {name!r} from finite input")


def is_finite_input(*objs: Any) -> bool:
    """Whether every numeric value (data and coordinates) of ``objs`` is finite."""
    for obj in objs:
        if isinstance(obj, (xr.Dataset, xr.DataArray)):
            data = list(obj.data_vars.values()) if isinstance(obj, xr.Dataset) else [obj]
            for p in data + list(obj.coords.values()):
                if p.dtype.kind in "fc" and not np.all(np.isfinite(np.asarray(p.values))):
                    return False
            if any(p.dtype.kind == "O" for p in data):
                return False  # object data may hold anything
        elif isinstance(obj, float) and not math.isfinite(obj):
            return False
    return True


def _where(e: BaseException) -> str:
    """``file:line`` of the innermost traceback frame inside skmld (or the innermost frame)."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/skmld/" in f.filename] or frames
    f = ours[-1]
    return f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"


def check_call(what: str, fn: Callable, *args: Any, finite: bool = True, **kwargs: Any) -> Any:
    """Run ``fn``; a documented error passes (returns None), another exception propagates.

    With ``finite=True`` a successful call must return finite numbers.
    """
    try:
        out = fn(*args, **kwargs)
    except DOCUMENTED_ERRORS as e:
        if not str(e).strip():
            raise AssertionError(f"{what} raised {type(e).__name__} without a message") from e
        return None
    except ReachedTraining:
        raise
    except Exception as e:  # the property under test
        raise AssertionError(f"{what} raised the undocumented {type(e).__name__} at {_where(e)}: {e}") from e
    if finite:
        assert_finite(out, what)
    return out


# ----------------------------------------------------------------------------- field data
@st.composite
def field_arrays(draw, max_samples: int = 3, max_times: int = 4, max_side: int = 6,
                 low: float = 0.0, high: float = 1.0) -> xr.DataArray:
    """A valid canonical field DataArray (dims FIELD_DIMS) with time/y/x coords."""
    S = draw(st.integers(1, max_samples))
    T = draw(st.integers(2, max_times))
    H = draw(st.integers(1, max_side))
    W = draw(st.integers(1, max_side))
    fields = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=3, unique=True))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).uniform(low, high, (S, T, len(fields), H, W))
    dt = draw(st.sampled_from([1.0, 2.0, 0.5]))
    return xr.DataArray(
        values, dims=FIELD_DIMS,
        coords={
            "sample": np.arange(S), "time": ("time", dt * np.arange(T), {"units": "ns"}),
            "field": list(fields), "y": 0.5 * np.arange(H), "x": 0.5 * np.arange(W),
        },
    )


def _as_dataset(da: xr.DataArray) -> xr.Dataset:
    return xr.Dataset({str(f): da.isel(field=i, drop=True) for i, f in enumerate(da["field"].values)})


def _values(obj, fn):
    """Apply ``fn`` to the values of a DataArray or of every variable of a Dataset."""
    if isinstance(obj, xr.Dataset):
        return obj.map(lambda v: v.copy(data=fn(np.asarray(v.values))), keep_attrs=True)
    return obj.copy(data=fn(np.asarray(obj.values)))


# Each mutation: (draw, obj) -> obj. Some keep the data valid (transpose, dropped coords).
def _drop_dim(draw, obj):
    dim = draw(st.sampled_from(sorted(map(str, obj.dims))))
    return obj.isel({dim: 0}, drop=True)


def _extra_dim(draw, obj):
    name = draw(st.sampled_from(["extra", "z", "channel", "token_y", "band"]))
    if name in obj.dims:
        return obj
    return obj.expand_dims({name: draw(st.integers(1, 2))})


def _rename_dim(draw, obj):
    dim = draw(st.sampled_from(sorted(map(str, obj.dims))))
    new = draw(st.sampled_from(["Y", "t", "samples", "fields", "lon", "time2"]))
    if new in obj.dims or new in obj.coords:
        return obj
    return obj.rename({dim: new})


def _transpose(draw, obj):
    dims = list(obj.dims)
    return obj.transpose(*draw(st.permutations(dims)))


def _nonfinite(draw, obj):
    bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))

    def put(v):
        v = np.array(v, dtype=float)
        if v.size:
            idx = np.random.default_rng(seed).integers(0, v.size, n)
            v.flat[idx] = bad
        return v

    return _values(obj, put)


def _huge(draw, obj):
    scale = draw(st.sampled_from([1e30, 1e38, 1e39, 1e200, 1e308]))
    return _values(obj, lambda v: np.asarray(v, dtype=float) * scale)


def _dtype(draw, obj):
    kind = draw(st.sampled_from(["int64", "int8", "bool", "complex128", "object", "str", "float16", "uint8"]))
    if kind == "str":
        return _values(obj, lambda v: v.astype(str))
    return _values(obj, lambda v: v.astype(kind))


def _empty(draw, obj):
    dims = [d for d in obj.dims]
    dim = draw(st.sampled_from(dims))
    return obj.isel({dim: slice(0, 0)})


def _time_coord(draw, obj):
    if "time" not in obj.dims:
        return obj
    T = obj.sizes["time"]
    kind = draw(st.sampled_from(["reversed", "duplicate", "uneven", "strings", "nan", "datetime",
                                 "timedelta", "complex", "huge", "tiny", "object", "bool"]))
    t = np.arange(T, dtype=float)
    if kind == "reversed":
        t = t[::-1].copy()
    elif kind == "duplicate":
        t[-1] = t[0]
    elif kind == "uneven":
        t = t**2 + t
    elif kind == "strings":
        t = np.array([f"t{i}" for i in range(T)])
    elif kind == "nan":
        t[draw(st.integers(0, T - 1))] = np.nan
    elif kind == "datetime":
        t = np.datetime64("2024-01-01") + np.arange(T) * np.timedelta64(2, "ns")
    elif kind == "timedelta":
        t = np.arange(T) * np.timedelta64(2, "ns")
    elif kind == "complex":
        t = t + 1j
    elif kind == "huge":
        t = 1e300 + t * 1e290
    elif kind == "tiny":
        t = t * 1e-310
    elif kind == "object":
        t = np.array([None] + list(range(1, T)), dtype=object)
    elif kind == "bool":
        t = np.arange(T) % 2 == 1
    return obj.assign_coords(time=("time", t))


def _field_names(draw, obj):
    if isinstance(obj, xr.Dataset):
        names = list(obj.data_vars)
        kind = draw(st.sampled_from(["rename_int", "extra_var", "extra_var_dims", "no_vars", "rename_wrong"]))
        if kind == "rename_int":
            return obj.rename({names[0]: 7})
        if kind == "rename_wrong":
            return obj.rename({names[0]: "velocity"}) if "velocity" not in names else obj
        if kind == "extra_var":
            return obj.assign(velocity=xr.zeros_like(obj[names[0]]))
        if kind == "extra_var_dims":
            return obj.assign(velocity=xr.DataArray(np.zeros(3), dims="extra"))
        return obj.drop_vars(names)
    if "field" not in obj.dims:
        return obj
    F = obj.sizes["field"]
    kind = draw(st.sampled_from(["duplicate", "ints", "drop_coord", "wrong", "mixed", "none"]))
    if kind == "drop_coord":
        return obj.drop_vars("field")
    if kind == "duplicate":
        names = ["temperature"] * F
    elif kind == "ints":
        names = list(range(F))
    elif kind == "wrong":
        names = [f"field{i}" for i in range(F)]
    elif kind == "mixed":
        names = [0] + [f"f{i}" for i in range(1, F)]
    else:
        names = [None] * F
    return obj.assign_coords(field=("field", np.array(names, dtype=object)))


def _drop_coords(draw, obj):
    names = [c for c in obj.coords if c in ("y", "x", "time", "sample", "field")]
    if not names:
        return obj
    drop = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    return obj.drop_vars(drop)


def _variable_shapes(draw, obj):
    """A Dataset whose variables differ in shape or dims order."""
    if not isinstance(obj, xr.Dataset) or len(obj.data_vars) < 2:
        return obj
    names = list(obj.data_vars)
    v = obj[names[1]]
    if "x" in v.dims and draw(st.booleans()):
        return obj.assign({names[1]: v.isel(x=0, drop=True)})  # one variable lacks a dim
    return obj.assign({names[1]: v.transpose(*reversed(v.dims))})


def _apply(mutation, draw, obj):
    """``mutation(draw, obj)``, or ``obj`` unchanged where xarray cannot build the mutated object."""
    try:
        return mutation(draw, obj)
    except (KeyError, ValueError, IndexError, TypeError):
        return obj


FIELD_MUTATIONS: dict[str, Callable] = {
    "drop_dim": _drop_dim, "extra_dim": _extra_dim, "rename_dim": _rename_dim, "transpose": _transpose,
    "nonfinite": _nonfinite, "huge": _huge, "dtype": _dtype, "empty": _empty, "time_coord": _time_coord,
    "field_names": _field_names, "drop_coords": _drop_coords, "variable_shapes": _variable_shapes,
}


@st.composite
def malformed_fields(draw, low: float = 0.0, high: float = 1.0, max_mutations: int = 2,
                     mutations: tuple[str, ...] | None = None, allow_other_types: bool = True):
    """Field data (Dataset or DataArray) with 0 to ``max_mutations`` malformations, or a non-xarray object."""
    if allow_other_types and draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([None, 3, "temperature", [1.0, 2.0], {"temperature": 1},
                                     np.zeros((1, 2, 1, 3, 3)), np.zeros((2, 2)), object()]))
    obj = draw(field_arrays(low=low, high=high))
    if draw(st.booleans()):
        obj = _as_dataset(obj)
    return mutate_fields(draw, obj, max_mutations, mutations)


def mutate_fields(draw, obj: xr.Dataset | xr.DataArray, max_mutations: int = 2,
                  mutations: tuple[str, ...] | None = None) -> xr.Dataset | xr.DataArray:
    """``obj`` (valid field data) with 0 to ``max_mutations`` malformations."""
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        return obj
    names = sorted(mutations or FIELD_MUTATIONS)
    for name in draw(st.lists(st.sampled_from(names), min_size=0, max_size=max_mutations)):
        obj = _apply(FIELD_MUTATIONS[name], draw, obj)
    return obj


# ----------------------------------------------------------------------------- tokens
def _tamper_attrs(draw, T):
    attrs = dict(T.attrs)
    key = draw(st.sampled_from(TOKEN_ATTRS))
    value = draw(st.sampled_from([
        "<delete>", "garbage", 3, None, [], [1], [1, 2, 3], [-32, -32], [0, 0], [16, 16], [33, 32],
        [[0.0, 1.0]], [[1.0, 0.0]] * 3, ["temperature"], ["a", "b", "c"], [["x"]], [1.5, 2.5],
        [np.nan, 1.0], [[np.nan, np.inf]] * 3, [10**12, 10**12], {"a": 1},
    ]))
    if value == "<delete>":
        attrs.pop(key, None)
    else:
        attrs[key] = value
    return T.assign_attrs(attrs) if value != "<delete>" else T.copy().drop_attrs().assign_attrs(attrs)


def _token_shape(draw, T):
    dim = draw(st.sampled_from(["patch_y", "patch_x", "token_y", "token_x", "sample", "time", "field"]))
    n = T.sizes[dim]
    stop = draw(st.integers(0, max(n - 1, 0)))
    return T.isel({dim: slice(0, stop)})


def _token_field_coord(draw, T):
    kind = draw(st.sampled_from(["reverse", "rename", "drop", "ints"]))
    if kind == "drop":
        return T.drop_vars(["field", "units"], errors="ignore")
    names = [str(f) for f in T["field"].values]
    if kind == "reverse":
        names = names[::-1]
    elif kind == "rename":
        names = [f"f{i}" for i in range(len(names))]
    else:
        names = list(range(len(names)))
    return T.assign_coords(field=("field", np.array(names, dtype=object)))


def _token_ranges(draw, T):
    ranges = [[lo * 2 - 1, hi * 3] for lo, hi in T.attrs.get("skmld_ranges", [[0.0, 1.0]])]
    return T.assign_attrs(skmld_ranges=ranges)


TOKEN_MUTATIONS: dict[str, Callable] = {
    "attrs": _tamper_attrs, "shape": _token_shape, "field_coord": _token_field_coord, "ranges": _token_ranges,
    "nonfinite": _nonfinite, "huge": _huge, "dtype": _dtype, "drop_dim": _drop_dim, "extra_dim": _extra_dim,
    "transpose": _transpose, "time_coord": _time_coord, "drop_coords": _drop_coords, "rename_dim": _rename_dim,
}


def mutate_tokens(draw, T: xr.DataArray, max_mutations: int = 2,
                  mutations: tuple[str, ...] | None = None) -> Any:
    """``T`` (valid tokens) with 0 to ``max_mutations`` malformations, or a non-xarray object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([None, np.asarray(T.values), T.to_dataset(name="tokens"), "tokens", 1.0]))
    names = sorted(mutations or TOKEN_MUTATIONS)
    for name in draw(st.lists(st.sampled_from(names), min_size=0, max_size=max_mutations)):
        T = _apply(TOKEN_MUTATIONS[name], draw, T)
    return T


# ----------------------------------------------------------------------------- parameters
_NAN, _INF = float("nan"), float("inf")
BAD_POSITIVE_INT = [0, -1, -(10**9), 1.5, _NAN, _INF, "3", True, False, [2], np.float64(2.0)]
BAD_NONNEG_INT = [-1, -(10**12), 2.5, _NAN, _INF, "1", True, [[1]]]
BAD_PER_HORIZON = BAD_NONNEG_INT + [[1, -1], [1, 2, 3], ["a"], [1.5], [_NAN], [True], [None]]
BAD_POSITIVE_REAL = [0, 0.0, -1e-3, _NAN, _INF, -_INF, "0.1", True, [1e-3], 1e309]
BAD_NONNEG_REAL = [-1, -1e-9, _NAN, _INF, -_INF, "1", False, [1.0]]
BAD_FRACTION = [1, 1.0, 1.5, -0.1, _NAN, _INF, 1e9, "0.1", True]
BAD_HORIZONS = [(), (0,), (-1,), (2, 1), (1, 1), (1.5,), ("a",), (_NAN,), (None,), 5, "1", (10**9,),
                (True,), ((1,),), {1: 2}, (_INF,)]
BAD_STRING = ["", "RAISE", 1, "cuda", ["raise"], True]
BAD_BOOL = ["yes", 2, 1.0, [True]]
BAD_VERBOSE = ["loud", 1.5, [1], _NAN]
BAD_RANDOM_STATE = [-1, 2**40, "0", 1.5, [0], _NAN]
BAD_CHECKPOINT = [123, ["a"], 1.5]

ESTIMATOR_BAD: dict[str, list] = {
    "horizons": BAD_HORIZONS, "learning_rate": BAD_POSITIVE_REAL, "batch_size": BAD_POSITIVE_INT,
    "gradient_chunk_size": BAD_POSITIVE_INT,
    "validation_fraction": BAD_FRACTION, "reconstruction_weight": BAD_NONNEG_REAL, "kl_weight": BAD_NONNEG_REAL,
    "edge_weight": BAD_NONNEG_REAL, "latent_mean_weight": BAD_NONNEG_REAL,
    "latent_log_var_weight": BAD_NONNEG_REAL, "multistep_weight": BAD_NONNEG_REAL,
    "on_divergence": BAD_STRING, "device": BAD_STRING, "precision": BAD_STRING, "jit_compile": BAD_BOOL,
    "verbose": BAD_VERBOSE, "random_state": BAD_RANDOM_STATE, "checkpoint_dir": BAD_CHECKPOINT,
    "vae_epochs": BAD_NONNEG_INT, "decoupled_epochs": BAD_PER_HORIZON,
}
_ARCH_BAD = {
    "latent_channels": BAD_POSITIVE_INT, "filters": BAD_POSITIVE_INT, "kernel_size": BAD_POSITIVE_INT,
    "dynamics": BAD_STRING, "dynamics_filters": BAD_POSITIVE_INT, "dropout": BAD_FRACTION,
}
MICRO_BAD = {**ESTIMATOR_BAD, **_ARCH_BAD, "coupled_epochs": BAD_PER_HORIZON}
MESO_BAD = {**ESTIMATOR_BAD, **_ARCH_BAD, "epochs": BAD_PER_HORIZON, "time_ratio": BAD_POSITIVE_INT,
            "freeze": [("vae", "x"), ["all"], [["vae"]], "vae", 3, [None], {"vae": 1}]}
TOKENIZER_BAD = {
    "patch_size": [0, -32, 33, 31.5, "32", True, (32,), (32, 32, 32), (32, -32), (32, "a"), (_NAN, 32),
                   [32.0, 32.0], 10**9, (0, 32)],
    "multiple_of": BAD_POSITIVE_INT,
    "pad_mode": ["", "EDGE", "mean", 1, None],
    "ranges": ["0,1", [(0, 1)], {"temperature": (1, 0)}, {"temperature": (_NAN, 1)},
               {"temperature": (0, _INF)}, {"temperature": "ab"}, {"temperature": (0, 1, 2)},
               {"temperature": 5}, {"temperature": None}, {"unknown": (0, 1)}, {"temperature": (True, 2)},
               {"temperature": ("0", "1")}, {"temperature": (-1e308, 1e308)}],
}


@st.composite
def bad_params(draw, table: dict[str, list], max_bad: int = 2) -> dict:
    """1 to ``max_bad`` parameters of ``table``, each set to one of its invalid values."""
    names = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=max_bad, unique=True))
    return {n: draw(st.sampled_from(table[n])) for n in names}


# ----------------------------------------------------------------------------- model files
def mutate_bytes(draw, data: bytes) -> bytes:
    """A damaged copy of a model file: truncated, bytes flipped, inserted, or a member rewritten."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "member", "empty", "prefix", "swap_json"]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "insert":
        i = rng.randrange(len(data))
        return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]
    if kind == "empty":
        return b""
    if kind == "prefix":
        return b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(64))
    # Rewrite one member: random JSON-ish or random bytes, keeping a valid zip.
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    target = draw(st.sampled_from(names))
    if kind == "member":
        payload = draw(st.sampled_from([
            b"", b"{}", b"[]", b"null", b'{"format": "skmld"}', b"\x00\x01garbage", b'{"a": NaN}',
            b'{"format": "skmld", "format_version": 99}', b'{"params": 1, "fitted": []}',
        ]))
    else:  # swap_json: a JSON member gets another member's content
        payload = src.read(draw(st.sampled_from(names)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, payload if info.filename == target else src.read(info.filename))
    return out.getvalue()


# ----------------------------------------------------------------------------- fuzz targets
class Context:
    """Fitted models and data the targets call into (built once per process)."""

    def __init__(self, micro_pipe, meso_pipe, micro_X, meso_X, model_files: dict[str, bytes]):
        self.micro_pipe, self.meso_pipe = micro_pipe, meso_pipe
        self.micro_X, self.meso_X = micro_X, meso_X
        self.micro_tokens = micro_pipe["tokens"].transform(micro_X)
        self.meso_tokens = meso_pipe["tokens"].transform(meso_X)
        self.micro_latents = micro_pipe["micro"].encode(self.micro_tokens)
        self.model_files = model_files


def model_files(micro_pipe) -> dict[str, bytes]:
    """The saved bytes of a fitted tokenizer and of a fitted micro estimator."""
    from skmld import persistence

    out = {}
    for name, obj in (("tokenizer", micro_pipe["tokens"]), ("micro", micro_pipe["micro"])):
        buf = io.BytesIO()
        persistence.save(obj, buf)
        out[name] = buf.getvalue()
    return out


def _stub_training(est):
    """Make ``est.fit`` stop where it would build its networks."""
    def stop(*args, **kwargs):
        raise ReachedTraining

    est._make_networks = stop
    return est


def fit_must_reject(what: str, est, X, params: dict) -> None:
    """``est.fit(X)`` must raise a documented error before training (``params`` are the invalid ones)."""
    _stub_training(est)
    try:
        check_call(what, est.fit, X)
    except ReachedTraining:
        shown = {k: v for k, v in params.items() if k != "backbone" or not hasattr(v, "fit")}
        raise AssertionError(f"{what} accepted invalid parameters {shown!r}") from None


def fit_validates(what: str, est, X) -> None:
    """``est.fit(X)`` raises a documented error, or accepts ``X`` only if its values are finite."""
    _stub_training(est)
    try:
        check_call(what, est.fit, X)
    except ReachedTraining:
        if not is_finite_input(X):
            raise AssertionError(f"{what} accepted non-finite input") from None


def _t_as_fields(draw, ctx):
    import skmld

    X = draw(malformed_fields())
    check_call("as_fields", skmld.as_fields, X, finite=is_finite_input(X))


def _t_to_dataset(draw, ctx):
    from skmld.fields import to_dataset

    X = draw(malformed_fields())
    check_call("to_dataset", to_dataset, X, finite=is_finite_input(X))


def _t_validate_fields(draw, ctx):
    import skmld

    check_call("validate_fields", skmld.validate_fields, draw(malformed_fields()))


def _t_tokenizer_fit(draw, ctx):
    from skmld import PatchTokenizer

    X = draw(malformed_fields())
    tok = PatchTokenizer(patch_size=draw(st.sampled_from([None, 2, (2, 4)])),
                         multiple_of=draw(st.sampled_from([1, 2])),
                         pad_mode=draw(st.sampled_from(["edge", "constant", "reflect", "symmetric", "wrap"])))
    if check_call("PatchTokenizer.fit", tok.fit, X) is None:
        return
    T = check_call("PatchTokenizer.transform", tok.transform, X)
    if T is not None:
        check_call("PatchTokenizer.inverse_transform", tok.inverse_transform, T)


def _t_tokenizer_params(draw, ctx):
    from skmld import PatchTokenizer

    params = draw(bad_params(TOKENIZER_BAD))
    tok = PatchTokenizer(**params)
    X = ctx.micro_X[["temperature"]] if isinstance(ctx.micro_X, xr.Dataset) else ctx.micro_X
    if check_call("PatchTokenizer.fit", tok.fit, X) is not None:
        raise AssertionError(f"PatchTokenizer.fit accepted invalid parameters {params!r}")


def _t_tokenizer_transform(draw, ctx):
    tok = ctx.micro_pipe["tokens"]
    X = mutate_fields(draw, ctx.micro_X)
    check_call("PatchTokenizer.transform", tok.transform, X, finite=is_finite_input(X))


def _t_tokenizer_inverse(draw, ctx):
    tok = ctx.micro_pipe["tokens"]
    T = mutate_tokens(draw, ctx.micro_tokens)
    check_call("PatchTokenizer.inverse_transform", tok.inverse_transform, T, finite=is_finite_input(T))


def _predict_kwargs(draw):
    kw = {}
    if draw(st.booleans()):
        kw["n_steps"] = draw(st.sampled_from([None, 1, 2, 0, -1, 1.5, "2", True, _NAN, 10**12]))
    if draw(st.booleans()):
        kw["return_std"] = draw(st.sampled_from([True, False, "yes", 2]))
        kw["n_draws"] = draw(st.sampled_from([2, 3, 1, 0, -4, 2.5, "8", True, 10**12]))
    return kw


def _t_estimator_call(which):
    def target(draw, ctx):
        pipe, tokens = (ctx.micro_pipe, ctx.micro_tokens) if which == "micro" else (ctx.meso_pipe, ctx.meso_tokens)
        est = pipe[which]
        T = mutate_tokens(draw, tokens)
        finite = is_finite_input(T)
        method = draw(st.sampled_from(["predict", "score", "encode"]))
        if method == "predict":
            check_call(f"{which}.predict", est.predict, T, finite=finite, **_predict_kwargs(draw))
        else:
            check_call(f"{which}.{method}", getattr(est, method), T, finite=finite)
    return target


_LATENT_MUTATIONS = ("nonfinite", "huge", "dtype", "drop_dim", "extra_dim", "transpose", "drop_coords",
                     "rename_dim", "time_coord")


def _t_decode(draw, ctx):
    est = ctx.micro_pipe["micro"]
    Z = ctx.micro_latents
    if draw(st.booleans()):
        Z = Z["z_mean"]
        kind = draw(st.sampled_from(["mutate", "channels", "fields"]))
        if kind == "channels":
            Z = Z.isel(channel=slice(0, draw(st.integers(0, Z.sizes["channel"] - 1))))
        elif kind == "fields":
            Z = Z.assign_coords(field=("field", [f"f{i}" for i in range(Z.sizes["field"])]))
        else:
            Z = mutate_fields(draw, Z, mutations=_LATENT_MUTATIONS)
    elif draw(st.booleans()):
        Z = draw(st.sampled_from([None, 1.0, "z", np.zeros((1, 2, 3)), Z.drop_vars("z_mean")]))
    check_call("micro.decode", est.decode, Z, finite=is_finite_input(Z))


def _t_fit_params(which):
    def target(draw, ctx):
        from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator

        if which == "micro":
            params = draw(bad_params(MICRO_BAD))
            est = MicroDynamicsEstimator(**{**TINY_PARAMS, **params})
            X = ctx.micro_tokens
        else:
            params = draw(bad_params(MESO_BAD))
            if draw(st.integers(0, 9)) == 0:
                params["backbone"] = draw(st.sampled_from(["micro", 3, MicroDynamicsEstimator(), object()]))
            params.setdefault("backbone", ctx.micro_pipe["micro"])
            est = MesoDynamicsEstimator(**{**TINY_MESO_PARAMS, **params})
            X = ctx.meso_tokens
        fit_must_reject(f"{which}.fit", est, X, params)
    return target


def _t_fit_input(which):
    def target(draw, ctx):
        from skmld import MesoDynamicsEstimator, MicroDynamicsEstimator

        if which == "micro":
            est = MicroDynamicsEstimator(**TINY_PARAMS)
            base = ctx.micro_tokens
        else:
            est = MesoDynamicsEstimator(ctx.micro_pipe["micro"], **TINY_MESO_PARAMS)
            base = ctx.meso_tokens
        X = mutate_tokens(draw, base) if draw(st.integers(0, 3)) else draw(malformed_fields())
        fit_validates(f"{which}.fit", est, X)
    return target


def _metric_params(draw):
    return {
        "threshold": draw(st.sampled_from([875.0, 0.0, -1.0, _NAN, _INF, "875", None, 1e308])),
        "pixel_area": draw(st.sampled_from([None, 1.0, 0.0, -1.0, _NAN, _INF, "1", 1e308])),
        "dt": draw(st.sampled_from([None, 2.0, 0.0, -2.0, _NAN, _INF, "2", 1e-320])),
    }


def _t_field_rmse(draw, ctx):
    from skmld.metrics import field_rmse

    truth = draw(malformed_fields(low=300.0, high=3000.0, max_mutations=1))
    pred = mutate_fields(draw, truth, max_mutations=1) if draw(st.booleans()) else truth
    dim = draw(st.sampled_from([None, None, "sample", ["y", "x"], "bogus", 3, ("sample", "time")]))
    check_call("field_rmse", field_rmse, truth, pred, dim=dim, finite=is_finite_input(truth, pred))


def _t_hotspot_metrics(draw, ctx):
    import warnings

    from skmld.metrics import hotspot_metrics

    temp = draw(malformed_fields(low=300.0, high=3000.0, max_mutations=1))
    params = _metric_params(draw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_call("hotspot_metrics", hotspot_metrics, temp, finite=is_finite_input(temp), **params)


def _t_hotspot_rmse(draw, ctx):
    import warnings

    from skmld.metrics import hotspot_rmse

    truth = draw(malformed_fields(low=300.0, high=3000.0, max_mutations=1))
    pred = mutate_fields(draw, truth, max_mutations=1) if draw(st.booleans()) else truth
    params = _metric_params(draw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_call("hotspot_rmse", hotspot_rmse, truth, pred, finite=is_finite_input(truth, pred), **params)


def _t_coverage(draw, ctx):
    from skmld.metrics import coverage

    truth = draw(malformed_fields(max_mutations=1))
    mean = mutate_fields(draw, truth, max_mutations=1) if draw(st.booleans()) else truth
    std = draw(st.sampled_from(["ones", "zeros", "negative", "same"]))
    std = {"ones": xr.ones_like, "zeros": xr.zeros_like, "negative": lambda a: -xr.ones_like(a),
           "same": lambda a: a}[std](truth) if isinstance(truth, (xr.Dataset, xr.DataArray)) else truth
    k = draw(st.sampled_from([1.0, 0.0, 2.0, -1.0, _NAN, _INF, "1", None]))
    check_call("coverage", coverage, truth, mean, std, k=k, finite=is_finite_input(truth, mean, std))


def _t_scorer(draw, ctx):
    from skmld.metrics import get_scorer

    name = draw(st.sampled_from(["r2", "neg_field_rmse", "neg_hotspot_temperature_rmse",
                                 "neg_hotspot_area_rmse", "bogus", 3, None]))
    kw = {}
    if draw(st.booleans()):
        kw["field"] = draw(st.sampled_from(["temperature", "bogus", 3, None]))
    if draw(st.booleans()):
        kw["threshold"] = draw(st.sampled_from([875.0, _NAN, -1.0, "x"]))
    scorer = check_call("get_scorer", get_scorer, name, **kw)
    if scorer is None:
        return
    X = mutate_fields(draw, ctx.micro_X, max_mutations=1)
    check_call(f"scorer {name}", scorer, ctx.micro_pipe, X, finite=is_finite_input(X))


def _t_load(draw, ctx):
    import skmld

    name = draw(st.sampled_from(sorted(ctx.model_files)))
    data = mutate_bytes(draw, ctx.model_files[name])
    check_call("skmld.load", skmld.load, io.BytesIO(data))


TINY_PARAMS = {"filters": 2, "dynamics_filters": 2, "horizons": (1,), "vae_epochs": 1, "decoupled_epochs": 1,
               "coupled_epochs": 1, "batch_size": 8, "random_state": 0}
TINY_MESO_PARAMS = {"epochs": 1, "horizons": (1,), "batch_size": 8, "random_state": 0}

#: Targets that run a fitted model or load a model file for most examples (~0.1-0.6 s each).
SLOW_TARGETS = ("Micro.predict/score/encode", "Meso.predict/score/encode", "metrics.get_scorer", "skmld.load")

#: name -> target(draw, ctx): each draws one example and checks the property.
TARGETS: dict[str, Callable] = {
    "fields.as_fields": _t_as_fields,
    "fields.to_dataset": _t_to_dataset,
    "fields.validate_fields": _t_validate_fields,
    "PatchTokenizer.fit/transform/inverse_transform": _t_tokenizer_fit,
    "PatchTokenizer(bad params).fit": _t_tokenizer_params,
    "PatchTokenizer.transform": _t_tokenizer_transform,
    "PatchTokenizer.inverse_transform": _t_tokenizer_inverse,
    "Micro.predict/score/encode": _t_estimator_call("micro"),
    "Micro.decode": _t_decode,
    "Meso.predict/score/encode": _t_estimator_call("meso"),
    "Micro(bad params).fit": _t_fit_params("micro"),
    "Meso(bad params).fit": _t_fit_params("meso"),
    "Micro.fit(bad input)": _t_fit_input("micro"),
    "Meso.fit(bad input)": _t_fit_input("meso"),
    "metrics.field_rmse": _t_field_rmse,
    "metrics.hotspot_metrics": _t_hotspot_metrics,
    "metrics.hotspot_rmse": _t_hotspot_rmse,
    "metrics.coverage": _t_coverage,
    "metrics.get_scorer": _t_scorer,
    "skmld.load": _t_load,
}
