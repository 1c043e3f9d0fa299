"""Command-line interface: ``python -m skmld <command>`` (or the ``skmld`` script).

Commands
--------
simulate
    Run the synthetic pore-collapse simulator and write a NetCDF or Zarr file.
demo
    The main job: simulate micro and meso data, fit the micro model, transfer it
    to the meso scale and compare with a meso model trained from scratch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from skmld._constants import HOTSPOT_THRESHOLD

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
    from skmld.fields import write_fields

    write_fields(ds, path)


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
# demo (the work is in skmld/_demo.py)
# --------------------------------------------------------------------------- #
def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: fit a micro model, transfer it to the meso scale, compare with training from scratch",
        description=(
            "End-to-end demo on the synthetic pore-collapse data: (1) simulate micro samples (one pore, "
            "64x96 cells) and meso samples (many pores, 128x192 cells); (2) fit the micro pipeline "
            "PatchTokenizer -> MicroDynamicsEstimator; (3) fit the meso pipeline twice on the same few meso "
            "training samples with the same meso epochs: with the micro model as backbone ('transfer') and "
            "without it ('from scratch'); (4) evaluate both, and the persistence baseline (initial state "
            "repeated), on held-out meso samples: rollout R2, field RMSE in K, GPa and 1, hotspot RMSEs, "
            "+-1/2 sigma coverage, fit times; (5) print a table and write figures, results.json and the "
            "fitted meso pipeline to --out. The default run took 9 minutes on one 2-core CPU and 24 on a slower one, "
            "--quick about 2-3 minutes."
        ),
        epilog=(
            "Files written to --out: rollout.png, hotspots.png, history_micro.png, history_meso.png, "
            "history_meso_scratch.png, results.json, meso_pipeline.pkl (joblib) and, when skmld.persistence "
            "is available, meso_pipeline.skmld. Progress bars go to stderr; the table to stdout."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small preset (16 micro samples of 32x64, 2+2 meso samples of 64x128, 12 snapshots, "
        "4 filters, horizon 1, 2-4 epochs per stage): a 2-3 minute smoke run, numbers not meaningful",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo_output"), metavar="DIR",
        help="output directory, created if missing; existing files are overwritten (default: ./demo_output)",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="random seed: micro data use SEED, meso data SEED+1, the networks SEED (default: 0)",
    )
    parser.add_argument("--verbose", action="store_true", help="log details (settings, every epoch's losses) to stderr")
    parser.add_argument("--quiet", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--n-micro", type=_positive_int, default=None, metavar="N",
        help="number of micro training samples (default: 32; --quick: 16)",
    )
    parser.add_argument(
        "--n-meso", type=_positive_int, default=None, metavar="N",
        help="number of meso training samples, shared by transfer and from scratch (default: 4; --quick: 2)",
    )
    parser.add_argument(
        "--n-meso-test", type=_positive_int, default=None, metavar="N",
        help="number of held-out meso samples for the evaluation (default: 4; --quick: 2)",
    )
    parser.add_argument(
        "--hotspot-threshold", type=_nonnegative_float, default=None, metavar="K",
        help=f"temperature [K] above which a cell belongs to a hotspot, for the hotspot metrics (default: {HOTSPOT_THRESHOLD:g})",
    )
    # Tests only: much smaller than --quick (also SKMLD_DEMO_TINY=1).
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from skmld._demo import main as demo_main

    return demo_main(args)


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
