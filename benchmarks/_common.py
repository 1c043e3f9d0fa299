"""Helpers shared by the benchmarks: machine description, JSON output, stage timing."""

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
    }
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    return path


@contextlib.contextmanager
def stage_timer():
    """Wall time per training stage of every skmld estimator fitted inside the block."""
    from skmld._base import LatentDynamicsEstimator

    times = defaultdict(float)
    original = LatentDynamicsEstimator._run_stage

    def timed(self, index, stage, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, index, stage, *args, **kwargs)
        finally:
            times[stage.name] += time.perf_counter() - start

    LatentDynamicsEstimator._run_stage = timed
    try:
        yield times
    finally:
        LatentDynamicsEstimator._run_stage = original


def persistence_r2(tokens) -> float:
    """R² over times after the first of predicting the initial state everywhere (same formula as ``score``)."""
    import numpy as np

    x = np.asarray(tokens.transpose("sample", "time", ...).values, dtype=np.float64)
    truth, pred = x[:, 1:], np.broadcast_to(x[:, :1], x[:, 1:].shape)
    return float(1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2))
