"""Tests of from_reference_arrays' normalised_from and unit check (skmld.datasets._reference, skmld._units)."""

import re
import warnings

import dask.array as dsa
import numpy as np
import pytest

from skmld.datasets import from_reference_arrays
from skmld.exceptions import UnitsWarning

FIELDS = ["temperature", "pressure", "microstructure"]


def normalised(seed=0, shape=(2, 4, 5, 3, 3)):
    """Reference-layout values in [0, 1], as the reference repository stores them."""
    return np.random.RandomState(seed).rand(*shape).astype(np.float32)


def test_normalised_from_restores_physical_units():
    array = normalised()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # restored data raise no unit warning
        ds = from_reference_arrays(array, FIELDS, dt=2.0, dx=1.0,
                                   normalised_from={"temperature": (300.0, 5000.0), "pressure": (-2.0, 40.0)})
    np.testing.assert_allclose(ds["temperature"].values, 300.0 + 4700.0 * np.moveaxis(array[..., 0, :], -1, 1),
                               rtol=1e-6)
    np.testing.assert_allclose(ds["pressure"].values, -2.0 + 42.0 * np.moveaxis(array[..., 1, :], -1, 1), rtol=1e-6)
    np.testing.assert_array_equal(ds["microstructure"].values, np.moveaxis(array[..., 2, :], -1, 1))
    assert ds["temperature"].dtype == np.float32
    assert ds["temperature"].attrs["units"] == "K"


def test_normalised_from_stays_lazy(raise_if_dask_computes):
    array = dsa.from_array(normalised(), chunks=1)
    with raise_if_dask_computes(max_computes=2):  # the first snapshot, checked before and after restoring
        ds = from_reference_arrays(array, FIELDS, dt=2.0, dx=1.0, normalised_from={"temperature": (300.0, 5000.0)})
    assert isinstance(ds["temperature"].data, dsa.Array)
    assert float(ds["temperature"].min()) >= 300.0


def test_normalised_temperature_in_kelvin_warns():
    with pytest.warns(UnitsWarning) as record:
        from_reference_arrays(normalised(), FIELDS, dt=2.0, dx=1.0)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("Field 'temperature' is declared in 'K' but all its values lie in [0, 1] (min ")
    assert "it looks min-max normalised" in message
    assert "normalised_from={'temperature': (lo, hi)}" in message
    assert record[0].filename == __file__  # points at the caller


def test_negative_kelvin_warns_and_other_units_do_not():
    array = normalised() * 1000.0 - 10.0
    with pytest.warns(UnitsWarning, match=r"Field 'temperature' .* include negative values \(min -"):
        from_reference_arrays(array, FIELDS, dt=2.0, dx=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_reference_arrays(normalised(), FIELDS, dt=2.0, dx=1.0, units={"temperature": "1"})
        from_reference_arrays(normalised(), ["a", "b", "c"], dt=2.0, dx=1.0)


def test_lazy_data_are_checked_on_the_first_snapshot_only():
    array = normalised()
    array[..., 0, :] = 1000.0
    array[0, :, :, 0, 0] = 0.5  # first snapshot of sample 0 looks normalised, the rest is physical
    with pytest.warns(UnitsWarning, match=re.escape("its values in the first snapshot (sample 0, time 0; lazy")):
        from_reference_arrays(dsa.from_array(array, chunks=1), FIELDS, dt=2.0, dx=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eager data: checked whole, 1000 K is plausible
        from_reference_arrays(array, FIELDS, dt=2.0, dx=1.0)


def test_normalised_from_on_physical_data_warns():
    array = normalised()
    array[..., 0, :] = 300.0 + 4700.0 * array[..., 0, :]
    with pytest.warns(UnitsWarning, match=r"normalised_from\['temperature'\] = \(300.0, 5000.0\) is given but its "
                                          r"values span \[\d+.*\], not \[0, 1\]: is the field already in physical"):
        from_reference_arrays(array, FIELDS, dt=2.0, dx=1.0, normalised_from={"temperature": (300.0, 5000.0)})


@pytest.mark.parametrize("bounds", [(5000.0, 300.0), (300.0, float("nan")), (1.0,), "ab", None])
def test_normalised_from_errors(bounds):
    with pytest.raises(ValueError, match=r"normalised_from\['temperature'\] must be \(lo, hi\) with finite lo < hi"):
        from_reference_arrays(normalised(), FIELDS, dt=2.0, dx=1.0, normalised_from={"temperature": bounds})


def test_normalised_from_unknown_field():
    with pytest.raises(ValueError, match=r"normalised_from names fields \['T'\] .* fields are \['temperature', "):
        from_reference_arrays(normalised(), FIELDS, dt=2.0, dx=1.0, normalised_from={"T": (0.0, 1.0)})
