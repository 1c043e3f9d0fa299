"""Safe, pickle-free model files: :func:`save` and :func:`load`.

An skmld model file is one zip archive::

    manifest.json                      format, format_version, versions, the object tree
    root/estimator.json                parameters and fitted attributes of the root object
    root/models/<network>.keras        one Keras archive per network the estimator owns
    root/backbone/estimator.json       a meso estimator's backbone (a nested entry) ...
    root/backbone/models/...
    root/steps/<i>/estimator.json      ... or the steps of a Pipeline
    root/estimator/estimator.json      ... or a CalibratedDynamics's estimator and, unless
    root/estimator_/estimator.json         it is that same object, its fitted estimator_

An object met a second time (``estimator_`` that is ``estimator`` with
``cv="prefit"``, a backbone shared by two meso estimators) is written once;
its later manifest entries are ``{"same_as": "<path of the first>"}``, and
loading restores the identity. The ``estimator`` of a cross-validated
CalibratedDynamics may be unfitted: its entry has ``"fitted": false`` and its
member holds parameters only.

``manifest.json`` names the class of every object in the tree; only the
classes of :data:`CLASSES` can be rebuilt. Parameters and fitted attributes
are JSON; values JSON cannot tell apart (tuples, ordered dicts, numpy arrays
and scalars, xarray variables, ``RandomState`` states) are tagged
(``{"__tuple__": [...]}``, ...). Each network is a ``.keras`` archive loaded
with ``keras.saving.load_model(..., safe_mode=True, compile=False)`` after a
check that its config names only Keras's classes and skmld's registered ones
and no ``Lambda`` layer. Nothing is ever unpickled, so loading an untrusted file
runs no code from it; a truncated, corrupted or tampered file raises
``ValueError`` naming the member and what was expected.

Files are deterministic: the same fitted model gives the same bytes (members
sorted, fixed timestamps and permissions, JSON with sorted keys; the inner
``.keras`` archives are rewritten the same way, with Keras's ``date_saved``
fixed, since Keras stamps the save time into them).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["FORMAT_VERSION", "CLASSES", "save", "load"]

#: Version of the file format this skmld writes and the newest it reads.
FORMAT_VERSION: int = 1
#: Classes a model file may name (class name -> module); nothing else is instantiated.
CLASSES: dict[str, str] = {
    "MicroDynamicsEstimator": "skmld.micro",
    "MesoDynamicsEstimator": "skmld.meso",
    "PatchTokenizer": "skmld.tokenizer",
    "CalibratedDynamics": "skmld.calibration",
    "Pipeline": "sklearn.pipeline",
}
_NETWORK_CLASSES = ("MicroDynamicsEstimator", "MesoDynamicsEstimator")

_MANIFEST = "manifest.json"
_ESTIMATOR = "estimator.json"
_ROOT = "root/"
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_PERMISSIONS = 0o644 << 16
_KERAS_DATE = "1980-01-01@00:00:00"
# Keras config classes whose sharing between layers carries no state.
_STATELESS = ("DTypePolicy", "FloatDTypePolicy", "function")
# Attributes rebuilt from other members, or caches rebuilt on first use.
_RUNTIME_ATTRS = ("_networks", "_rollout_fn")
_ATTR_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_MAX_RATIO = 1000  # uncompressed / compressed size of a member: more is a zip bomb
_MIN_BOMB = 1 << 24


# --------------------------------------------------------------------- JSON values
def _encode(value: Any, where: str) -> Any:
    """A JSON-able form of ``value`` that :func:`_decode` maps back to an equal value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: numpy scalar of dtype {value.dtype} cannot be saved.")
        return {"__scalar__": [value.dtype.str, _encode(value.item(), where)]}
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        # Pairs keep the key order (ranges_ follows the field order) under sort_keys.
        return {"__dict__": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode_array(value, where)}
    if isinstance(value, np.random.RandomState):
        return {"__random_state__": _encode(value.get_state(legacy=True), where)}
    import xarray as xr

    if isinstance(value, xr.Variable):
        return {"__variable__": {
            "index": isinstance(value, xr.IndexVariable),
            "dims": [str(d) for d in value.dims],
            "data": _encode_array(np.asarray(value.values), where),
            "attrs": _encode(dict(value.attrs), where),
        }}
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which skmld's safe format "
        "cannot store (it stores None, bool, int, float, str, tuples, lists, dicts, numpy arrays and "
        "scalars, xarray variables and RandomState states)."
    )


def _encode_array(a: np.ndarray, where: str) -> dict:
    kind = a.dtype.kind
    if kind in "biuf":
        data = a.ravel().tolist()
        if kind == "f":
            data = [v if math.isfinite(v) else {"__float__": repr(v)} for v in data]
    elif kind in "mM":
        data = a.view(np.int64).ravel().tolist()
    elif kind == "U" or (kind == "O" and all(isinstance(v, str) for v in a.ravel())):
        data = [str(v) for v in a.ravel()]
    else:
        raise TypeError(f"{where}: numpy array of dtype {a.dtype} cannot be saved.")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": data}


