"""The tree of estimators in a model file: allow-listed classes, each stored through its declared state.

skmld's classes declare their state (:class:`skmld._state.FittedState`); sklearn's
Pipeline, which cannot, is its parameters and steps.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from skmld._state import FittedState
from skmld.persistence import _networks
from skmld.persistence._archive import Reader, json_bytes
from skmld.persistence._values import Invalid, decode, encode, short

#: Classes a model file may name (class name -> module); nothing else is instantiated.
CLASSES: dict[str, str] = {
    "MicroDynamicsEstimator": "skmld.micro",
    "MesoDynamicsEstimator": "skmld.meso",
    "PatchTokenizer": "skmld.tokenizer",
    "CalibratedDynamics": "skmld.calibration",
    "Pipeline": "sklearn.pipeline",
}
MANIFEST = "manifest.json"
_ESTIMATOR = "estimator.json"
_ATTR_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_MAX_DEPTH = 8


def _class(name: str) -> type:
    return getattr(importlib.import_module(CLASSES[name]), name)


def _is_fitted(obj) -> bool:
    try:
        check_is_fitted(obj)
    except NotFittedError:
        return False
    return True


def _nested_keys(cls: type) -> tuple:
    return tuple(cls._estimator_slots) if issubclass(cls, FittedState) else ("steps",)


def write(obj, path: str, members: dict, where: str, seen: dict, may_be_unfitted: bool = False) -> dict:
    """Add ``obj``'s members under ``path``; return its manifest entry.

    ``seen`` maps ``id()`` of the objects written so far to their paths: an
    object met again is ``{"same_as": path}``.
    """
    if id(obj) in seen:
        if not may_be_unfitted and isinstance(obj, FittedState):
            check_is_fitted(obj)
        return {"same_as": seen[id(obj)]}
    name = type(obj).__name__
    if CLASSES.get(name) != type(obj).__module__:
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; skmld's safe format stores "
                        f"only {', '.join(CLASSES)} (use pickle/joblib for other objects, from trusted sources only).")
    entry: dict[str, Any] = {"class": name}
    params = obj.get_params(deep=False)
    if not isinstance(obj, FittedState):  # a Pipeline
        if params.get("memory") is not None:
            raise ValueError(f"{where} has memory={params['memory']!r}; set memory=None to save it.")
        entry["steps"] = [[step, est if est is None or est == "passthrough" else write(
            est, f"{path}steps/{i}/", members, f"{where} step {step!r}", seen)]
            for i, (step, est) in enumerate(params.pop("steps"))]
        doc = {"params": _encode_all(params, where)}
    else:
        problem = obj._param_problem(params)
        if problem is not None:
            raise TypeError(f"{where} {problem}")
        fitted = _is_fitted(obj)
        if not fitted and not may_be_unfitted:
            check_is_fitted(obj)
        params, state = obj._stored_params(), obj._fitted_state() if fitted else {}
        for key, slot in obj._estimator_slots.items():
            value = (params if key in params else state).pop(key, None)
            if value is None:
                continue
            if type(value).__name__ not in slot.classes:
                raise TypeError(f"{where}'s {key} is a {type(value).__module__}.{type(value).__qualname__}; skmld's "
                                f"safe format stores a {name} of a {' or '.join(slot.classes)} only.")
            entry[key] = write(value, f"{path}{key}/", members, f"{where}'s {key}", seen, slot.unfitted or not fitted)
        doc = {"params": _encode_all(params, where)}
        if fitted:
            doc["fitted"] = _encode_all(state, where)
            nets = obj._network_state()
            if nets is not None:
                doc["networks"] = _networks.write(nets, path, members)
        else:
            entry["fitted"] = False
    members[path + _ESTIMATOR] = json_bytes(doc)
    seen[id(obj)] = path
    return entry


def _encode_all(attrs: dict, where: str) -> dict:
    return {k: encode(v, f"{where}.{k}") for k, v in attrs.items()}


def read(entry: Any, path: str, reader: Reader, seen: dict, depth: int = 0, may_be_unfitted: bool = False):
    """Rebuild the object of manifest ``entry``, stored under ``path``.

    ``seen`` maps the paths of the objects read so far to them, for
    ``{"same_as": path}`` entries.
    """
    where = f"{MANIFEST!r} entry {path!r}"
    if depth > _MAX_DEPTH:
        raise ValueError(f"{reader.source}: {where} nests objects too deep.")
    if not isinstance(entry, dict):
        raise ValueError(f"{reader.source}: {where} must be a JSON object, got {short(entry)}.")
    if "same_as" in entry:
        ref = entry["same_as"]
        if set(entry) != {"same_as"} or not isinstance(ref, str) or ref not in seen:
            raise ValueError(f"{reader.source}: {where} must be {{\"same_as\": path}} with the path of an object "
                             f"stored before it, got {short(entry)}.")
        if not may_be_unfitted and isinstance(seen[ref], FittedState) and not _is_fitted(seen[ref]):
            raise ValueError(f"{reader.source}: {where} refers to {ref!r}, which is stored unfitted; a fitted "
                             "object is needed here.")
        return seen[ref]
    name = entry.get("class")
    if not isinstance(name, str) or name not in CLASSES:
        raise ValueError(f"{reader.source}: {where} names class {name!r}, which skmld does not load; allowed "
                         f"classes: {', '.join(CLASSES)}.")
    cls = _class(name)
    for key in sorted(set(entry) - {"class", "fitted", *_nested_keys(cls)}):
        owners = [n for n in CLASSES if key in _nested_keys(_class(n))]
        raise ValueError(f"{reader.source}: {where}: " + (
            f"only a {' or a '.join(owners)} has {'an' if key[0] in 'aeiou' else 'a'} {key}." if owners
            else f"unknown key {key!r}."))
    fitted = entry.get("fitted", True)
    if fitted is not True and (fitted is not False or not may_be_unfitted or not issubclass(cls, FittedState)):
        can = [f"a {n}'s {k}" for n in CLASSES if issubclass(c := _class(n), FittedState)
               for k, slot in c._estimator_slots.items() if slot.unfitted]
        raise ValueError(f"{reader.source}: {where} has fitted={short(fitted)}; only {' or '.join(can)} may be "
                         "stored unfitted (\"fitted\": false).")
    member = path + _ESTIMATOR
    doc = reader.json(member, f"parameters of the {name}")
    params = _decode_all(doc.get("params"), reader, member, "params")
    if not issubclass(cls, FittedState):  # a Pipeline
        pairs = entry.get("steps")
        if not isinstance(pairs, list) or not pairs or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise ValueError(f"{reader.source}: {where} must list the Pipeline's steps as [name, object] pairs.")
        steps = [(step, sub if sub is None or sub == "passthrough" else read(
            sub, f"{path}steps/{i}/", reader, seen, depth + 1)) for i, (step, sub) in enumerate(pairs)]
        obj = _construct(cls, reader, member, steps, **params)
        seen[path] = obj
        return obj

    nested, param_names = {}, cls._get_param_names()
    for key, slot in cls._estimator_slots.items():
        if key in params:
            raise reader.invalid(member, f"params must not hold the {key} (it is a nested manifest entry).")
        if key in entry:
            nested[key] = read(entry[key], f"{path}{key}/", reader, seen, depth + 1, slot.unfitted or not fitted)
            if type(nested[key]).__name__ not in slot.classes:
                raise ValueError(f"{reader.source}: {where}: the {name}'s {key} must be a "
                                 f"{' or '.join(slot.classes)}, got a {type(nested[key]).__name__}.")
        elif fitted and key not in param_names:
            raise ValueError(f"{reader.source}: {where}: the {name}'s {key} is missing.")
    params.update({k: nested.get(k) for k in cls._estimator_slots if k in param_names})
    problem = cls._param_problem(params)
    if problem is not None:
        raise reader.invalid(member, f"{name} {problem}")
    est = _construct(cls, reader, member, **params)
    if not fitted:
        extra = sorted(set(doc) - {"params"})
        if extra:
            raise reader.invalid(member, f"an unfitted {name} holds parameters only, got keys {extra}.")
        seen[path] = est
        return est

    state = _decode_all(doc.get("fitted"), reader, member, "fitted")
    problem = cls._state_problem(state)
    if problem is not None:
        raise reader.invalid(member, problem)
    for key in state:
        if key in params or key in cls._runtime_attrs or hasattr(cls, key):
            raise reader.invalid(member, f"fitted attribute {key!r} would shadow a parameter or method.")
        if key in cls._estimator_slots:
            raise reader.invalid(member, f"fitted attribute {key!r} must not be here (it is a nested manifest entry).")
    est._set_fitted_state({**state, **{k: v for k, v in nested.items() if k not in param_names}})
    names = est._network_names()
    if names is not None:
        est._set_network_state(_networks.read(doc.get("networks"), names, est.fields_, path, reader, member))
    elif "networks" in doc:
        raise reader.invalid(member, f"key 'networks' must not be here: a {name} has no networks.")
    seen[path] = est
    return est


def _construct(cls: type, reader: Reader, member: str, *args, **params):
    try:
        obj = cls(*args, **params)
        obj._validate_params()
    except (TypeError, ValueError) as e:
        raise reader.invalid(member, f"invalid {cls.__name__} parameters: {e}") from None
    return obj


def _decode_all(raw: Any, reader: Reader, member: str, key: str) -> dict:
    if not isinstance(raw, dict):
        raise reader.invalid(member, f"key {key!r} must be a JSON object of name -> value, got {short(raw)}.")
    out = {}
    for name, value in raw.items():
        if not _ATTR_NAME.match(name):
            raise reader.invalid(member, f"{key} names an invalid attribute {name!r}.")
        try:
            out[name] = decode(value, f"{key}.{name}")
        except Invalid as e:
            raise reader.invalid(member, str(e)) from None
    return out
