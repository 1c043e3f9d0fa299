"""Tests of the synthetic pore-collapse simulator (small grids, few snapshots)."""

import json

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skmld.datasets import make_pore_collapse
from skmld.datasets._pore_collapse import PorePhysics
from skmld.datasets._pore_physics import _max3, _mean3

SMALL = {"shape": (32, 48), "n_steps": 13}  # 24 ns: the shock has crossed 48 µm
FIELDS = ("temperature", "pressure", "microstructure")


@pytest.fixture(scope="module")
def micro():
    return make_pore_collapse("micro", 4, random_state=0, **SMALL)


def test_dims_coords_units(micro):
    assert set(micro.data_vars) == set(FIELDS)
    for name in FIELDS:
        da = micro[name]
        assert da.dims == ("sample", "time", "y", "x")
        assert da.dtype == np.float32
        assert da.attrs["long_name"]
    assert micro["temperature"].attrs["units"] == "K"
    assert micro["pressure"].attrs["units"] == "GPa"
    assert micro["time"].attrs["units"] == "ns"
    assert micro["x"].attrs["units"] == micro["y"].attrs["units"] == "µm"
    assert micro.sizes == {"sample": 4, "time": 13, "y": 32, "x": 48}
    np.testing.assert_array_equal(micro["sample"], np.arange(4))
    np.testing.assert_allclose(micro["time"], 2.0 * np.arange(13))  # micro preset: 2 ns
    np.testing.assert_allclose(micro["x"][:3], [0.5, 1.5, 2.5])
    assert micro.attrs["scale"] == "micro" and micro.attrs["random_state"] == 0
    assert micro.attrs["physics_p_shock"] == PorePhysics().p_shock
    assert len(json.loads(micro.attrs["pores"])) == 4


def test_presets_shapes():
    micro = make_pore_collapse("micro", 1, n_steps=2, random_state=0)
    meso = make_pore_collapse("meso", 1, n_steps=2, random_state=0)
    assert (micro.sizes["y"], micro.sizes["x"]) == (64, 96)
    assert (meso.sizes["y"], meso.sizes["x"]) == (128, 192)  # 2 × 2 micro tiles
    assert float(meso["time"][1]) == 2 * float(micro["time"][1])
    assert len(json.loads(micro.attrs["pores"])[0]) == 1
    assert 6 <= len(json.loads(meso.attrs["pores"])[0]) <= 14


def test_physical_invariants(micro):
    mu = micro["microstructure"].values
    assert np.isfinite(mu).all() and np.isfinite(micro["temperature"]).all() and np.isfinite(micro["pressure"]).all()
    assert mu.min() >= 0.0 and mu.max() <= 1.0
    assert (np.diff(mu, axis=1) >= 0).all()  # pores only fill
    assert mu[:, 0].min() < 0.1  # every sample starts with a pore ...
    assert mu[:, -1].min() > 0.9  # ... that the shock has closed
    assert micro["temperature"].min() >= PorePhysics().t_initial - 1e-3
    # The shock arrives: the piston side is at p_shock, heated by compression.
    assert micro["pressure"].isel(time=-1, x=0).mean() == pytest.approx(PorePhysics().p_shock, rel=0.1)
    assert micro["temperature"].isel(time=-1).max() > 1000.0


def test_hottest_point_at_former_pore(micro):
    for i in range(micro.sizes["sample"]):
        temp = micro["temperature"].isel(sample=i, time=-1).values
        pore = micro["microstructure"].isel(sample=i, time=0).values < 0.5
        near = _max3(pore[None].astype(float))[0] > 0  # pore or its neighbours
        iy, ix = np.unravel_index(np.argmax(temp), temp.shape)
        assert near[iy, ix], f"sample {i}: hottest cell {(iy, ix)} is not at the pore"


def test_same_seed_same_output():
    a = make_pore_collapse("micro", 2, random_state=3, shape=(32, 48), n_steps=4)
    b = make_pore_collapse("micro", 2, random_state=3, shape=(32, 48), n_steps=4)
    xr.testing.assert_identical(a, b)


def test_different_seeds_different_pores():
    a = make_pore_collapse("micro", 2, random_state=1, shape=(32, 48), n_steps=1)
    b = make_pore_collapse("micro", 2, random_state=2, shape=(32, 48), n_steps=1)
    assert a.attrs["pores"] != b.attrs["pores"]
    assert not np.array_equal(a["microstructure"], b["microstructure"])