class _Invalid(ValueError):
    """A JSON value of the wrong type or form (the caller adds the member name)."""


def _decode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise _Invalid(f"{where}: expected a JSON value or a one-key tagged object, got {_short(value)}")
    (tag, body), = value.items()
    if tag == "__tuple__":
        return tuple(_decode(v, where) for v in _expect(body, list, where, "a list"))
    if tag == "__dict__":
        pairs = _expect(body, list, where, "a list of [key, value] pairs")
        out = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise _Invalid(f"{where}: expected a [key, value] pair, got {_short(pair)}")
            key = _decode(pair[0], where)
            try:
                out[key] = _decode(pair[1], where)
            except TypeError:  # unhashable key
                raise _Invalid(f"{where}: dict key {_short(pair[0])} is not hashable") from None
        return out
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise _Invalid(f"{where}: expected 'nan', 'inf' or '-inf' for a non-finite float, got {_short(body)}")
        return float(body)
    if tag == "__scalar__":
        if not isinstance(body, list) or len(body) != 2:
            raise _Invalid(f"{where}: expected [dtype, value] for a numpy scalar, got {_short(body)}")
        dtype = _dtype(body[0], where, "biuf")
        return dtype.type(_decode(body[1], where))
    if tag == "__ndarray__":
        return _decode_array(body, where)
    if tag == "__random_state__":
        state = _decode(body, where)
        rs = np.random.RandomState()
        try:
            rs.set_state(state)
        except (TypeError, ValueError) as e:
            raise _Invalid(f"{where}: not a RandomState state ({e})") from None
        return rs
    if tag == "__variable__":
        import xarray as xr

        body = _expect(body, dict, where, "an object with index, dims, data, attrs")
        if set(body) != {"index", "dims", "data", "attrs"} or not isinstance(body["index"], bool):
            raise _Invalid(f"{where}: expected an xarray variable with keys index, dims, data, attrs, "
                           f"got {_short(body)}")
        dims = _expect(body["dims"], list, where, "a list of dim names")
        if not all(isinstance(d, str) for d in dims):
            raise _Invalid(f"{where}: dims must be strings, got {_short(dims)}")
        data = _decode_array(body["data"], where)
        attrs = _decode(body["attrs"], where)
        if not isinstance(attrs, dict) or data.ndim != len(dims) or (body["index"] and data.ndim != 1):
            raise _Invalid(f"{where}: inconsistent xarray variable (dims {dims}, data shape {data.shape})")
        return (xr.IndexVariable if body["index"] else xr.Variable)(dims, data, attrs=attrs)
    raise _Invalid(f"{where}: unknown tag {tag!r}")


