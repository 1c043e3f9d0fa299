"""Per-epoch training checkpoints: written atomically, read back to resume a fit.

One ``checkpoint.npz`` (no pickle) per ``checkpoint_dir`` holds the weights of the
networks the estimator trains, the optimizer state of the horizon in progress,
the position (stage, horizon, epoch) of the last completed epoch, the learning
rate, ``history_`` and a fingerprint of the parameters and data, so a checkpoint
is never resumed by a different fit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

FILENAME = "checkpoint.npz"


def fingerprint(params: dict, x, rows: np.ndarray) -> str:
    """Hash of the parameters that shape the fit, of the data ``x`` and of the training ``rows``.

    ``x`` may be a dask array: it is hashed block by block, never loaded whole.
    """
    from skmld import _data

    ignore = {"verbose", "checkpoint_dir", "device", "distribute", "cache"}
    text = repr(sorted((k, repr(v)) for k, v in params.items() if k not in ignore))
    h = hashlib.sha256(text.encode())
    h.update(repr(x.shape).encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    for lo, hi in _data.blocks(x):
        h.update(np.ascontiguousarray(_data.load(x, lo, hi)).tobytes())
    return h.hexdigest()


def save(directory, *, position, lr, history, fingerprint, models: dict, optimizer=None) -> None:
    """Write the checkpoint to a temporary file, then rename it over the old one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"position": list(position), "lr": lr, "history": history, "fingerprint": fingerprint,
            "models": {name: len(m.get_weights()) for name, m in models.items()}}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for name, model in models.items():
        for i, w in enumerate(model.get_weights()):
            arrays[f"w/{name}/{i}"] = w
    if optimizer is not None:
        for i, v in enumerate(optimizer.variables):
            arrays[f"opt/{i}"] = np.asarray(v.numpy())
    tmp = directory / (FILENAME + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / FILENAME)  # atomic: a crash leaves the previous checkpoint whole


def load(directory) -> dict | None:
    """The checkpoint in ``directory``, or ``None`` when there is none."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            weights = {name: [data[f"w/{name}/{i}"] for i in range(n)] for name, n in meta["models"].items()}
            opt = sorted((k for k in data.files if k.startswith("opt/")), key=lambda k: int(k.split("/")[1]))
            optimizer = [data[k] for k in opt]
    except Exception as exc:  # noqa: BLE001 - any damage means the same thing to the user
        raise ValueError(f"The checkpoint {path} cannot be read ({exc}); delete it to start afresh.") from exc
    return {**meta, "weights": weights, "optimizer": optimizer}