def test_generator_and_randomstate_seed():
    a = make_pore_collapse("micro", 1, random_state=np.random.default_rng(5), shape=(32, 48), n_steps=1)
    b = make_pore_collapse("micro", 1, random_state=np.random.default_rng(5), shape=(32, 48), n_steps=1)
    c = make_pore_collapse("micro", 1, random_state=np.random.RandomState(5), shape=(32, 48), n_steps=1)
    assert a.attrs["pores"] == b.attrs["pores"] and len(json.loads(c.attrs["pores"])[0]) == 1


def test_one_physics_at_both_scales():
    # A meso run holding exactly one micro sample's pore on the micro grid
    # reproduces the micro run at every other snapshot (meso interval = 2×).
    pores = [[[16.0, 20.0, 5.0, 4.0]]]
    micro = make_pore_collapse("micro", 1, pores=pores, **SMALL)
    meso = make_pore_collapse("meso", 1, pores=pores, shape=(32, 48), n_steps=7)
    np.testing.assert_array_equal(meso["time"], micro["time"][::2])
    for name in FIELDS:
        np.testing.assert_allclose(meso[name].values, micro[name].values[:, ::2], rtol=1e-6, atol=1e-5)


def test_batch_independence():
    # A sample does not depend on its batch mates (vectorised, no coupling).
    pores = [[[16.0, 20.0, 5.0, 4.0]], [[10.0, 25.0, 3.0, 6.0]], []]
    both = make_pore_collapse("micro", 3, pores=pores, shape=(32, 48), n_steps=6)
    one = make_pore_collapse("micro", 1, pores=pores[1:2], shape=(32, 48), n_steps=6)
    np.testing.assert_allclose(both["temperature"][1:2].values, one["temperature"].values, rtol=1e-6)
    # No pore, no hotspot: only compression heating of the shocked solid.
    assert float(both["temperature"][2].max()) < 300 + 2 * PorePhysics().heat_compression * PorePhysics().p_shock


def test_ignition_feeds_pressure_back():
    pores = [[[16.0, 18.0, 7.0, 7.0]]]
    inert = make_pore_collapse("micro", 1, pores=pores, arrhenius_rate=0.0, **SMALL)
    live = make_pore_collapse("micro", 1, pores=pores, **SMALL)
    assert float(live["temperature"].max()) > float(inert["temperature"].max()) + 500
    assert float(live["pressure"].max()) > float(inert["pressure"].max())


def test_physics_override_recorded():
    ds = make_pore_collapse("micro", 1, random_state=0, shape=(32, 48), n_steps=3, p_shock=6.0)
    assert ds.attrs["physics_p_shock"] == 6.0
    assert float(ds["pressure"].max()) < 6.5


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cy=st.floats(8, 24), cx=st.floats(14, 34), ry=st.floats(1.5, 7), rx=st.floats(1.5, 7),
    p_shock=st.floats(2.0, 20.0),
)
def test_invariants_hold_for_any_pore(cy, cx, ry, rx, p_shock):
    ds = make_pore_collapse("micro", 1, pores=[[(cy, cx, ry, rx)]], shape=(32, 48), n_steps=8, p_shock=p_shock)
    mu, temp = ds["microstructure"].values, ds["temperature"].values
    assert np.isfinite(mu).all() and np.isfinite(temp).all() and np.isfinite(ds["pressure"].values).all()
    assert mu.min() >= 0 and mu.max() <= 1 and (np.diff(mu, axis=1) >= 0).all()
    assert temp.min() >= PorePhysics().t_initial - 1e-3


def test_stencils_against_naive():
    a = np.random.default_rng(0).normal(size=(2, 5, 7))
    padded = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    np.testing.assert_allclose(_max3(a), windows.max(axis=(-2, -1)))
    np.testing.assert_allclose(_mean3(a), windows.mean(axis=(-2, -1)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "macro"}, "scale"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 1.5}, "n_samples"),
        ({"n_steps": 0}, "n_steps"),
        ({"shape": (2, 48)}, "shape"),
        ({"shape": 32}, "shape"),
        ({"snapshot_interval": 0.15}, "snapshot_interval"),
        ({"pores": [[(1, 2, 3, 4)]] * 2}, "pores"),
        ({"pores": [[(1, 2, -3, 4)]]}, "pores"),
        ({"dtype": "int8"}, "dtype"),
        ({"p_shok": 3.0}, "p_shok"),
        ({"dt": 0.5}, "dt"),
        ({"diffusivity": -1.0}, "diffusivity"),
        ({"shape": (8, 8)}, "shape"),
    ],
)
def test_errors_name_the_parameter(kwargs, match):
    args = {"scale": "micro", "n_samples": 1, "n_steps": 2, "shape": (32, 48)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_pore_collapse(**args)
