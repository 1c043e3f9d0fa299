"""Per-epoch training checkpoints: written atomically, read back to resume a fit.

One ``checkpoint.npz`` (no pickle) per ``checkpoint_dir`` holds the weights of the
networks the estimator trains, the optimizer state of the horizon in progress,
the position (stage, horizon, epoch) of the last completed epoch, the learning
rate, ``history_`` and a fingerprint of the parameters and data, so a checkpoint
is never resumed by a different fit.

Arrays are keyed by name, not by position: a weight by its network, its layer's
place and class, and its own name (``w/encoder/temperature/3.Conv2D/kernel``);
an optimizer slot by the weight it belongs to (``opt/<weight key>/momentum``).
Keras's own variable paths hold per-process layer counters (``conv2d_17``), so
they cannot name a variable across processes. A restore refuses, naming them,
variables that are missing, unexpected or of another shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

FILENAME = "checkpoint.npz"
FORMAT = 2  # 1: arrays by position (skmld before named checkpoints)
_IGNORED_PARAMS = frozenset({"verbose", "checkpoint_dir", "device", "distribute", "cache"})


# -- fingerprint --------------------------------------------------------------------
def fingerprint(params: dict, x, rows: np.ndarray) -> str:
    """Hash of the parameters that shape the fit, of the data ``x`` and of the training ``rows``.

    Parameters are hashed by value (see :func:`_digest`). ``x`` may be a dask
    array: it is hashed block by block, never loaded whole.
    """
    from skmld import _data

    h = hashlib.sha256()
    _digest(h, {k: v for k, v in params.items() if k not in _IGNORED_PARAMS})
    h.update(repr(x.shape).encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    for lo, hi in _data.blocks(x):
        h.update(np.ascontiguousarray(_data.load(x, lo, hi)).tobytes())
    return h.hexdigest()


def _digest(h, value) -> None:
    """Feed ``value`` to the hash ``h`` by what it holds, not by its ``repr``.

    A ``RandomState`` by its state (its ``repr`` holds a memory address; the
    state is read, never advanced); an estimator with networks (a fitted
    backbone) by its class, parameters and the bytes of every weight (its
    ``repr`` shows no weights); other estimators (a Pipeline around a backbone)
    by their class and parameters; containers item by item; anything else by
    ``repr`` as before.
    """
    from sklearn.base import BaseEstimator

    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = value.get_state()
        h.update(f"RandomState({name},{pos},{has_gauss},{gauss!r})".encode())
        h.update(np.ascontiguousarray(keys).tobytes())
    elif isinstance(value, BaseEstimator):
        h.update(f"<{type(value).__module__}.{type(value).__qualname__}>".encode())
        params = value.get_params(deep=False)
        _digest(h, {k: v for k, v in params.items() if k not in _IGNORED_PARAMS})
        nets = value.__dict__.get("_networks")
        if nets is not None:
            for name in sorted(nets.models):
                h.update(f"net {name}".encode())
                for w in nets.models[name].get_weights():
                    w = np.asarray(w)
                    h.update(f"{w.dtype.str}{w.shape}".encode())
                    h.update(np.ascontiguousarray(w).tobytes())
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            h.update(repr(k).encode() + b":")
            _digest(h, value[k])
            h.update(b",")
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}[".encode())
        for item in value:
            _digest(h, item)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(repr(value).encode())


# -- variable names -------------------------------------------------------------------
def weight_names(models: dict) -> dict:
    """``{key: variable}`` for every weight of ``models`` (name → Keras model), keyed by name.

    A key is ``w/<model>/<layer index>.<layer class>/<variable name>``: stable
    across processes (Keras numbers auto-named layers per process).
    """
    named = {}
    for model_name, model in models.items():
        for i, layer in enumerate(model.layers):
            for v in layer.weights:
                _put(named, f"w/{model_name}/{i}.{type(layer).__name__}/{v.name}", v)
        covered = {id(v) for v in named.values()}
        for j, v in enumerate(model.weights):  # weights of the model itself, if any
            if id(v) not in covered:
                _put(named, f"w/{model_name}/model.{j}/{v.name}", v)
    return named


def optimizer_names(optimizer, weights: dict) -> dict:
    """``{key: variable}`` for the optimizer's variables.

    A slot variable (Keras names it ``<weight path with _>_<slot>``) is keyed
    ``opt/<weight key>/<slot>`` after the weight of ``weights`` (from
    :func:`weight_names`) it belongs to; the others (``iteration``, a loss
    scale) ``opt/<name>``, numbered when a name repeats (a wrapped optimizer).
    """
    # Keras builds the slots in the order of the optimizer's variables: weights whose
    # paths coincide (copies of one network) take their slots in that order.
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    order = {id(v): i for i, v in enumerate(getattr(inner, "_trainable_variables", None) or ())}
    by_prefix = {}
    for key, v in sorted(weights.items(), key=lambda item: order.get(id(item[1]), len(order))):
        if not order or id(v) in order:
            by_prefix.setdefault(v.path.replace("/", "_"), []).append(key)
    seen, named = {}, {}
    for v in optimizer.variables:
        parts, key = v.name.split("_"), None
        for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that names a weight
            prefix, slot = "_".join(parts[:cut]), "_".join(parts[cut:])
            if prefix in by_prefix:
                n = seen[prefix, slot] = seen.get((prefix, slot), -1) + 1
                if n < len(by_prefix[prefix]):
                    key = f"opt/{by_prefix[prefix][n][2:]}/{slot}"
                break
        _put(named, key or f"opt/{v.name}", v)
    return named


def _put(named: dict, key: str, v) -> None:
    n = 1
    unique = key
    while unique in named:
        unique, n = f"{key}.{n}", n + 1
    named[unique] = v


# -- save and load --------------------------------------------------------------------
def save(directory, *, position, lr, history, fingerprint, models: dict, optimizer=None) -> None:
    """Write the checkpoint to a temporary file, then rename it over the old one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = weight_names(models)
    meta = {"format": FORMAT, "position": list(position), "lr": lr, "history": history,
            "fingerprint": fingerprint}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    arrays.update({key: np.asarray(v.numpy()) for key, v in weights.items()})
    if optimizer is not None:
        arrays.update({key: np.asarray(v.numpy()) for key, v in optimizer_names(optimizer, weights).items()})
    tmp = directory / (FILENAME + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / FILENAME)  # atomic: a crash leaves the previous checkpoint whole


