"""Scaling benchmark: training throughput on 1 vs 2 replicas, and peak memory of out-of-core fits.

    python benchmarks/scaling.py [--quick]

Each measurement runs in a child process: logical CPU devices must be set up
before TensorFlow starts, and peak RSS (``ru_maxrss``) is per process.
Writes benchmarks/results/scaling.json and prints a Markdown table.

* Throughput: a micro fit (VAE + decoupled + coupled, horizon 1) on
  make_pore_collapse data; the time of each stage's *second* epoch (the first
  includes tracing), as windows per second, with ``distribute=None`` and with
  ``MirroredStrategy`` over 2 logical CPU devices (same global batch). oneDNN
  is off in both (logical CPU devices need it, see docs/scaling.md).
* Memory: examples/out_of_core.py on Zarr stores of growing size, opened
  lazily, fitted (one epoch per stage), scored and predicted to a second Zarr
  store; the peak resident memory of that run above the peak of the same run on
  an 8-sample store in the same process, with the default 32 MiB shuffle groups
  and with 4 MiB ones.
* Cap (``--only cap``): the fit alone, and the score plus lazy prediction
  alone, on a 105 MiB float64 store must stay under the small run's peak plus
  a third of the store; the script exits with status 1 when one does not.
  (The test suite checks the same workflow's blocks held at once, exactly;
  this checks the process's resident memory, which needs a big store to rise
  above the allocator's noise of about ±15 MiB.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap

from _common import RESULTS, machine, write_json

THROUGHPUT = """
import json, sys, time
import tensorflow as tf
replicas, n_samples, filters, batch = (int(a) for a in sys.argv[1:5])
if replicas > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
from skmld import MicroDynamicsEstimator, PatchTokenizer
from skmld.datasets import make_pore_collapse

X = make_pore_collapse("micro", n_samples, shape=(64, 96), n_steps=9, random_state=0)
T = PatchTokenizer(patch_size=32).fit_transform(X)
strategy = None if replicas == 1 else tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
from skmld._trainer import Trainer
times, current = {}, {}
run_epoch, run_stage = Trainer.run_epoch, Trainer.run_stage
def timed_epoch(self, step, batches):
    t0 = time.perf_counter()
    out = run_epoch(self, step, batches)
    times.setdefault(current["stage"], []).append(time.perf_counter() - t0)
    return out
def named_stage(self, index, stage, *args, **kwargs):
    current["stage"] = stage.name
    return run_stage(self, index, stage, *args, **kwargs)
Trainer.run_epoch, Trainer.run_stage = timed_epoch, named_stage
est = MicroDynamicsEstimator(filters=filters, dynamics_filters=filters, dropout=0.0, horizons=(1,), vae_epochs=2,
                             decoupled_epochs=2, coupled_epochs=2, batch_size=batch, random_state=0,
                             distribute=strategy).fit(T)
n_tokens = T.sizes["sample"] * T.sizes["token_y"] * T.sizes["token_x"]
items = {"vae": n_tokens * T.sizes["time"], "decoupled": n_tokens * (T.sizes["time"] - 1),
         "coupled": n_tokens * (T.sizes["time"] - 1)}
print(json.dumps({"epoch_s": {k: v[-1] for k, v in times.items()},
                  "per_s": {k: items[k] / v[-1] for k, v in times.items()}}))
