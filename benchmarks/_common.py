"""Helpers shared by the benchmarks: machine description, JSON output, stage timing, evaluation."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs"
HOTSPOT_KEYS = ("T_hs", "A_hs", "dT_hs_dt", "dA_hs_dt")
MASK_KEYS = ("f1", "iou", "n_hotspots_true", "n_hotspots_pred", "n_hotspots_rmse", "excess_heat_rmse")
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import numpy as np

    info = {
        "cpu_model": cpu_model(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def write_json(name: str, payload: dict, directory=None) -> Path:
    """Write ``payload`` to ``<directory>/<name>.json`` (default ``benchmarks/results``)."""
    directory = Path(directory) if directory is not None else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    return path


@contextlib.contextmanager
def stage_timer():
    """Wall time per training stage of every skmld estimator fitted inside the block."""
    from skmld._trainer import Trainer

    times = defaultdict(float)
    original = Trainer.run_stage

    def timed(self, index, stage, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, index, stage, *args, **kwargs)
        finally:
            times[stage.name] += time.perf_counter() - start

    Trainer.run_stage = timed
    try:
        yield times
    finally:
        Trainer.run_stage = original


def _per_field(da) -> dict:
    return {str(f): float(v) for f, v in zip(da["field"].values, da.values)}


def evaluate(truth, pred, thresholds=(700.0, 875.0, 1200.0), threshold=875.0) -> dict:
    """Numbers of one prediction against ``truth``, physical units, times after the first (the given state).

    ``r2_per_field`` and their mean ``r2_mean``; ``field_rmse`` per field over
    samples, cells and times; ``hotspot_rmse`` of T_hs, A_hs and their rates at
    ``threshold``; ``hot_mask`` scores (F1, IoU, counts, excess heat) per
    threshold in ``thresholds``.
    """
    import numpy as np

    from skmld.metrics import field_rmse, hotspot_mask_scores, hotspot_rmse, r2_per_field

    t1, p1 = truth.isel(time=slice(1, None)), pred.isel(time=slice(1, None))
    r2 = _per_field(r2_per_field(t1, p1))
    rmse = np.sqrt((field_rmse(t1, p1) ** 2).mean("time"))  # equal counts per time: RMSE over everything
    hs = hotspot_rmse(t1, p1, threshold=threshold)
    mask = hotspot_mask_scores(t1, p1, thresholds=sorted({*thresholds, threshold}))
    return {
        "r2_per_field": r2,
        "r2_mean": float(np.mean(list(r2.values()))),
        "field_rmse": _per_field(rmse),
        "hotspot_rmse": {k: float(hs[f"{k}_overall"]) for k in HOTSPOT_KEYS},
        "hot_mask": {f"{float(th):g}": {k: float(mask[k].sel(threshold=th))
                                        for k in MASK_KEYS}
                     for th in mask["threshold"].values},
    }


def units(truth, threshold=875.0) -> dict:
    """Units of ``evaluate``'s ``field_rmse``, ``hotspot_rmse`` and ``hot_mask`` entries."""
    from skmld.metrics import field_rmse, hotspot_mask_scores, hotspot_rmse

    t = truth.isel(time=slice(0, 2))
    rmse = field_rmse(t, t)
    hs = hotspot_rmse(t, t, threshold=threshold)
    mask = hotspot_mask_scores(t, t, thresholds=threshold)
    return {"field_rmse": {str(f): str(u) for f, u in zip(rmse["field"].values, rmse["units"].values)},
            "hotspot_rmse": {k: str(hs[f"{k}_overall"].attrs["units"]) for k in HOTSPOT_KEYS},
            "hot_mask": {k: str(mask[k].attrs.get("units", "")) for k in MASK_KEYS}}


def no_hotspot_rmse(truth, threshold=875.0) -> dict:
    """Hotspot RMSEs of a prediction without any hotspot (truth, temperature clipped at ``threshold``)."""
    from skmld.metrics import hotspot_rmse

    t1 = truth.isel(time=slice(1, None))
    cold = t1.assign(temperature=t1["temperature"].clip(max=threshold))
    hs = hotspot_rmse(t1, cold, threshold=threshold)
    return {k: float(hs[f"{k}_overall"]) for k in HOTSPOT_KEYS}
