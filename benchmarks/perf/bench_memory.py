"""Peak memory of ``MicroDynamicsEstimator.fit`` on a reference-size micro data set.

The data: 238 samples × 20 steps × 3 fields × 160 × 256 float32 (≈ 2.3 GB,
the paper's micro set; random values, memory does not depend on them), as a
plain-field DataArray. One epoch per stage (VAE, decoupled and coupled at
horizon 1), once per ``--gradient-chunk-sizes`` value. Each fit runs in a fresh subprocess that reports
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after building the data (the
baseline: interpreter, TensorFlow and the data) and after the fit.

The networks are small (``--filters``, default 2; batch 32): at the paper's 64 filters
one epoch per stage on 2 CPU cores takes hours, and the data, not the
networks (≈ 10 MB of weights at 64 filters), dominate memory.

Run alone: ``python benchmarks/perf/bench_memory.py [--quick]``; writes
``benchmarks/results/perf[_quick]/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

import _harness as H

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import xarray as xr
sys.path[:0] = [{here!r}, {root!r}]
import _harness as H
n, t, h, w, filters, batch, chunk = {n}, {t}, {h}, {w}, {filters}, {batch}, {chunk}
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import tensorflow as tf  # noqa: F401
from skmld import MicroDynamicsEstimator
rss_import = rss()
rng = np.random.default_rng(0)
values = np.empty((n, t, 3, h, w), np.float32)
for i in range(n):
    values[i] = rng.random((t, 3, h, w), dtype=np.float32)
X = xr.DataArray(values, dims=("sample", "time", "field", "y", "x"), coords={{"field": list(H.FIELDS)}})
rss_data = rss()
est = MicroDynamicsEstimator(filters=filters, dynamics_filters=filters, horizons=(1,), vae_epochs=1,
                             decoupled_epochs=1, coupled_epochs=1, batch_size=batch, gradient_chunk_size=chunk,
                             random_state=0)
t0 = time.perf_counter()
est.fit(X)
print(json.dumps({{"data_bytes": values.nbytes, "rss_after_import": rss_import, "rss_after_data": rss_data,
                  "peak_rss": rss(), "fit_s": time.perf_counter() - t0, "loadavg": os.getloadavg()}}))
"""


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="24 samples of 32 × 64 instead")
    p.add_argument("--filters", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gradient-chunk-sizes", type=int, nargs="+", default=[0, 8],
                   help="one fit (fresh process) per value; 0: the whole batch at once")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    n, t, (h, w) = (24, 20, (32, 64)) if args.quick else (238, 20, (160, 256))
    gb = 2**30
    runs = []
    for chunk in args.gradient_chunk_sizes:
        code = CHILD.format(here=str(H.HERE), root=str(H.ROOT), n=n, t=t, h=h, w=w, filters=args.filters,
                            batch=args.batch_size, chunk=chunk or None)
        load = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if proc.returncode:
            raise RuntimeError(proc.stderr[-4000:])
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append({"gradient_chunk_size": chunk or None, "loadavg_before": load, "wall_s": time.perf_counter() - t0,
                     **child, "data_gb": child["data_bytes"] / gb, "peak_rss_gb": child["peak_rss"] / gb,
                     "peak_over_data": child["peak_rss"] / child["data_bytes"],
                     "fit_overhead_over_data": (child["peak_rss"] - child["rss_after_data"]) / child["data_bytes"]})
        logging.getLogger("bench_memory").info(
            "gradient_chunk_size=%s: data %.2f GB, peak RSS %.2f GB (%.2f× data; fit adds %.2f× data), fit %.0f s",
            chunk or None, runs[-1]["data_gb"], runs[-1]["peak_rss_gb"], runs[-1]["peak_over_data"],
            runs[-1]["fit_overhead_over_data"], child["fit_s"])
    result = {"benchmark": "memory", "quick": args.quick, "machine": H.machine(), "settings": vars(args),
              "data_shape": [n, t, 3, h, w], "runs": runs}
    path = H.write_json("memory", result, args.quick)
    logging.getLogger("bench_memory").info("-> %s", path)
    return result


if __name__ == "__main__":
    main()
