"""Where ``MicroDynamicsEstimator.fit`` grows its memory: RSS sampled through a fit, between the engine's calls.

A thread samples ``VmRSS`` every 20 ms; the data layer's and the engine's
entry points (validation, NaN check, layout, datasets, step builders, epochs,
encoding) are wrapped to mark when each starts and ends. Prints, for every
interval between two marks, the RSS at both ends and the peak within, as a
multiple of the data's size above the RSS before ``fit``. The data: ``--samples``
× 20 steps × 3 fields × 160 × 256 random float32 (the reference set has 238).

Run alone: ``python benchmarks/perf/memory_timeline.py [--samples 60] [--gradient-chunk-size 8]``;
prints a table (no JSON: a diagnostic, its findings are in ``notes.md``).
"""

from __future__ import annotations

import argparse
import threading
import time

import _harness as H


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--filters", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gradient-chunk-size", type=int)
    args = p.parse_args(argv)

    import numpy as np
    import xarray as xr

    import skmld._layout as layout
    from skmld import MicroDynamicsEstimator, _base, _data, _engine
    from skmld._trainer import Trainer

    marks, samples, done = [], [], threading.Event()

    def mark(name):
        marks.append((time.perf_counter(), name, rss()))

    def wrap(module, attr):
        original = getattr(module, attr)

        def marked(*a, **k):
            mark(f"> {attr}")
            try:
                return original(*a, **k)
            finally:
                mark(f"< {attr}")

        setattr(module, attr, marked)

    for module, attr in [(layout, "to_domain"), (layout, "_first_nonfinite"), (_base, "to_blocks"),
                         (_data, "window_dataset"), (_engine, "make_vae_step"), (_engine, "make_dynamics_step"),
                         (_engine, "encode_all")]:
        wrap(module, attr)
    run_epoch = Trainer.run_epoch

    def marked_epoch(self, *a, **k):
        mark("> run_epoch")
        try:
            return run_epoch(self, *a, **k)
        finally:
            mark("< run_epoch")

    Trainer.run_epoch = marked_epoch

    rng = np.random.default_rng(0)
    values = np.empty((args.samples, 20, 3, 160, 256), np.float32)
    for i in range(args.samples):
        values[i] = rng.random(values.shape[1:], dtype=np.float32)
    X = xr.DataArray(values, dims=("sample", "time", "field", "y", "x"), coords={"field": list(H.FIELDS)})

    def sample():
        while not done.is_set():
            samples.append((time.perf_counter(), rss()))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    mark("fit")
    MicroDynamicsEstimator(filters=args.filters, dynamics_filters=args.filters, horizons=(1,), vae_epochs=1,
                           decoupled_epochs=1, coupled_epochs=1, batch_size=args.batch_size,
                           gradient_chunk_size=args.gradient_chunk_size, random_state=0).fit(X)
    mark("end")
    done.set()
    sampler.join()

    gib, data, base = 2**30, values.nbytes, marks[0][2]
    print(f"data {data / gib:.3f} GiB; RSS before fit {base / gib:.3f} GiB, peak "
          f"{max(s for _, s in samples) / gib:.3f} GiB")
    print(f"{'t (s)':>7}  {'from':<22} {'to':<22} {'RSS GiB':>15} {'peak GiB':>9} {'peak above, × data':>19}")
    t0 = marks[0][0]
    for (ta, a, ra), (tb, b, rb) in zip(marks, marks[1:]):
        peak = max([s for t, s in samples if ta <= t <= tb] + [ra, rb])
        print(f"{ta - t0:7.1f}  {a:<22} {b:<22} {ra / gib:7.3f}->{rb / gib:<6.3f} {peak / gib:9.3f} "
              f"{(peak - base) / data:19.2f}")


if __name__ == "__main__":
    main()
