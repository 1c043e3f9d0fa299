"""Fit, score and predict a Zarr store chunk by chunk, and measure the memory that takes.

    python examples/out_of_core.py --out /tmp/ooc --copies 80

writes two Zarr stores of simulated micro data into ``--out``: a small one
(8 samples, 5 MiB) and a big one (``--copies`` × 4 samples, 2.6 MiB each).
Each is opened lazily with :func:`skmld.open_fields`, tokenized, fitted (one
epoch per stage), scored, and its predictions are written to another Zarr store
chunk by chunk; nothing loads a whole store. Each store is run in a fresh
process, so both pay every fixed cost (TensorFlow, dask, traced networks, thread
pools). The script prints, as JSON, the peak resident memory of each run's
process (``VmHWM``) and the sizes of the stores.

What the big run needs beyond the small one is mostly bounded: by the size of
the groups of chunks shuffled together (``--group-mib``) and by the blocks
rolled out at once (``--batch-size`` rows). A smaller part grows with the
number of chunks (≈ 0.2 MiB per chunk, measured in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def resident_mib(key: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status[key].split()[0]) / 1024


def in_fresh_process(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new Python process (spawned: no memory inherited from this one)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def write_store(path: Path, copies: int, dtype: str = "float32") -> Path:
    """A Zarr store of ``4 * copies`` samples (64 × 128 px, 7 steps, 3 fields, ``dtype``), written chunk by chunk."""
    import numpy as np
    import xarray as xr

    from skmld import write_fields
    from skmld.datasets import make_pore_collapse

    four = make_pore_collapse("micro", 4, shape=(64, 128), n_steps=7, random_state=0)
    four = four.astype(dtype).chunk({"sample": 1})
    big = xr.concat([four] * copies, dim="sample")
    write_fields(big.assign_coords(sample=np.arange(big.sizes["sample"])), path)
    return path


def fit_score_predict(path: Path, group_bytes: int, batch_size: int, patch_size: int | None = 32, decoupled_epochs: int = 1,
                      epochs: int = 1, predict: bool = True) -> dict:
    """The out-of-core workflow on one store; its figures.

    ``epochs`` per stage (0: the networks are built and the latent range
    measured, nothing trained); ``predict=False`` stops after the fit.
    """
    import numpy as np

    import skmld._data
    from skmld import MicroDynamicsEstimator, PatchTokenizer, open_fields, write_fields

    skmld._data.GROUP_BYTES = group_bytes
    start = time.perf_counter()
    X = open_fields(path)  # lazy: dask arrays over the store's chunks
    tokens = PatchTokenizer(patch_size=patch_size).fit(X)
    T = tokens.transform(X)
    est = MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=epochs,
                                 decoupled_epochs=decoupled_epochs * epochs, coupled_epochs=epochs,
                                 batch_size=batch_size, random_state=0).fit(T)
    figures = {"data_mib": X.nbytes / 2**20, "epochs": len(est.history_)}
    if predict:
        figures["score"] = est.score(T)  # streamed over blocks of samples
        pred = tokens.inverse_transform(est.predict(T))  # lazy: each block is rolled out when written
        write_fields(pred, f"{path}.pred.zarr")
        back = open_fields(f"{path}.pred.zarr")
        figures.update(lazy_prediction=bool(pred.chunks), predicted_samples=back.sizes["sample"],
                       first_predictions_finite=bool(np.isfinite(back.isel(sample=slice(0, 8)).values).all()))
    return {**figures, "peak_mib": resident_mib("VmHWM"), "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the Zarr stores")
    parser.add_argument("--copies", type=int, default=80, help="big store: copies of 4 samples (2.6 MiB each)")
    parser.add_argument("--small-copies", type=int, default=2,
                        help="small store: copies of 4 samples (the run that pays the fixed costs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--group-mib", type=float, default=32,
                        help="size of the groups of chunks shuffled together (skmld._data.GROUP_BYTES, default 32)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="the stores' values (float64: twice the bytes for the same samples)")
    parser.add_argument("--patch-size", type=int, default=32, help="token side; 0: one token per sample")
    parser.add_argument("--decoupled-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs per stage; 0 builds the networks only, to measure scoring and prediction alone")
    parser.add_argument("--no-predict", action="store_true", help="stop after the fit (to measure the fit alone)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    small_store = write_store(args.out / "small.zarr", args.small_copies, args.dtype)
    big_store = write_store(args.out / "big.zarr", args.copies, args.dtype)
    settings = dict(group_bytes=int(args.group_mib * 2**20), batch_size=args.batch_size, patch_size=args.patch_size or None,
                    decoupled_epochs=args.decoupled_epochs, epochs=args.epochs, predict=not args.no_predict)
    # Each run in a fresh process: both pay the same fixed costs (TensorFlow, dask,
    # traced networks, thread pools) and neither inherits the other's memory.
    small, big = (in_fresh_process(fit_score_predict, store, **settings) for store in (small_store, big_store))
    print(json.dumps({"group_mib": settings["group_bytes"] / 2**20, "batch_size": args.batch_size,
                      "small": small, "big": big}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