def _decode_array(body: Any, where: str) -> np.ndarray:
    body = _expect(body, dict, where, "an array object with dtype, shape, data")
    if set(body) != {"dtype", "shape", "data"}:
        raise _Invalid(f"{where}: expected an array with keys dtype, shape, data, got {_short(body)}")
    dtype = _dtype(body["dtype"], where, "biufmMUO")
    shape = _expect(body["shape"], list, where, "a list of ints")
    data = _expect(body["data"], list, where, "a flat list")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise _Invalid(f"{where}: array shape must be non-negative ints, got {_short(shape)}")
    if math.prod(shape) != len(data):
        raise _Invalid(f"{where}: array of shape {shape} needs {math.prod(shape)} values, got {len(data)}")
    kind = dtype.kind
    if kind in "UO":
        if not all(isinstance(v, str) for v in data):
            raise _Invalid(f"{where}: a {dtype} array must hold strings")
        return np.array(data, dtype=dtype).reshape(shape)
    values = [_decode(v, where) if isinstance(v, dict) else v for v in data]
    ok = (bool,) if kind == "b" else (int,) if kind in "iumM" else (int, float)
    if not all(isinstance(v, ok) and (kind == "b" or not isinstance(v, bool)) for v in values):
        raise _Invalid(f"{where}: a {dtype} array must hold {'/'.join(t.__name__ for t in ok)} values")
    try:
        if kind in "mM":
            return np.array(values, dtype=np.int64).view(dtype).reshape(shape)
        return np.array(values, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise _Invalid(f"{where}: values do not fit dtype {dtype} ({e})") from None


def _dtype(text: Any, where: str, kinds: str) -> np.dtype:
    if not isinstance(text, str) or len(text) > 16:
        raise _Invalid(f"{where}: expected a numpy dtype string, got {_short(text)}")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise _Invalid(f"{where}: {text!r} is not a numpy dtype") from None
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise _Invalid(f"{where}: dtype {text!r} is not allowed here")
    return dtype


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise _Invalid(f"{where}: expected {what}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# ----------------------------------------------------------- checks of fitted attrs
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_tuple(n):
    return lambda v: isinstance(v, tuple) and len(v) == n and all(_is_int(x) and x >= 0 for x in v)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _ranges(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(r, tuple) and len(r) == 2 and all(_is_num(x) for x in r)
        for k, r in v.items()
    )


def _history(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(r, dict) and all(isinstance(k, str) and (_is_num(x) or isinstance(x, str)) for k, x in r.items())
        for r in v
    )


def _bounds(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(b, tuple | list) and len(b) == 2
        and all(x is None or (isinstance(x, float) and math.isfinite(x)) for x in b) for k, b in v.items())


def _str_dict(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _variables(v) -> bool:
    import xarray as xr

    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, xr.Variable) for k, x in v.items())


def _float_matrix(v) -> bool:
    return (isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype.itemsize == 8 and v.ndim == 2
            and v.shape[1] >= 1 and bool(np.isfinite(v).all()) and bool((v >= 0).all()))


def _count_matrix(v) -> bool:
    return (isinstance(v, np.ndarray) and v.dtype.kind == "i" and v.dtype.itemsize == 8 and v.ndim == 2
            and v.shape[1] >= 1 and bool((v >= 0).all()))


_CALIBRATION_ARRAYS = ("scale_", "offset_", "n_calibration_pixels_")


def _check_calibration(fitted: dict) -> str | None:
    """Why a CalibratedDynamics's (individually valid) fitted arrays do not fit together, or None."""
    from collections import Counter

    n_fields = len(fitted["fields_"])
    n_lead = Counter(fitted[name].shape[1] for name in _CALIBRATION_ARRAYS).most_common(1)[0][0]
    for name in _CALIBRATION_ARRAYS:
        shape = fitted[name].shape
        if shape != (n_fields, n_lead):
            return (f"fitted attribute {name!r} has shape {shape}; scale_, offset_ and n_calibration_pixels_ "
                    f"must all have shape (n_fields, n_lead_times) = {(n_fields, n_lead)}, with n_fields = "
                    f"len(fields_) = {n_fields}.")
    return None


_NETWORK_ATTRS = {
    "fields_": ("a list of field names", _str_list),
    "ranges_": ("None or a dict of field -> (min, max)", lambda v: v is None or _ranges(v)),
    "bounds_": ("None or a dict of field -> (min or None, max or None)", lambda v: v is None or _bounds(v)),
    "token_shape_": ("a pair of ints", _int_tuple(2)),
    "latent_shape_": ("a triple of ints", _int_tuple(3)),
    "history_": ("a list of dicts of loss terms", _history),
}
#: Fitted attributes each class must have, with what they must be.
_FITTED = {
    "MicroDynamicsEstimator": _NETWORK_ATTRS,
    "MesoDynamicsEstimator": _NETWORK_ATTRS,
    "PatchTokenizer": {
        "fields_": ("a list of field names", _str_list),
        "ranges_": ("a dict of field -> (min, max)", _ranges),
        "units_": ("a dict of field -> units", _str_dict),
        "bounds_": ("a dict of field -> (min or None, max or None)", _bounds),
        "input_shape_": ("a pair of ints", _int_tuple(2)),
        "token_shape_": ("a pair of ints", _int_tuple(2)),
        "grid_shape_": ("a pair of ints", _int_tuple(2)),
        "padding_": ("a pair of ints", _int_tuple(2)),
        "_fit_kind": ("'Dataset' or 'DataArray'", lambda v: v in ("Dataset", "DataArray")),
        "_attrs": ("a dict", lambda v: isinstance(v, dict)),
        "_spatial_coords": ("a dict of name -> xarray variable", _variables),
    },
    "CalibratedDynamics": {
        "fields_": ("a list of field names", _str_list),
        "scale_": ("a finite, non-negative float64 array of shape (n_fields, n_lead_times)", _float_matrix),
        "offset_": ("a finite, non-negative float64 array of shape (n_fields, n_lead_times)", _float_matrix),
        "n_calibration_pixels_": ("a non-negative int64 array of shape (n_fields, n_lead_times)", _count_matrix),
    },
}
#: Checks across the fitted attributes of a class: fitted -> None or what is wrong.
_CONSISTENT = {"CalibratedDynamics": _check_calibration}


# ----------------------------------------------------------------------- archive
def _zinfo(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.compress_type = compress
    info.external_attr = _PERMISSIONS
    info.create_system = 3  # unix, whatever the platform
    return info


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted members, fixed dates and permissions."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            zf.writestr(_zinfo(name, compress), members[name], compresslevel=6)
    return buf.getvalue()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False) + "\n").encode()


