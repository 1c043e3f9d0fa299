"""docs/your_data.md, followed on a tiny case: reference arrays → convert → fit → predict → evaluate."""

import json

import numpy as np
import pytest
import xarray as xr

from skmld.cli import main
from skmld.datasets import make_pore_collapse

FIELDS = ["temperature", "pressure", "microstructure"]

CONFIG = """
output = "model.skmld"

[micro]
data = "micro.nc"
tokenizer = { patch_size = 32 }
estimator = { filters = 2, dynamics_filters = 2, horizons = [1], vae_epochs = 1, decoupled_epochs = 0, coupled_epochs = 1, batch_size = 4, random_state = 0 }

[meso]
data = "meso.nc"
estimator = { epochs = 1, horizons = [1], batch_size = 4, random_state = 0 }
"""


def _reference_array(scale, n, shape, seed):
    """Simulated fields as the reference code stores them: (N, H, W, F, T), temperature normalised from 300–5000 K."""
    ds = make_pore_collapse(scale, n, shape=shape, n_steps=3, random_state=seed)
    arr = np.stack([ds[f].values for f in FIELDS], axis=-1).transpose(0, 2, 3, 4, 1).astype(np.float32)
    arr[..., 0, :] = (arr[..., 0, :] - 300.0) / 4700.0
    return ds, arr


@pytest.fixture(scope="session")  # session: kept while the worker runs other modules' tests in between
def guide(tmp_path_factory):
    """Steps 1–2 of the guide: normalised arrays written with np.save, converted, fitted from a config."""
    import warnings

    folder = tmp_path_factory.mktemp("your_data")
    _, micro = _reference_array("micro", 3, (32, 32), 0)
    meso_ds, meso = _reference_array("meso", 2, (32, 64), 1)
    assert 0.0 <= meso[..., 0, :].min() and meso[..., 0, :].max() <= 1.0
    np.save(folder / "micro.npy", micro)
    np.save(folder / "meso.npy", meso)
    for name, dt in (("micro", 2), ("meso", 4)):
        assert main(["convert", str(folder / f"{name}.npy"), str(folder / f"{name}.nc"), "--fields", ",".join(FIELDS),
                     "--dt", str(dt), "--dx", "1", "--normalised-from", "temperature=300:5000"]) == 0
    (folder / "fit.toml").write_text(CONFIG)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "After the VAE stage")  # one epoch: skill is not the point here
        assert main(["fit", str(folder / "fit.toml"), "--quiet"]) == 0
    return folder, meso_ds


@pytest.mark.slow
@pytest.mark.xdist_group("your_data")
def test_your_data_converted_fitted_and_predicted_in_physical_units(guide, monkeypatch):
    folder, meso_ds = guide
    monkeypatch.chdir(folder)
    converted = xr.open_dataset("meso.nc", engine="h5netcdf")
    assert converted["temperature"].attrs["units"] == "K"
    np.testing.assert_allclose(converted["temperature"].values, meso_ds["temperature"].values, rtol=1e-5)
    np.testing.assert_array_equal(converted["time"].values, meso_ds["time"].values)
    assert (folder / "model.skmld").stat().st_size > 0

    assert main(["predict", "model.skmld", "meso.nc", "-o", "prediction.nc", "--coverage", "0.9"]) == 0
    pred = xr.open_dataset("prediction.nc", engine="h5netcdf")
    assert dict(pred["mean"].sizes) == {"sample": 2, "time": 3, "field": 3, "y": 32, "x": 64}
    assert pred["units"].values.tolist() == ["K", "GPa", "1"]
    # Physical units: the predicted temperature is in kelvin (≥ 300 K ambient), not normalised to [0, 1].
    temperature = pred["mean"].sel(field="temperature")
    assert float(temperature.min()) > 250.0 and float(temperature.isel(time=0).max()) > 300.0
    assert (pred["upper"] >= pred["mean"]).all() and (pred["std"] >= 0).all()


@pytest.mark.slow
@pytest.mark.xdist_group("your_data")
def test_your_data_evaluated_beside_persistence(guide, capsys):
    folder, meso_ds = guide
    out = folder / "evaluation"
    assert main(["evaluate", str(folder / "model.skmld"), str(folder / "meso.nc"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "RMSE temperature" in table and "persistence" in table
    results = json.loads((out / "results.json").read_text())
    for model in ("model", "persistence"):
        assert set(results["metrics"][model]["r2_per_field"]) == set(FIELDS)
        assert results["metrics"][model]["field_rmse_units"]["temperature"] == "K"
    # Persistence repeats the first snapshot: its error is the truth's change since then, computed here.
    truth = meso_ds["temperature"].isel(time=slice(1, None))
    expected = float(np.sqrt(((truth - meso_ds["temperature"].isel(time=0)) ** 2).mean()))
    np.testing.assert_allclose(results["metrics"]["persistence"]["field_rmse"]["temperature"], expected, rtol=1e-4)
    assert (out / "hotspots.png").stat().st_size > 0 and (out / "rollout.png").stat().st_size > 0
