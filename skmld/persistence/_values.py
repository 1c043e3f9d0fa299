"""Parameters and fitted attributes as JSON: values JSON cannot tell apart carry a one-key tag."""

from __future__ import annotations

import json
import math
from numbers import Integral
from typing import Any

import numpy as np

_KINDS = "biuf"  # numeric dtypes, stored as JSON numbers


class Invalid(ValueError):
    """A stored value of the wrong type or form (the caller adds the member's name)."""


def encode(value: Any, where: str) -> Any:
    """A JSON-able form of ``value`` that :func:`decode` maps back to an equal value of the same type."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        if value.dtype.kind not in _KINDS:
            raise TypeError(f"{where}: numpy scalar of dtype {value.dtype} cannot be saved.")
        return {"__scalar__": [value.dtype.str, encode(value.item(), where)]}
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (tuple, list)):
        items = [encode(v, where) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):  # pairs: the key order survives sorted JSON keys (ranges_ follows the fields)
        return {"__dict__": [[encode(k, where), encode(v, where)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode_array(value, where)}
    if isinstance(value, np.random.RandomState):
        return {"__random_state__": encode(value.get_state(legacy=True), where)}
    import xarray as xr

    if isinstance(value, xr.Variable):
        return {"__variable__": {"index": isinstance(value, xr.IndexVariable), "dims": [str(d) for d in value.dims],
                                 "data": _encode_array(np.asarray(value.values), where),
                                 "attrs": encode(dict(value.attrs), where)}}
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which skmld's safe format cannot store "
        "(it stores None, bool, int, float, str, tuples, lists, dicts, numpy arrays and scalars, xarray variables "
        "and RandomState states).")


def _encode_array(a: np.ndarray, where: str) -> dict:
    kind = a.dtype.kind
    if kind in _KINDS:
        data = [encode(v, where) for v in a.ravel().tolist()]
    elif kind in "mM":
        data = a.view(np.int64).ravel().tolist()
    elif kind == "U" or (kind == "O" and all(isinstance(v, str) for v in a.ravel())):
        data = [str(v) for v in a.ravel()]
    else:
        raise TypeError(f"{where}: numpy array of dtype {a.dtype} cannot be saved.")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": data}


def decode(value: Any, where: str) -> Any:
    """The value :func:`encode` made ``value`` from; :class:`Invalid` if it is not one it makes."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [decode(v, where) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise Invalid(f"{where}: expected a JSON value or a one-key tagged object, got {short(value)}")
    (tag, body), = value.items()
    if tag == "__tuple__":
        return tuple(decode(v, where) for v in _expect(body, list, where, "a list"))
    if tag == "__dict__":
        out = {}
        for pair in _expect(body, list, where, "a list of [key, value] pairs"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise Invalid(f"{where}: expected a [key, value] pair, got {short(pair)}")
            try:
                out[decode(pair[0], where)] = decode(pair[1], where)
            except TypeError:
                raise Invalid(f"{where}: dict key {short(pair[0])} is not hashable") from None
        return out
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise Invalid(f"{where}: expected 'nan', 'inf' or '-inf' for a non-finite float, got {short(body)}")
        return float(body)
    if tag == "__scalar__":
        if not isinstance(body, list) or len(body) != 2:
            raise Invalid(f"{where}: expected [dtype, value] for a numpy scalar, got {short(body)}")
        return _dtype(body[0], where, _KINDS).type(decode(body[1], where))
    if tag == "__ndarray__":
        return _decode_array(body, where)
    if tag == "__random_state__":
        rs = np.random.RandomState()
        try:
            rs.set_state(decode(body, where))
        except (TypeError, ValueError) as e:
            raise Invalid(f"{where}: not a RandomState state ({e})") from None
        return rs
    if tag == "__variable__":
        import xarray as xr

        body = _expect(body, dict, where, "an object with index, dims, data, attrs")
        if set(body) != {"index", "dims", "data", "attrs"} or not isinstance(body["index"], bool):
            raise Invalid(f"{where}: expected an xarray variable with keys index, dims, data, attrs, got {short(body)}")
        dims = _expect(body["dims"], list, where, "a list of dim names")
        data, attrs = _decode_array(body["data"], where), decode(body["attrs"], where)
        if not all(isinstance(d, str) for d in dims) or not isinstance(attrs, dict) or data.ndim != len(dims) or (
                body["index"] and data.ndim != 1):
            raise Invalid(f"{where}: inconsistent xarray variable (dims {dims}, data shape {data.shape})")
        return (xr.IndexVariable if body["index"] else xr.Variable)(dims, data, attrs=attrs)
    raise Invalid(f"{where}: unknown tag {tag!r}")


def _decode_array(body: Any, where: str) -> np.ndarray:
    body = _expect(body, dict, where, "an array object with dtype, shape, data")
    if set(body) != {"dtype", "shape", "data"}:
        raise Invalid(f"{where}: expected an array with keys dtype, shape, data, got {short(body)}")
    dtype = _dtype(body["dtype"], where, _KINDS + "mMUO")
    shape, data = _expect(body["shape"], list, where, "a list of ints"), _expect(body["data"], list, where, "a list")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise Invalid(f"{where}: array shape must be non-negative ints, got {short(shape)}")
    if math.prod(shape) != len(data):
        raise Invalid(f"{where}: array of shape {shape} needs {math.prod(shape)} values, got {len(data)}")
    kind = dtype.kind
    values = data if kind in "UO" else [decode(v, where) if isinstance(v, dict) else v for v in data]
    ok = (str,) if kind in "UO" else (bool,) if kind == "b" else (int,) if kind in "iumM" else (int, float)
    if not all(isinstance(v, ok) and (kind == "b" or not isinstance(v, bool)) for v in values):
        raise Invalid(f"{where}: a {dtype} array must hold {'/'.join(t.__name__ for t in ok)} values")
    try:
        if kind in "mM":
            return np.array(values, dtype=np.int64).view(dtype).reshape(shape)
        return np.array(values, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise Invalid(f"{where}: values do not fit dtype {dtype} ({e})") from None


def _dtype(text: Any, where: str, kinds: str) -> np.dtype:
    if not isinstance(text, str) or len(text) > 16:
        raise Invalid(f"{where}: expected a numpy dtype string, got {short(text)}")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise Invalid(f"{where}: {text!r} is not a numpy dtype") from None
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise Invalid(f"{where}: dtype {text!r} is not allowed here")
    return dtype


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise Invalid(f"{where}: expected {what}, got {short(value)}")
    return value


def short(value: Any) -> str:
    """``"<type> <JSON>"``, cut at 80 characters, for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"