def load(directory) -> dict | None:
    """The checkpoint in ``directory``, or ``None`` when there is none.

    Returns its metadata with ``weights`` and ``optimizer``: the arrays by key.
    """
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            weights = {k: data[k] for k in data.files if k.startswith("w/")}
            optimizer = {k: data[k] for k in data.files if k.startswith("opt/")}
    except Exception as exc:  # any damage means the same thing to the user
        raise ValueError(f"The checkpoint {path} cannot be read ({exc}); delete it to start afresh.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"The checkpoint {path} was written by another version of skmld (format "
                         f"{meta.get('format', 1) if isinstance(meta, dict) else '?'}, not {FORMAT}); "
                         "delete it to start afresh.")
    return {**meta, "weights": weights, "optimizer": optimizer}


def assign(variables: dict, arrays: dict, what: str) -> None:
    """Assign ``arrays`` (key → array) to ``variables`` (key → variable), all or nothing.

    Raises ``ValueError`` naming the variables missing from the checkpoint, the
    unexpected ones it holds and those of another shape.
    """
    missing = sorted(set(variables) - set(arrays))
    unexpected = sorted(set(arrays) - set(variables))
    shapes = sorted(f"{k} {tuple(arrays[k].shape)} (expected {tuple(variables[k].shape)})"
                    for k in set(variables) & set(arrays) if tuple(arrays[k].shape) != tuple(variables[k].shape))
    if missing or unexpected or shapes:
        problems = [f"{label}: {', '.join(_few(items))}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if items]
        raise ValueError(f"The checkpoint's {what} do not match the networks being fitted ("
                         f"{'; '.join(problems)}); delete the checkpoint to start afresh.")
    for key, v in variables.items():
        v.assign(arrays[key])


def _few(items: list, n: int = 5) -> list:
    return items if len(items) <= n else items[:n] + [f"... ({len(items) - n} more)"]
