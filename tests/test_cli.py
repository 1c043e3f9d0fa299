"""Tests of the command line (``python -m skmld ...``)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from skmld.cli import main
from skmld.datasets import make_pore_collapse


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_simulate_writes_readable_file(tmp_path, suffix, capsys):
    out = tmp_path / f"micro{suffix}"
    assert main(["simulate", "--scale", "micro", "--n-samples", "2", "--n-steps", "3", "--seed", "7",
                 "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    kwargs = {"engine": "h5netcdf"} if suffix == ".nc" else {"engine": "zarr", "consolidated": False}
    with xr.open_dataset(out, **kwargs) as ds:
        expected = make_pore_collapse("micro", 2, n_steps=3, random_state=7)
        assert ds.sizes == {"sample": 2, "time": 3, "y": 64, "x": 96}
        assert ds["temperature"].attrs["units"] == "K"
        np.testing.assert_array_equal(ds["microstructure"].values, expected["microstructure"].values)
        np.testing.assert_array_equal(ds["pressure"].values, expected["pressure"].values)


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_explains_every_option(capsys):
    top = _help(["--help"], capsys)
    assert "simulate" in top and "demo" in top
    sim = _help(["simulate", "--help"], capsys)
    for option in ("--scale", "--n-samples", "--n-steps", "--seed", "--out", "--quiet"):
        assert option in sim
    demo = _help(["demo", "--help"], capsys)
    for option in ("--n-micro", "--n-meso", "--seed", "--hotspot-threshold"):
        assert option in demo


def test_installed_entry_point_runs():
    """The ``skmld`` console script that ``pip install`` puts beside the interpreter (one subprocess)."""
    script = Path(sys.executable).with_name("skmld")
    assert script.exists(), f"no console script at {script}: is the package installed?"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "simulate" in result.stdout and "demo" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--scale", "macro", "--n-samples", "1", "--out", "x.nc"],
        ["simulate", "--scale", "micro", "--n-samples", "0", "--out", "x.nc"],
        ["simulate", "--scale", "micro", "--n-samples", "1", "--out", "x.csv"],
        ["simulate", "--scale", "micro", "--n-samples", "1"],
        [],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err