"""

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "out_of_core.py")


def child(code: str | None, *args, env=None) -> dict:
    """Run ``code`` (``None``: examples/out_of_core.py) with ``args``; its last line of output, as JSON."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    program = [EXAMPLE] if code is None else ["-c", textwrap.dedent(code)]
    proc = subprocess.run([sys.executable, *program, *map(str, args)], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


PARTS = ("throughput", "memory", "cap")
# The cap runs: one token per float64 sample (the same bytes for half the training of float32),
# 4 MiB shuffle groups, batches of 8 windows (the small store's 8 samples fill one).
CAP = ("--copies", 20, "--dtype", "float64", "--patch-size", 0, "--decoupled-epochs", 0, "--batch-size", 8,
       "--group-mib", 4)
CAP_RUNS = {"fit": ("--no-predict",),
            # dask may hold one finished 8-sample block per thread until it is written: the
            # small store holds as many blocks (24 samples) as the big run can hold at once.
            "score_predict": ("--epochs", 0, "--small-copies", 6)}


def cap_check(tmp: str) -> dict:
    """Each cap run's figures, with ``cap_mib`` (the small run's peak + a third of the big store) and ``within``."""
    out = {}
    for name, options in CAP_RUNS.items():
        run = child(None, "--out", os.path.join(tmp, name), *CAP, *options)
        # The workflow did what it says: both stages trained, or every sample scored and predicted lazily.
        small, big = run["small"], run["big"]
        if name == "fit":
            done = small["epochs"] == big["epochs"] == 2
        else:
            done = all(r["lazy_prediction"] and r["first_predictions_finite"] and r["epochs"] == 0
                       and math.isfinite(r["score"]) for r in (small, big))
            done = done and big["predicted_samples"] == 4 * CAP[CAP.index("--copies") + 1]
        cap = small["peak_mib"] + big["data_mib"] / 3
        out[name] = {**run, "cap_mib": cap, "within": big["peak_mib"] < cap and done}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", choices=PARTS, help="run one part")
    args = parser.parse_args(argv)
    n_samples, filters, batch = (8, 4, 8) if args.quick else (32, 8, 16)
    copies = (20, 40) if args.quick else (20, 80, 160)
    throughput, memory, cap = {}, [], {}
    if args.only in (None, "throughput"):
        throughput = {r: child(THROUGHPUT, r, n_samples, filters, batch, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
                      for r in (1, 2)}
    if args.only in (None, "cap"):
        with tempfile.TemporaryDirectory() as tmp:
            cap = cap_check(tmp)
    if args.only in (None, "memory"):
        with tempfile.TemporaryDirectory() as tmp:
            for group in (32, 4):
                for c in copies:
                    memory.append(child(None, "--out", os.path.join(tmp, f"g{group}c{c}"), "--copies", c,
                                        "--batch-size", 16, "--group-mib", group))
    payload = {"machine": machine(), "quick": args.quick,
               "throughput": {"n_samples": n_samples, "filters": filters, "batch_size": batch,
                              "replicas": throughput, "load_average": os.getloadavg()},
               "memory": memory, "cap": cap}
    if args.only:  # keep the other parts' last results
        previous = RESULTS / "scaling.json"
        if previous.exists():
            last = json.loads(previous.read_text())
            payload.update({p: last.get(p, payload[p]) for p in PARTS if p != args.only})
    print(write_json("scaling", payload))
    for r, t in payload["throughput"]["replicas"].items():
        if r == 1:
            print("| replicas | " + " | ".join(f"{s} windows/s" for s in t["per_s"]) + " |")
        print(f"| {r} | " + " | ".join(f"{v:.0f}" for v in t["per_s"].values()) + " |")
    print("\n| shuffle group (MiB) | data (MiB) | peak RSS above the 5 MiB run's (MiB) | ratio |")
    for m in payload["memory"]:
        extra = m["big"]["peak_mib"] - m["small"]["peak_mib"]
        print(f"| {m['group_mib']:.0f} | {m['big']['data_mib']:.0f} | {extra:.0f} | {extra / m['big']['data_mib']:.2f} |")
    print("\n| cap run | data (MiB) | small run peak (MiB) | big run peak (MiB) | cap (MiB) | within |")
    for name, m in payload["cap"].items():
        print(f"| {name} | {m['big']['data_mib']:.0f} | {m['small']['peak_mib']:.1f} | {m['big']['peak_mib']:.1f} "
              f"| {m['cap_mib']:.1f} | {m['within']} |")
    return 0 if all(m["within"] for m in cap.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
