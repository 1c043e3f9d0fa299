"""skmld._layout and skmld._tokens: tokens and plain fields to network arrays and back, the token spec."""

import numpy as np
import pytest
import xarray as xr

from skmld import PatchTokenizer
from skmld._layout import from_blocks, from_domain, to_blocks, to_domain
from skmld._tokens import TOKEN_ATTRS, TOKEN_DIMS, TokenSpec


def make_fields(ny=8, nx=12, seed=0):
    rng = np.random.RandomState(seed)
    dims = ("sample", "time", "y", "x")
    return xr.Dataset({f: (dims, rng.rand(2, 3, ny, nx)) for f in ("temperature", "pressure")},
                      coords={"time": [0.0, 2.0, 4.0], "y": 0.5 * np.arange(ny), "x": 0.5 * np.arange(nx)})


def test_tokens_to_domain_is_the_stitched_grid_and_back():
    X = make_fields()
    T = PatchTokenizer(patch_size=4, multiple_of=4).fit_transform(X)
    values, layout = to_domain(T)
    assert values.shape == (2, 3, 8, 12, 2) and values.dtype == np.float32
    assert layout.tokens and layout.grid_shape == (2, 3) and layout.token_shape == (4, 4)
    # Cell (y, x) of the domain is position (y % 4, x % 4) of token (y // 4, x // 4).
    np.testing.assert_array_equal(values[1, 2, 5, 9, 1],
                                  T.isel(sample=1, time=2, field=1, token_y=1, token_x=2, patch_y=1, patch_x=1))
    back = from_domain(values, layout)
    assert back.dims == TOKEN_DIMS
    # The tokenizer adds units, the layout a sample index where the tokens have none.
    xr.testing.assert_identical(back.drop_vars("sample"), T.drop_vars("units"))


def test_blocks_round_trip_and_order():
    a = np.arange(2 * 3 * 8 * 12 * 1, dtype=np.float32).reshape(2, 3, 8, 12, 1)
    blocks = to_blocks(a, (2, 3))
    assert blocks.shape == (12, 3, 4, 4, 1)
    np.testing.assert_array_equal(blocks[6 + 4], a[1, :, 4:8, 4:8])  # sample 1, token (1, 1)
    np.testing.assert_array_equal(from_blocks(blocks, (2, 3)), a)


def test_plain_fields_layout_and_nonfinite_named():
    X = make_fields()
    values, layout = to_domain(X)
    assert not layout.tokens and layout.token_shape == (8, 12) and layout.as_dataset
    back = from_domain(values, layout)
    np.testing.assert_allclose(back["pressure"], X["pressure"], rtol=1e-6)
    X["pressure"][1, 2, 3, 4] = np.inf
    with pytest.raises(ValueError, match="first in field pressure, sample index 1, time index 2"):
        to_domain(X)
    with pytest.raises(ValueError, match="float32|NaN or inf"):
        to_domain(make_fields().assign(temperature=lambda d: d["temperature"] * 1e300))


def test_bad_token_attrs_are_named():
    T = PatchTokenizer(patch_size=4, multiple_of=4).fit_transform(make_fields())
    with pytest.raises(ValueError, match="no 'skmld_grid_shape' attribute"):
        to_domain(T.copy().drop_attrs().assign_attrs(skmld_fields=["temperature", "pressure"],
                                                     skmld_token_shape=[4, 4]))
    with pytest.raises(ValueError, match=r"skmld_grid_shape attribute \[2, 2\] does not match"):
        to_domain(T.assign_attrs(skmld_grid_shape=[2, 2]))
    with pytest.raises(ValueError, match="skmld_input_shape"):
        to_domain(T.assign_attrs(skmld_input_shape=[4, 12]))  # 4 rows need 1 token row, not 2
    with pytest.raises(ValueError, match="time coordinate must be strictly increasing"):
        to_domain(T.assign_coords(time=[0.0, 4.0, 2.0]))


def test_spec_attrs_round_trip():
    spec = TokenSpec.for_grid((10, 13), (4, 4), fields=("a", "b"), ranges=((0.0, 1.0), (2.0, 5.0)),
                              bounds=((0.0, None), (None, None)), spacing=(0.5, None), origin=(0.0, 1.0))
    assert spec.grid_shape == (3, 4) and spec.padding == (2, 3) and spec.padded_shape == (12, 16)
    attrs = spec.to_attrs()
    assert list(attrs) == list(TOKEN_ATTRS)
    sizes = {"field": 2, "token_y": 3, "token_x": 4, "patch_y": 4, "patch_x": 4}
    assert TokenSpec.from_attrs(attrs, sizes) == spec
    with pytest.raises(ValueError, match="skmld_spacing"):
        TokenSpec.from_attrs({**attrs, "skmld_spacing": [-1.0, 1.0]}, sizes)


def test_check_fields_names_what_is_missing_and_unexpected():
    _, layout = to_domain(make_fields())
    layout.check_fields(["temperature", "pressure"], "X", "ClimatologyBaseline")  # the fitted fields: accepted
    with pytest.raises(ValueError, match=r"X has fields \['temperature', 'pressure'\] but ClimatologyBaseline was "
                                         r"fitted on \['temperature', 'microstructure'\] \(missing: \['microstructure'\], "
                                         r"unexpected: \['pressure'\]\)"):
        layout.check_fields(["temperature", "microstructure"], "X", "ClimatologyBaseline")
    with pytest.raises(ValueError, match="same order"):
        layout.check_fields(["pressure", "temperature"], "X", "ClimatologyBaseline")
