"""Command-line interface: ``python -m skmld <command>`` (or the ``skmld`` script).

Commands
--------
simulate
    Run the synthetic pore-collapse simulator and write a NetCDF or Zarr file.
demo
    Simulate a few micro and meso samples and print a short summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_SUFFIXES = (".nc", ".nc4", ".zarr")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _output_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in _SUFFIXES:
        raise argparse.ArgumentTypeError(f"output must end in .nc (NetCDF) or .zarr (Zarr), got {text!r}")
    return path


# --------------------------------------------------------------------------- #
# simulate
# --------------------------------------------------------------------------- #
def _add_simulate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate shock-induced pore collapse and write a NetCDF/Zarr dataset",
        description=(
            "Run the synthetic pore-collapse simulator (skmld.datasets.make_pore_collapse) "
            "and write the fields temperature [K], pressure [GPa] and microstructure [-] "
            "on dims (sample, time, y, x) to a NetCDF (.nc) or Zarr (.zarr) file."
        ),
    )
    parser.add_argument(
        "--scale",
        choices=("micro", "meso"),
        required=True,
        help="preset: 'micro' = one pore in 64x96 cells, 2 ns snapshots; "
        "'meso' = 6-14 pores in 128x192 cells (2x2 micro tiles), 4 ns snapshots",
    )
    parser.add_argument(
        "--n-samples", type=_positive_int, required=True, metavar="N", help="number of independent simulations"
    )
    parser.add_argument(
        "--n-steps",
        type=_positive_int,
        default=None,
        metavar="S",
        help="number of snapshots, initial state included (default: the preset's, 20)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the pore geometry; same seed, same file (default: 0)"
    )
    parser.add_argument(
        "--out",
        type=_output_path,
        required=True,
        metavar="PATH",
        help="output file: '.nc' writes NetCDF4 (h5netcdf), '.zarr' writes a Zarr store (overwritten)",
    )
    parser.add_argument("--quiet", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_run_simulate)


def _write(ds, path: Path) -> None:
    try:
        from skmld.fields import write_fields
    except ImportError:  # the data layer is optional for this command
        write_fields = None
    if write_fields is not None:
        write_fields(ds, path)
    elif path.suffix.lower() == ".zarr":
        ds.to_zarr(path, mode="w")
    else:
        ds.to_netcdf(path, engine="h5netcdf")


def _run_simulate(args: argparse.Namespace) -> int:
    from skmld.datasets import make_pore_collapse

    ds = make_pore_collapse(
        args.scale, args.n_samples, n_steps=args.n_steps, random_state=args.seed, progress=not args.quiet
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write(ds, args.out)
    sizes = " x ".join(f"{k}={v}" for k, v in ds.sizes.items())
    print(f"wrote {args.out} ({sizes})")
    return 0


# --------------------------------------------------------------------------- #
# demo (placeholder until the end-to-end demo lands)
# --------------------------------------------------------------------------- #
def _add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate a few micro and meso samples and summarise them",
        description=(
            "Simulate a few micro and meso samples with the synthetic pore-collapse "
            "simulator and print, per scale, the min/max of each field and the number "
            "of hotspots (connected regions above --hotspot-threshold) at the last snapshot."
        ),
    )
    parser.add_argument(
        "--n-micro", type=_positive_int, default=4, metavar="N", help="number of micro samples (default: 4)"
    )
    parser.add_argument(
        "--n-meso", type=_positive_int, default=2, metavar="N", help="number of meso samples (default: 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the pore geometry (default: 0)")
    parser.add_argument(
        "--hotspot-threshold",
        type=float,
        default=1500.0,
        metavar="K",
        help="temperature [K] above which a cell belongs to a hotspot (default: 1500)",
    )
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy import ndimage

    from skmld.datasets import make_pore_collapse

    for scale, n in (("micro", args.n_micro), ("meso", args.n_meso)):
        ds = make_pore_collapse(scale, n, random_state=args.seed)
        print(f"{scale}: {dict(ds.sizes)}, snapshots every {float(ds.time[1] - ds.time[0]):g} ns")
        for name, da in ds.data_vars.items():
            print(f"  {name:<15} [{float(da.min()):9.2f}, {float(da.max()):9.2f}] {da.attrs['units']}")
        hot = ds["temperature"].isel(time=-1).values > args.hotspot_threshold
        counts = [ndimage.label(sample)[1] for sample in hot]
        print(f"  hotspots (> {args.hotspot_threshold:g} K) at t = {float(ds.time[-1]):g} ns: {counts}, "
              f"mean {np.mean(counts):.1f} per sample")
    return 0


# --------------------------------------------------------------------------- #
# entry point
# --------------------------------------------------------------------------- #
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skmld",
        description="skmld: multiscale latent dynamics surrogates of shocked porous energetic materials.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_simulate_parser(subparsers)
    _add_demo_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skmld`` command line.

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status, 0 on success.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "micro.nc"
    >>> main(["simulate", "--scale", "micro", "--n-samples", "1", "--n-steps", "2", "--out", str(out), "--quiet"])
    wrote ... (sample=1 x time=2 x y=64 x x=96)
    0
    """
    args = _build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return args.func(args)
