"""Tests of the command line (``python -m skmld ...``)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from skmld.cli import main
from skmld.datasets import make_pore_collapse

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "skmld", *args], capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_simulate_writes_readable_file(tmp_path, suffix):
    out = tmp_path / f"micro{suffix}"
    result = _run("simulate", "--scale", "micro", "--n-samples", "2", "--n-steps", "3", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    kwargs = {"engine": "h5netcdf"} if suffix == ".nc" else {"engine": "zarr", "consolidated": False}
    with xr.open_dataset(out, **kwargs) as ds:
        expected = make_pore_collapse("micro", 2, n_steps=3, random_state=7)
        assert ds.sizes == {"sample": 2, "time": 3, "y": 64, "x": 96}
        assert ds["temperature"].attrs["units"] == "K"
        np.testing.assert_array_equal(ds["microstructure"].values, expected["microstructure"].values)
        np.testing.assert_array_equal(ds["pressure"].values, expected["pressure"].values)


def test_help_explains_every_option():
    top = _run("--help")
    assert top.returncode == 0 and "simulate" in top.stdout and "demo" in top.stdout
    sim = _run("simulate", "--help").stdout
    for option in ("--scale", "--n-samples", "--n-steps", "--seed", "--out", "--quiet"):
        assert option in sim
    demo = _run("demo", "--help").stdout
    for option in ("--n-micro", "--n-meso", "--seed", "--hotspot-threshold"):
        assert option in demo


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
