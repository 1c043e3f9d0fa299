"""Command-line interface: ``python -m skmld <command>`` (or the ``skmld`` script).

Commands
--------
simulate
    Run the synthetic pore-collapse simulator and write a NetCDF or Zarr file.
demo
    The main job: simulate micro and meso data, fit the micro model, transfer it
    to the meso scale and compare with a meso model trained from scratch.
convert, fit, predict, evaluate
    The same job on your own files: reference arrays to NetCDF, a fit described
    by a TOML config, a saved model's physical prediction and its scores
    (docs/your_data.md).
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
# your own data: convert, fit, predict, evaluate (the work is in skmld/_jobs.py)
# --------------------------------------------------------------------------- #
def _range(text: str) -> tuple[str, tuple[float, float]]:
    try:
        name, bounds = text.split("=")
        lo, hi = (float(v) for v in bounds.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIELD=LO:HI (e.g. temperature=300:5000), got {text!r}") from None
    return name, (lo, hi)


def _pair(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not (sep and old and new):
        raise argparse.ArgumentTypeError(f"expected OLD=NEW (e.g. T=temperature), got {text!r}")
    return old, new


def _coverage_level(text: str) -> float:
    value = _nonnegative_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1 (e.g. 0.9), got {text}")
    return value


def _add_data_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="reference arrays (.npy/.npz, (N, H, W, F, T)) or a NetCDF/Zarr file to skmld's NetCDF/Zarr",
        description="Read INPUT with skmld.open_fields (.npy/.npz arrays in the reference layout (samples, H, W, "
                    "fields, time), or NetCDF/Zarr) and write OUTPUT in skmld's field layout, physical units "
                    "as CF attrs.")
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("output", type=_output_path, metavar="OUTPUT")
    p.add_argument("--fields", type=lambda t: t.split(","), default=None, metavar="A,B,C",
                   help="field names in the order of the arrays' fields axis (arrays only)")
    p.add_argument("--dt", type=float, default=None, help="time between snapshots, ns (arrays only)")
    p.add_argument("--dx", type=float, default=None, help="grid spacing, µm (arrays only)")
    p.add_argument("--key", default=None, help="the array of an .npz file that holds several")
    p.add_argument("--normalised-from", type=_range, action="append", default=None, metavar="FIELD=LO:HI",
                   help="a field stored min-max normalised to [0, 1] from LO..HI (repeat per field)")
    p.add_argument("--rename", type=_pair, action="append", default=None, metavar="OLD=NEW",
                   help="a variable or dim name in INPUT and skmld's name for it (repeat)")
    p.set_defaults(func=_run_convert)

    p = subparsers.add_parser(
        "fit", help="fit micro, meso and calibration models described by a TOML config; save the model",
        description="Fit the pipelines a TOML config describes ([micro], [meso], [calibration] sections: data "
                    "file, open_fields options, tokenizer and estimator parameters) and save the last one to "
                    "its 'output'. The config is checked whole first; every bad key is named.")
    p.add_argument("config", type=Path, metavar="CONFIG")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.set_defaults(func=_run_fit)

    p = subparsers.add_parser(
        "predict", help="a saved model's rollout of a field file: physical mean, std and intervals to NetCDF/Zarr",
        description="Roll the saved pipeline MODEL out from the first snapshot of each sample of DATA and write "
                    "the mean and std (and central intervals, draws) in the fields' physical units.")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("data", type=Path, metavar="DATA")
    p.add_argument("-o", "--out", type=_output_path, required=True, metavar="OUT")
    p.add_argument("--coverage", type=_coverage_level, action="append", default=None, metavar="LEVEL",
                   help="a central interval to write as lower/upper, e.g. 0.9 (repeat for several)")
    p.add_argument("--n-draws", type=int, default=0, metavar="N", help="ensemble members to write (0: none)")
    p.set_defaults(func=_run_predict)

    p = subparsers.add_parser(
        "evaluate", help="score a saved model on a field file: per-field and hotspot tables, JSON and figures",
        description="Score the saved pipeline MODEL against DATA (time steps after the first, physical units) "
                    "beside persistence: per-field R² and RMSE, hotspot metrics, ±1/2σ coverage; print the "
                    "table and write results.json, rollout.png and hotspots.png to --out.")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("data", type=Path, metavar="DATA")
    p.add_argument("--out", type=Path, default=Path("evaluation"), metavar="DIR")
    p.add_argument("--hotspot-threshold", type=_nonnegative_float, default=HOTSPOT_THRESHOLD, metavar="K")
    p.set_defaults(func=_run_evaluate)


def _run_convert(args: argparse.Namespace) -> int:
    from skmld import _jobs

    _jobs.convert(args.input, args.output, fields=args.fields, dt=args.dt, dx=args.dx, key=args.key,
                  normalised_from=dict(args.normalised_from) if args.normalised_from else None,
                  rename=dict(args.rename) if args.rename else None)
    print(f"wrote {args.output}")
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    import logging

    from skmld import _jobs

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    try:
        config = _jobs.read_config(args.config)
    except _jobs.ConfigError as e:
        print(f"skmld fit: {e}", file=sys.stderr)
        return 2
    _jobs.fit(config)
    print(f"wrote {config.output}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from skmld import _jobs

    out = _jobs.predict(args.model, args.data, args.out, coverage=args.coverage or (), n_draws=args.n_draws)
    print(f"wrote {args.out} ({', '.join(out.data_vars)})")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from skmld import _jobs
    from skmld._demo._report import format_scores

    results = _jobs.evaluate(args.model, args.data, args.out, args.hotspot_threshold)
    print(format_scores(results["metrics"], args.hotspot_threshold))
    print(f"wrote {', '.join(results['files'].values())} to {args.out}")
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
    _add_data_parsers(subparsers)
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
