"""Benchmark the synthetic pore-collapse simulator.

Times ``make_pore_collapse`` on 64 micro and 8 meso samples (the presets),
records the value ranges of T and p, the fraction of samples that ignite and
the machine, and writes ``benchmarks/results/simulator.json``.

Run alone: ``python benchmarks/bench_simulator.py [--repeats 3] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from _common import machine as _machine  # noqa: E402  (also puts the checkout on sys.path)

RESULTS = Path(__file__).resolve().parent / "results" / "simulator.json"
log = logging.getLogger("bench_simulator")


def _case(scale: str, n_samples: int, repeats: int, seed: int) -> dict:
    import numpy as np

    from skmld.datasets._pore_collapse import _make

    times, ds = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        ds = _make(scale, n_samples, shape=None, n_steps=None, snapshot_interval=None, random_state=seed,
                   pores=None, dtype="float32", progress=False, hidden=True, physics_overrides={})
        times.append(time.perf_counter() - start)
    ignited = ds["reaction"].isel(time=-1).max(("y", "x")).values > 0.5
    peak_t = ds["temperature"].max(("time", "y", "x")).values
    result = {
        "scale": scale,
        "n_samples": n_samples,
        "sizes": {k: int(v) for k, v in ds.sizes.items()},
        "seconds": {"min": min(times), "median": float(np.median(times)), "all": times},
        "seconds_per_sample": min(times) / n_samples,
        "temperature_K": {"min": float(ds["temperature"].min()), "max": float(ds["temperature"].max())},
        "pressure_GPa": {"min": float(ds["pressure"].min()), "max": float(ds["pressure"].max())},
        "peak_hotspot_temperature_K_quantiles": dict(
            zip(("0", "25", "50", "75", "100"), np.percentile(peak_t, [0, 25, 50, 75, 100]).round(1).tolist())
        ),
        "fraction_ignited": float(ignited.mean()),
        "ignition_criterion": "max reaction progress > 0.5 at the last snapshot",
    }
    log.info("%s x %d: %.2f s (min of %d), T [%.0f, %.0f] K, p [%.2f, %.2f] GPa, ignited %.0f %%", scale,
             n_samples, min(times), repeats, result["temperature_K"]["min"], result["temperature_K"]["max"],
             result["pressure_GPa"]["min"], result["pressure_GPa"]["max"], 100 * result["fraction_ignited"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per case (default: 3)")
    parser.add_argument("--n-micro", type=int, default=64, help="micro samples (default: 64)")
    parser.add_argument("--n-meso", type=int, default=8, help="meso samples (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="pore geometry seed (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads (numpy ops here are single-threaded)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS})")
    args = parser.parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = vars(args) | {"out": str(args.out)}
    machine = _machine()
    log.info("settings %s", settings)
    log.info("machine %s", machine)

    _case("micro", 1, 1, args.seed)  # warm-up: imports, first allocations
    cases = [_case("micro", args.n_micro, args.repeats, args.seed), _case("meso", args.n_meso, args.repeats, args.seed)]
    total = sum(c["seconds"]["min"] for c in cases)
    log.info("total %.2f s for %d micro + %d meso samples", total, args.n_micro, args.n_meso)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "simulator", "settings": settings, "machine": machine,
                                    "cases": cases, "total_seconds": total}, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