def _keras_bytes(model) -> bytes:
    """The model's ``.keras`` archive, rewritten deterministically."""
    with tempfile.TemporaryDirectory(prefix="skmld-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with zipfile.ZipFile(path) as src:
            members = {name: src.read(name) for name in src.namelist()}
    if "metadata.json" in members:
        meta = json.loads(members["metadata.json"])
        meta["date_saved"] = _KERAS_DATE  # Keras stamps the wall-clock time here
        members["metadata.json"] = json.dumps(meta, sort_keys=True).encode()
    if "config.json" in members:
        # Keras marks objects shared between layers with their id(): a memory address.
        config = _renumber_shared(json.loads(members["config.json"]), {})
        members["config.json"] = json.dumps(config).encode()
    return _zip_bytes(members)


def _renumber_shared(node: Any, ids: dict) -> Any:
    """Replace each ``shared_object_id`` by its rank of first appearance (the same sharing).

    Stateless values (dtype policies, functions) lose theirs: whether a fresh
    model happened to share one object does not change what it computes, and a
    loaded model then writes the same bytes as the model it came from.
    """
    if isinstance(node, list):
        return [_renumber_shared(v, ids) for v in node]
    if isinstance(node, dict):
        out = {}
        stateless = node.get("class_name") in _STATELESS
        for k, v in node.items():
            if k == "shared_object_id" and stateless:
                continue
            if k == "shared_object_id":
                out[k] = ids.setdefault(v, len(ids))
            else:
                out[k] = _renumber_shared(v, ids)
        return out
    return node


def _owned_models(est) -> dict:
    return est._own_models(est._networks)


def _member_name(prefix: str, network: str) -> str:
    return f"{prefix}models/{network}.keras"


def _write_object(obj, prefix: str, members: dict, where: str, seen: dict | None = None,
                  allow_unfitted: bool = False) -> dict:
    """Add ``obj``'s members under ``prefix``; return its manifest entry.

    ``seen`` maps ``id()`` of the objects written so far to their paths: an
    object met again is written as ``{"same_as": path}``. Only where
    ``allow_unfitted`` (a CalibratedDynamics's estimator) may ``obj`` be unfitted.
    """
    seen = {} if seen is None else seen
    if id(obj) in seen:
        if not allow_unfitted and type(obj).__name__ != "Pipeline":
            check_is_fitted(obj)
        return {"same_as": seen[id(obj)][1]}
    cls = type(obj).__name__
    if CLASSES.get(cls) != type(obj).__module__:
        allowed = ", ".join(CLASSES)
        raise TypeError(
            f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; skmld's safe format stores only "
            f"{allowed} (use pickle/joblib for other objects, from trusted sources only)."
        )
    entry = {"class": cls, "path": prefix}
    if cls == "Pipeline":
        params = obj.get_params(deep=False)
        steps = params.pop("steps")
        if params.get("memory") is not None:
            raise ValueError(f"{where} has memory={params['memory']!r}; set memory=None to save it.")
        entry["steps"] = []
        for i, (name, step) in enumerate(steps):
            if step is None or step == "passthrough":
                entry["steps"].append([name, step])
            else:
                entry["steps"].append([name, _write_object(step, f"{prefix}steps/{i}/", members,
                                                           f"{where} step {name!r}", seen)])
        members[prefix + _ESTIMATOR] = _json_bytes({"params": _encode_attrs(params, where)})
        seen[id(obj)] = (obj, prefix)
        return entry

    if cls == "CalibratedDynamics":
        _check_storable_cv(obj.cv, where)
    try:
        check_is_fitted(obj)
        fitted = True
    except NotFittedError:
        if not allow_unfitted:
            raise
        fitted = False
    params = obj.get_params(deep=False)
    if not fitted:
        entry["fitted"] = False
    if cls == "MesoDynamicsEstimator" and params.get("backbone") is not None:
        entry["backbone"] = _write_object(params["backbone"], f"{prefix}backbone/", members,
                                          f"{where}'s backbone", seen, allow_unfitted=not fitted)
    params.pop("backbone", None)
    if cls == "CalibratedDynamics":
        for key, value, unfitted_ok in (("estimator", params.pop("estimator"), True),
                                        ("estimator_", obj.estimator_, False)):
            if CLASSES.get(type(value).__name__) == type(value).__module__ and \
                    type(value).__name__ not in _NETWORK_CLASSES:
                raise TypeError(f"{where}'s {key} is a {type(value).__module__}.{type(value).__qualname__}; "
                                "skmld's safe format stores a CalibratedDynamics of a MicroDynamicsEstimator "
                                "or MesoDynamicsEstimator only.")
            entry[key] = _write_object(value, f"{prefix}{key}/", members, f"{where}'s {key}", seen,
                                       allow_unfitted=unfitted_ok)
    if params.get("distribute") is not None:
        params["distribute"] = None  # a strategy is a runtime resource of the process that made it
    doc = {"params": _encode_attrs(params, where)}
    if fitted:
        skip = (*params, *_RUNTIME_ATTRS, "backbone", "estimator", "estimator_")
        state = {k: v for k, v in vars(obj).items() if k not in skip}
        if cls == "PatchTokenizer":
            state["_fit_kind"] = state["_fit_kind"].__name__
        doc["fitted"] = _encode_attrs(state, where)
    if fitted and cls in _NETWORK_CLASSES:
        nets = obj._networks
        models = _owned_models(obj)
        doc["networks"] = {
            "fields": list(nets.fields),
            "latent_channels": int(nets.latent_channels),
            "models": {name: _member_name(prefix, name) for name in models},
        }
        for name, model in models.items():
            members[_member_name(prefix, name)] = _keras_bytes(model)
    members[prefix + _ESTIMATOR] = _json_bytes(doc)
    seen[id(obj)] = (obj, prefix)
    return entry


def _storable_cv(cv) -> bool:
    return cv is None or (isinstance(cv, str) and cv == "prefit") or (
        isinstance(cv, Integral) and not isinstance(cv, (bool, np.bool_)))


def _check_storable_cv(cv, where: str) -> None:
    if not _storable_cv(cv):
        raise TypeError(
            f"{where} has cv={cv!r} (a {type(cv).__module__}.{type(cv).__qualname__}), which skmld's safe format "
            "cannot store: a cross-validation splitter or iterable of splits is an object, not data. Set "
            "cv='prefit' or an int (e.g. est.set_params(cv=5), which changes no fitted attribute) before saving."
        )


def _encode_attrs(attrs: dict, where: str) -> dict:
    return {k: _encode(v, f"{where}.{k}") for k, v in attrs.items()}


def save(estimator: BaseEstimator, path: str | os.PathLike | io.IOBase) -> None:
    """Write a fitted skmld estimator or Pipeline of them to one safe model file.

    Parameters
    ----------
    estimator : MicroDynamicsEstimator, MesoDynamicsEstimator, PatchTokenizer, CalibratedDynamics or Pipeline
        Fitted; a Pipeline's steps must be skmld estimators (or ``"passthrough"``).
        A meso estimator's backbone is stored with it, and a
        CalibratedDynamics's ``estimator`` (fitted or not) and ``estimator_``
        with it, once when they are the same object.
    path : str, path-like or binary file object
        Where to write. A path is written atomically (a temporary file renamed).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator (or a Pipeline step) is not fitted.
    TypeError
        If it is not one of the classes skmld's format stores, or holds a value
        the format cannot store (such as a CalibratedDynamics's ``cv`` that is a
        splitter: set ``cv="prefit"`` or an int first).

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    The same fitted model always gives the same bytes. A ``distribute``
    strategy is not stored: the loaded estimator has ``distribute=None``.

    Examples
    --------
    >>> import tempfile, os, numpy as np, xarray as xr
    >>> import skmld
    >>> from skmld import PatchTokenizer
    >>> from skmld.persistence import save
    >>> X = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.ones((1, 2, 32, 32)))})
    >>> path = os.path.join(tempfile.mkdtemp(), "tok.skmld")
    >>> save(PatchTokenizer().fit(X), path)
    >>> skmld.load(path).token_shape_
    (32, 32)
    """
    members: dict[str, bytes] = {}
    root = _write_object(estimator, _ROOT, members, type(estimator).__name__)
    manifest = {"format": "skmld", "format_version": FORMAT_VERSION, "object": root,
                "versions": _versions(root)}
    members[_MANIFEST] = _json_bytes(manifest)
    data = _zip_bytes(members)
    if hasattr(path, "write"):
        path.write(data)
        return
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _versions(root: dict) -> dict:
    import skmld

    versions = {"skmld": skmld.__version__}
    if _has_networks(root):
        import keras

        versions["keras"] = keras.__version__
    return versions


def _has_networks(entry) -> bool:
    if not isinstance(entry, dict):
        return False
    steps = entry.get("steps", ())
    return entry.get("class") in _NETWORK_CLASSES or any(
        _has_networks(s[1]) for s in steps if isinstance(s, list) and len(s) == 2) or any(
        _has_networks(entry.get(key)) for key in ("backbone", "estimator", "estimator_"))


# -------------------------------------------------------------------------- load
class _Reader:
    def __init__(self, zf: zipfile.ZipFile, source: str):
        self.zf, self.source = zf, source
        names = zf.namelist()
        if len(names) != len(set(names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{source} is not a valid skmld model file: members {dupes} appear twice.")
        self.names = set(names)

    def read(self, name: str, what: str) -> bytes:
        if name not in self.names:
            raise ValueError(f"{self.source} is not a valid skmld model file: member {name!r} ({what}) is missing.")
        info = self.zf.getinfo(name)
        if info.file_size > _MIN_BOMB and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise ValueError(f"{self.source}: member {name!r} declares {info.file_size} bytes from "
                             f"{info.compress_size} stored; refusing a likely decompression bomb.")
        try:
            return self.zf.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{self.source}: member {name!r} ({what}) is corrupted: {e}") from None

    def json(self, name: str, what: str) -> dict:
        raw = self.read(name, what)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.source}: member {name!r} ({what}) is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{self.source}: member {name!r} ({what}) must hold a JSON object, got {_short(doc)}.")
        return doc


def _invalid(reader: _Reader, member: str, message: str) -> ValueError:
    return ValueError(f"{reader.source}: member {member!r}: {message}")


def _key(doc: dict, key: str, kind, reader, member, what: str):
    if key not in doc:
        raise _invalid(reader, member, f"key {key!r} is missing; expected {what}.")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(reader, member, f"key {key!r} must be {what}, got {_short(value)}.")
    return value


def _decode_attrs(raw: Any, reader: _Reader, member: str, key: str) -> dict:
    if not isinstance(raw, dict):
        raise _invalid(reader, member, f"key {key!r} must be a JSON object of name -> value, got {_short(raw)}.")
    out = {}
    for name, value in raw.items():
        if not _ATTR_NAME.match(name):
            raise _invalid(reader, member, f"{key} names an invalid attribute {name!r}.")
        try:
            out[name] = _decode(value, f"{key}.{name}")
        except _Invalid as e:
            raise _invalid(reader, member, str(e)) from None
    return out


def _import_class(name: str):
    import importlib

    return getattr(importlib.import_module(CLASSES[name]), name)


def _is_fitted(obj) -> bool:
    try:
        check_is_fitted(obj)
    except NotFittedError:
        return False
    return True


def _read_object(entry: Any, expected_prefix: str, reader: _Reader, depth: int = 0, seen: dict | None = None,
                 allow_unfitted: bool = False):
    """Rebuild the object of manifest ``entry``.

    ``seen`` maps the paths of the objects read so far to them, for
    ``{"same_as": path}`` entries; only where ``allow_unfitted`` (a
    CalibratedDynamics's estimator) may the object be unfitted.
    """
    seen = {} if seen is None else seen
    where = f"{_MANIFEST!r} entry {expected_prefix!r}"
    if depth > 8:
        raise ValueError(f"{reader.source}: {where} nests objects too deep.")
    if not isinstance(entry, dict):
        raise ValueError(f"{reader.source}: {where} must be a JSON object, got {_short(entry)}.")
    if "same_as" in entry:
        ref = entry["same_as"]
        if set(entry) != {"same_as"} or not isinstance(ref, str) or ref not in seen:
            raise ValueError(f"{reader.source}: {where} must be {{\"same_as\": path}} with the path of an object "
                             f"stored before it, got {_short(entry)}.")
        obj = seen[ref]
        if not allow_unfitted and not _is_fitted(obj):
            raise ValueError(f"{reader.source}: {where} refers to {ref!r}, which is stored unfitted; a fitted "
                             "object is needed here.")
        return obj
    cls_name = entry.get("class")
    if not isinstance(cls_name, str) or cls_name not in CLASSES:
        raise ValueError(
            f"{reader.source}: {where} names class {cls_name!r}, which skmld does not load; allowed classes: "
            f"{', '.join(CLASSES)}."
        )
    if entry.get("path") != expected_prefix:
        raise ValueError(f"{reader.source}: {where} has path {entry.get('path')!r}, expected {expected_prefix!r}.")
    fitted_flag = entry.get("fitted", True)
    unfitted_ok = allow_unfitted and cls_name in _NETWORK_CLASSES
    if fitted_flag is not True and (fitted_flag is not False or not unfitted_ok):
        raise ValueError(f"{reader.source}: {where} has fitted={_short(fitted_flag)}; only a CalibratedDynamics's "
                         "estimator may be stored unfitted (\"fitted\": false).")
    member = expected_prefix + _ESTIMATOR
    doc = reader.json(member, f"parameters of the {cls_name}")
    params = _decode_attrs(doc.get("params"), reader, member, "params")
    cls = _import_class(cls_name)

    if cls_name == "Pipeline":
        steps_entry = entry.get("steps")
        if not isinstance(steps_entry, list) or not steps_entry:
            raise ValueError(f"{reader.source}: {where} must list the Pipeline's steps as [name, object] pairs.")
        steps = []
        for i, pair in enumerate(steps_entry):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise ValueError(f"{reader.source}: {where} step {i} must be a [name, object] pair, "
                                 f"got {_short(pair)}.")
            name, sub = pair
            step = sub if sub is None or sub == "passthrough" else _read_object(
                sub, f"{expected_prefix}steps/{i}/", reader, depth + 1, seen)
            steps.append((name, step))
        try:
            pipe = cls(steps, **params)
            pipe._validate_params()
        except (TypeError, ValueError) as e:
            raise _invalid(reader, member, f"invalid Pipeline parameters: {e}") from None
        seen[expected_prefix] = pipe
        return pipe

    backbone = None
    if "backbone" in entry:
        if cls_name != "MesoDynamicsEstimator":
            raise ValueError(f"{reader.source}: {where}: only a MesoDynamicsEstimator has a backbone.")
        backbone = _read_object(entry["backbone"], f"{expected_prefix}backbone/", reader, depth + 1, seen,
                                allow_unfitted=not fitted_flag)
        if type(backbone).__name__ != "MicroDynamicsEstimator":
            raise ValueError(f"{reader.source}: {where}: the backbone must be a MicroDynamicsEstimator, "
                             f"got a {type(backbone).__name__}.")
    if "backbone" in params:
        raise _invalid(reader, member, "params must not hold the backbone (it is a nested manifest entry).")
    if cls_name == "MesoDynamicsEstimator":
        params["backbone"] = backbone

    nested = {}
    for key in ("estimator", "estimator_"):
        if cls_name != "CalibratedDynamics":
            if key in entry:
                raise ValueError(f"{reader.source}: {where}: only a CalibratedDynamics has an {key}.")
            continue
        if key not in entry:
            raise ValueError(f"{reader.source}: {where}: the CalibratedDynamics's {key} is missing.")
        nested[key] = _read_object(entry[key], f"{expected_prefix}{key}/", reader, depth + 1, seen,
                                   allow_unfitted=key == "estimator")
        if type(nested[key]).__name__ not in _NETWORK_CLASSES:
            raise ValueError(f"{reader.source}: {where}: the CalibratedDynamics's {key} must be a "
                             f"MicroDynamicsEstimator or MesoDynamicsEstimator, got a {type(nested[key]).__name__}.")
        if key in params:
            raise _invalid(reader, member, f"params must not hold the {key} (it is a nested manifest entry).")
    if cls_name == "CalibratedDynamics":
        params["estimator"] = nested["estimator"]
        if "cv" in params and not _storable_cv(params["cv"]):
            raise _invalid(reader, member, f"param 'cv' must be 'prefit', an int or None, got "
                                           f"{_short_value(params['cv'])}.")
    try:
        est = cls(**params)
        est._validate_params()
    except (TypeError, ValueError) as e:
        raise _invalid(reader, member, f"invalid {cls_name} parameters: {e}") from None

    if not fitted_flag:
        extra = sorted(set(doc) - {"params"})
        if extra:
            raise _invalid(reader, member, f"an unfitted {cls_name} holds parameters only, got keys {extra}.")
        seen[expected_prefix] = est
        return est

    fitted = _decode_attrs(doc.get("fitted"), reader, member, "fitted")
    for name, (what, ok) in _FITTED[cls_name].items():
        if name not in fitted:
            raise _invalid(reader, member, f"fitted attribute {name!r} is missing; expected {what}.")
        if not ok(fitted[name]):
            raise _invalid(reader, member,
                           f"fitted attribute {name!r} must be {what}, got {_short_value(fitted[name])}.")
    for name in fitted:
        if name in params or name in _RUNTIME_ATTRS or hasattr(cls, name):
            raise _invalid(reader, member, f"fitted attribute {name!r} would shadow a parameter or method.")
        if name in nested:
            raise _invalid(reader, member, f"fitted attribute {name!r} must not be here (it is a nested manifest "
                                           "entry).")
    if cls_name in _CONSISTENT:
        problem = _CONSISTENT[cls_name](fitted)
        if problem is not None:
            raise _invalid(reader, member, problem)
    if cls_name == "PatchTokenizer":
        import xarray as xr

        fitted["_fit_kind"] = getattr(xr, fitted["_fit_kind"])
    est.__dict__.update(fitted)
    if cls_name == "CalibratedDynamics":
        est.estimator_ = nested["estimator_"]

    if cls_name in _NETWORK_CLASSES:
        _load_networks(est, doc, expected_prefix, reader, member)
    seen[expected_prefix] = est
    return est


def _short_value(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _load_networks(est, doc: dict, prefix: str, reader: _Reader, member: str) -> None:
    nets = doc.get("networks")
    if not isinstance(nets, dict):
        raise _invalid(reader, member, f"key 'networks' must be an object with fields, latent_channels and "
                                       f"models, got {_short(nets)}.")
    fields = _key(nets, "fields", list, reader, member, "a list of field names")
    if fields != est.fields_:
        raise _invalid(reader, member, f"networks.fields {fields} differ from fields_ {est.fields_}.")
    channels = _key(nets, "latent_channels", int, reader, member, "an int")
    models_doc = _key(nets, "models", dict, reader, member, "an object of network name -> member")
    expected = set(_network_names_for(est))
    if set(models_doc) != expected:
        raise _invalid(reader, member, f"networks.models names {sorted(models_doc)}; expected exactly "
                                       f"{sorted(expected)}.")
    models = {}
    for name in sorted(models_doc):
        if models_doc[name] != _member_name(prefix, name):
            raise _invalid(reader, member, f"network {name!r} must be stored in {_member_name(prefix, name)!r}, "
                                           f"got {_short(models_doc[name])}.")
        models[name] = _load_keras(reader, _member_name(prefix, name))
    est._networks = est._restore_networks(models, list(fields), channels)


def _network_names_for(est) -> list:
    """Names of the networks ``est`` owns, known from its fitted attributes alone."""
    from skmld import _engine

    if type(est).__name__ == "MesoDynamicsEstimator" and est.backbone is not None:
        return est._owned_names()
    names = [f"{kind}/{f}" for f in est.fields_ for kind in _engine.PART_KINDS]
    return names + list(_engine.COUPLED)


def _check_keras_config(node: Any, reader: _Reader, member: str) -> None:
    """Refuse Lambda layers and any class that is neither Keras's nor registered by skmld."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        if "class_name" not in node:
            continue
        cls, module = node.get("class_name"), node.get("module")
        registered = node.get("registered_name")
        if cls in ("Lambda", "TFOpLambda") or cls == "__lambda__":
            raise _invalid(reader, member, f"the network holds a {cls} layer, which stores Python bytecode; skmld "
                                           "never writes one and refuses to load it.")
        if isinstance(registered, str) and registered.startswith("skmld>"):
            continue
        keras_module = module is None or (isinstance(module, str) and module.split(".")[0] == "keras") or (
            module == "builtins" and cls == "function")
        if registered not in (None, cls, "function") or not keras_module:
            raise _invalid(
                reader, member,
                f"the network holds object {cls!r} (module {module!r}, registered name {registered!r}), which is "
                "neither a Keras built-in nor a custom object registered by skmld."
            )


def _load_keras(reader: _Reader, member: str):
    import keras

    import skmld.nn  # noqa: F401  (registers skmld's custom layers)

    raw = reader.read(member, "a Keras .keras archive")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as inner:
            config = json.loads(inner.read("config.json"))
    except (zipfile.BadZipFile, KeyError, EOFError, UnicodeDecodeError, json.JSONDecodeError, zlib.error) as e:
        raise _invalid(reader, member, f"not a valid .keras archive with a config.json ({e}).") from None
    _check_keras_config(config, reader, member)
    with tempfile.TemporaryDirectory(prefix="skmld-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as e:  # any deserialization failure is a bad file, never code to run
            raise _invalid(reader, member, f"Keras could not load the network in safe mode: "
                                           f"{type(e).__name__}: {str(e)[:500]}") from None
    if not isinstance(model, keras.Model):
        raise _invalid(reader, member, f"expected a Keras model, got a {type(model).__name__}.")
    return model


def load(path: str | os.PathLike | io.IOBase) -> BaseEstimator:
    """Read an estimator or Pipeline written by :func:`save` (or ``est.save``).

    Nothing is unpickled and no code from the file runs: only skmld's
    estimator classes and sklearn's Pipeline are built, and networks load with
    Keras's safe mode after a check of their configuration.

    Parameters
    ----------
    path : str, path-like or binary file object
        The model file.

    Returns
    -------
    estimator : MicroDynamicsEstimator, MesoDynamicsEstimator, PatchTokenizer, CalibratedDynamics or Pipeline
        Fitted, predicting exactly as the saved one.

    Raises
    ------
    ValueError
        If the file is not a valid skmld model file (not a zip, truncated,
        corrupted, a member missing or of the wrong type, an unknown class, a
        network with a Lambda layer or an unregistered custom object), or was
        written by a newer skmld (its ``format_version`` is newer than
        :data:`FORMAT_VERSION`).

    See Also
    --------
    save : Write a model file.

    Examples
    --------
    >>> import tempfile, os, numpy as np, xarray as xr
    >>> import skmld
    >>> from skmld.persistence import save
    >>> X = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.ones((1, 2, 32, 32)))})
    >>> path = os.path.join(tempfile.mkdtemp(), "tok.skmld")
    >>> save(skmld.PatchTokenizer().fit(X), path)
    >>> skmld.load(path).fields_
    ['temperature']
    """
    source = repr(getattr(path, "name", None) or "<file object>") if hasattr(path, "read") else repr(os.fspath(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{source} is not an skmld model file: not a readable zip archive ({e}); the file may be "
                         "truncated or corrupted.") from None
    with zf:
        reader = _Reader(zf, source)
        if _MANIFEST not in reader.names:
            # A truncated file can still parse as a zip: one of the inner .keras archives.
            raise ValueError(f"{source} is not an skmld model file, or it is truncated: member {_MANIFEST!r} is "
                             "missing.")
        manifest = reader.json(_MANIFEST, "the manifest")
        if manifest.get("format") != "skmld":
            raise _invalid(reader, _MANIFEST, f"key 'format' must be 'skmld', got {_short(manifest.get('format'))}.")
        version = _key(manifest, "format_version", int, reader, _MANIFEST, "an int")
        if version > FORMAT_VERSION:
            import skmld

            raise ValueError(
                f"{source} has format_version {version}, but this skmld ({skmld.__version__}) reads "
                f"format_version {FORMAT_VERSION} and older; upgrade skmld to load it."
            )
        if version < 1:
            raise _invalid(reader, _MANIFEST, f"format_version must be >= 1, got {version}.")
        return _read_object(manifest.get("object"), _ROOT, reader)
