"""Networks: each one a Keras config (JSON) and its weights (``.npz``), rebuilt in Keras's safe mode."""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import Any

import numpy as np

from skmld.persistence._archive import Reader, json_bytes, zip_bytes
from skmld.persistence._values import short


def _members(prefix: str, name: str) -> tuple[str, str]:
    return f"{prefix}models/{name}.json", f"{prefix}models/{name}.npz"


def write(state: dict, prefix: str, members: dict) -> dict:
    """Add the networks of ``state`` (:meth:`~skmld._state.FittedState._network_state`); return their entry."""
    from skmld._base import _serialize  # the form pickle stores too

    for name, model in state["models"].items():
        config, weights = _members(prefix, name)
        net = _serialize(model)
        members[config] = json_bytes(net["config"])
        arrays = {}
        for i, w in enumerate(net["weights"]):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(w), allow_pickle=False)
            arrays[f"arr_{i}.npy"] = buf.getvalue()
        members[weights] = zip_bytes(arrays)
    return {"fields": list(state["fields"]), "latent_channels": int(state["latent_channels"]),
            "models": sorted(state["models"])}


def read(nets: Any, names: list, fields_: list, prefix: str, reader: Reader, member: str) -> dict:
    """The network state of entry ``nets`` of ``member``: the networks ``names``, on fields ``fields_``."""
    if not isinstance(nets, dict):
        raise reader.invalid(member, f"key 'networks' must be an object with fields, latent_channels and models, "
                                     f"got {short(nets)}.")
    fields = reader.key(nets, "fields", list, member, "a list of field names")
    if fields != fields_:
        raise reader.invalid(member, f"networks.fields {short(fields)} differ from fields_ {fields_}.")
    channels = reader.key(nets, "latent_channels", int, member, "an int")
    stored = reader.key(nets, "models", list, member, "a list of network names")
    if stored != sorted(names):
        raise reader.invalid(member, f"networks.models names {short(stored)}; expected exactly {sorted(names)}.")
    return {"fields": fields, "latent_channels": channels,
            "models": {name: _load(reader, *_members(prefix, name), name) for name in stored}}


def _load(reader: Reader, config_member: str, weights_member: str, name: str):
    import keras

    import skmld.nn  # noqa: F401  (registers skmld's custom layers)

    config = reader.json(config_member, f"the Keras config of network {name!r}")
    check_config(config, reader, config_member)
    weights = _weights(reader, weights_member, name)
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as e:  # any deserialization failure is a bad file, never code to run
        raise reader.invalid(config_member, f"Keras could not load the network in safe mode: "
                                            f"{type(e).__name__}: {str(e)[:500]}") from None
    if not isinstance(model, keras.Model):
        raise reader.invalid(config_member, f"expected a Keras model, got a {type(model).__name__}.")
    try:
        model.set_weights(weights)
    except Exception as e:
        raise reader.invalid(weights_member, f"the weights do not fit the network: {type(e).__name__}: "
                                             f"{str(e)[:500]}") from None
    return model


def _weights(reader: Reader, member: str, name: str) -> list:
    raw = reader.read(member, f"the weights of network {name!r}")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            inner = Reader(zf, f"{reader.source} member {member!r}")
            expected = [f"arr_{i}.npy" for i in range(len(inner.names))]
            if sorted(inner.names) != sorted(expected):
                raise ValueError(f"it holds {sorted(inner.names)[:4]}, not arr_0.npy, arr_1.npy, ...")
            return [np.lib.format.read_array(io.BytesIO(inner.read(n, "an array")), allow_pickle=False)
                    for n in expected]
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError, MemoryError) as e:
        raise reader.invalid(member, f"not a valid .npz archive of weights ({str(e)[:500]}).") from None


def check_config(node: Any, reader: Reader, member: str) -> None:
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
        cls, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
        if cls in ("Lambda", "TFOpLambda", "__lambda__"):
            raise reader.invalid(member, f"the network holds a {cls} layer, which stores Python bytecode; skmld "
                                         "never writes one and refuses to load it.")
        if isinstance(registered, str) and registered.startswith("skmld>"):
            continue
        keras_module = module is None or (isinstance(module, str) and module.split(".")[0] == "keras") or (
            module == "builtins" and cls == "function")
        if registered not in (None, cls, "function") or not keras_module:
            raise reader.invalid(
                member, f"the network holds object {cls!r} (module {module!r}, registered name {registered!r}), "
                        "which is neither a Keras built-in nor a custom object registered by skmld.")
