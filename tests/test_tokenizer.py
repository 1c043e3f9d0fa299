"""Tests of skmld.tokenizer.PatchTokenizer."""

import pickle
import tracemalloc

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from skmld import PatchTokenizer, as_fields
from skmld.tokenizer import TOKEN_ATTRS, TOKEN_DIMS

UNITS = {"temperature": "K", "pressure": "GPa", "microstructure": "-"}


def make_fields(n_samples=2, n_times=3, ny=10, nx=13, fields=tuple(UNITS), seed=0,
                lows=None, spans=None):
    rng = np.random.RandomState(seed)
    data_vars = {}
    for k, f in enumerate(fields):
        lo = 0.0 if lows is None else lows[k]
        span = 1.0 + k if spans is None else spans[k]
        values = lo + span * rng.rand(n_samples, n_times, ny, nx)
        attrs = {"units": UNITS[f]} if f in UNITS else {}
        data_vars[f] = (("sample", "time", "y", "x"), values, attrs)
    coords = {
        "sample": np.arange(n_samples) + 5,
        "time": ("time", 2.0 * np.arange(n_times), {"units": "ns"}),
        "y": ("y", 0.5 * np.arange(ny), {"units": "µm"}),
        "x": ("x", 0.5 * np.arange(nx), {"units": "µm"}),
    }
    return xr.Dataset(data_vars, coords=coords, attrs={"source": "test"})


def stitch(T):
    """Naive reference: tokens back to the padded grid (sample, time, field, Y, X)."""
    S, Tn, F, ty, tx, py, px = T.transpose(*TOKEN_DIMS).shape
    grid = np.empty((S, Tn, F, ty * py, tx * px), dtype=T.dtype)
    for i in range(ty):
        for j in range(tx):
            grid[..., i * py:(i + 1) * py, j * px:(j + 1) * px] = \
                T.isel(token_y=i, token_x=j).transpose(..., "patch_y", "patch_x").values
    return grid


# ------------------------------------------------------------- round trips


@st.composite
def _cases(draw):
    n_fields = draw(st.integers(1, 3))
    ny, nx = draw(st.integers(1, 18)), draw(st.integers(1, 18))
    multiple_of = draw(st.sampled_from([1, 2, 4]))
    patch = draw(st.one_of(
        st.none(),
        st.tuples(st.integers(1, 4), st.integers(1, 4)).map(
            lambda k: (k[0] * multiple_of, k[1] * multiple_of)),
    ))
    if patch is not None:
        assume(patch[0] <= ny and patch[1] <= nx)
    lows = draw(st.lists(st.floats(-1e3, 1e3), min_size=n_fields, max_size=n_fields))
    spans = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-2, 1e4)),
                          min_size=n_fields, max_size=n_fields))
    return dict(n_fields=n_fields, ny=ny, nx=nx, multiple_of=multiple_of, patch=patch,
                lows=lows, spans=spans, pad_mode=draw(st.sampled_from(
                    ["edge", "constant", "reflect", "symmetric", "wrap"])),
                as_array=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None)
@given(case=_cases())
def test_round_trip_range_and_layout(case):
    fields = [f"f{k}" for k in range(case["n_fields"])]
    fields[0] = "temperature"  # one field with units
    X = make_fields(n_samples=2, n_times=2, ny=case["ny"], nx=case["nx"], fields=fields,
                    seed=case["seed"], lows=case["lows"], spans=case["spans"])
    if case["as_array"]:
        X = as_fields(X)
    tok = PatchTokenizer(patch_size=case["patch"], multiple_of=case["multiple_of"],
                         pad_mode=case["pad_mode"]).fit(X)
    T = tok.transform(X)
    assert T.dims == TOKEN_DIMS
    assert T.dtype == np.float32
    assert list(T.attrs) == list(TOKEN_ATTRS)
    assert T.attrs["skmld_input_shape"] == [case["ny"], case["nx"]]
    py, px = tok.token_shape_
    assert py % case["multiple_of"] == 0 and px % case["multiple_of"] == 0
    if case["patch"] is None:
        assert tok.grid_shape_ == (1, 1) and py - case["ny"] < case["multiple_of"]
    # Scaled into [0, 1] (up to float32 rounding) on the fitted data.
    assert float(T.min()) >= 0.0 and float(T.max()) <= 1.0 + 1e-6
    # Layout and padding against a naive reference.
    canon = as_fields(X)
    lo = np.array([tok.ranges_[f][0] for f in fields])[:, None, None]
    span = np.array([tok.ranges_[f][1] - tok.ranges_[f][0] for f in fields])[:, None, None]
    scaled = (canon.values - lo) / np.where(span == 0, 1.0, span)
    pad = ((0, 0),) * 3 + ((0, tok.padding_[0]), (0, tok.padding_[1]))
    expected = np.pad(scaled, pad, mode=case["pad_mode"])
    np.testing.assert_allclose(stitch(T), expected, rtol=1e-5, atol=1e-6)
    # Exact inverse, same kind of object, same coords and attrs.
    back = tok.inverse_transform(T)
    assert type(back) is type(X)
    if case["as_array"]:
        xr.testing.assert_allclose(back, X.astype(np.float32),
                                   rtol=1e-5, atol=1e-5 * max(case["spans"] + [1.0]))
        assert back.attrs == X.attrs
        xr.testing.assert_identical(back.coords.to_dataset(), X.coords.to_dataset())
    else:
        for f in fields:
            np.testing.assert_allclose(back[f].values, X[f].values, rtol=1e-5,
                                       atol=1e-5 * max(case["spans"] + [1.0]))
            assert back[f].attrs == X[f].attrs
        assert back.attrs == X.attrs
        xr.testing.assert_identical(back.coords.to_dataset(), X.coords.to_dataset())


def test_token_positions():
    # A value at (y, x) lands at token (y // py, x // px), position (y % py, x % px).
    X = make_fields(n_samples=1, n_times=2, ny=9, nx=14, fields=["f"])
    X["f"][:] = np.arange(9 * 14, dtype=float).reshape(1, 1, 9, 14) + np.arange(2)[:, None, None]
    tok = PatchTokenizer(patch_size=(4, 6), multiple_of=2).fit(X)
    T = tok.transform(X)
    assert tok.grid_shape_ == (3, 3) and tok.padding_ == (3, 4)
    lo, hi = tok.ranges_["f"]
    for y in range(9):
        for x in range(14):
            got = T.isel(sample=0, time=1, field=0, token_y=y // 4, token_x=x // 6,
                         patch_y=y % 4, patch_x=x % 6)
            assert float(got) == pytest.approx((14 * y + x + 1 - lo) / (hi - lo), rel=1e-6)


def test_whole_domain_token_rounds_up():
    X = make_fields(ny=33, nx=64)
    tok = PatchTokenizer().fit(X)
    assert tok.token_shape_ == (64, 64) and tok.grid_shape_ == (1, 1)
    assert tok.padding_ == (31, 0)
    T = tok.transform(X)
    # edge padding repeats the last row
    np.testing.assert_array_equal(T.isel(patch_y=slice(33, None)).values,
                                  np.repeat(T.isel(patch_y=[32]).values, 31, axis=-2))


def test_fixed_and_partial_ranges():
    X = make_fields()
    tok = PatchTokenizer(ranges={"temperature": (-1, 3)}, multiple_of=1).fit(X)
    assert tok.ranges_["temperature"] == (-1.0, 3.0)
    assert list(tok.ranges_) == list(UNITS)  # field order
    assert tok.ranges_["pressure"] == (float(X["pressure"].min()), float(X["pressure"].max()))
    T = tok.transform(X)
    assert T.attrs["skmld_ranges"][0] == [-1.0, 3.0]
    np.testing.assert_allclose(T.sel(field="temperature").values.min(),
                               (X["temperature"].values.min() + 1) / 4, rtol=1e-6)
    # Values outside a fixed range are not clipped.
    tight = PatchTokenizer(ranges={"pressure": (0.5, 1.0)}, multiple_of=1).fit(X)
    Tp = tight.transform(X).sel(field="pressure")
    assert float(Tp.min()) < 0 and float(Tp.max()) > 1
    np.testing.assert_allclose(tight.inverse_transform(tight.transform(X))["pressure"],
                               X["pressure"], rtol=1e-5)


def test_constant_field_uses_scale_one():
    X = make_fields(fields=["temperature", "pressure"])
    X["pressure"][:] = 7.5
    tok = PatchTokenizer(multiple_of=1).fit(X)
    assert tok.ranges_["pressure"] == (7.5, 7.5)
    T = tok.transform(X)
    assert np.all(T.sel(field="pressure").values == 0.0)
    back = tok.inverse_transform(T + 0.25)  # a prediction off the constant value
    np.testing.assert_allclose(back["pressure"].values, 7.75)


def test_transform_reorders_fields_and_keeps_coords():
    X = make_fields()
    tok = PatchTokenizer(patch_size=4, multiple_of=4).fit(X)
    da = as_fields(X).sel(field=["pressure", "microstructure", "temperature"])
    T = tok.transform(da)
    xr.testing.assert_identical(T, tok.transform(X))
    assert T["field"].values.tolist() == list(UNITS)
    assert T["units"].values.tolist() == list(UNITS.values())
    xr.testing.assert_identical(T["sample"], X["sample"])
    xr.testing.assert_identical(T["time"], X["time"])


def test_inverse_uses_sample_and_time_of_tokens():
    X = make_fields()
    tok = PatchTokenizer(patch_size=4, multiple_of=4).fit(X)
    T = tok.transform(X)
    # A rollout longer than the data, for one sample.
    longer = xr.concat([T, T], dim="time").isel(sample=[1])
    longer = longer.assign_coords(time=("time", 2.0 * np.arange(6), {"units": "ns"}))
    back = tok.inverse_transform(longer)
    assert dict(back.sizes) == {"sample": 1, "time": 6, "y": 10, "x": 13}
    np.testing.assert_array_equal(back["time"], 2.0 * np.arange(6))
    assert back["sample"].values.tolist() == [6]
    np.testing.assert_allclose(back["pressure"].isel(time=4),
                               X["pressure"].isel(sample=[1], time=1), rtol=1e-5)
    # Token dims in another order, and no coords at all, also work.
    bare = xr.DataArray(T.values, dims=TOKEN_DIMS).transpose("patch_x", *TOKEN_DIMS[:-1])
    out = tok.inverse_transform(bare)
    np.testing.assert_allclose(out["temperature"], X["temperature"], rtol=1e-5)
    assert "time" not in out.coords and out["x"].attrs == {"units": "µm"}


def test_fit_on_dataarray_returns_dataarray():
    da = as_fields(make_fields())
    tok = PatchTokenizer(multiple_of=8).fit(da)
    back = tok.inverse_transform(tok.transform(da))
    assert isinstance(back, xr.DataArray)
    xr.testing.assert_allclose(back, da.astype(np.float32), rtol=1e-5)
    xr.testing.assert_identical(back.coords.to_dataset(), da.coords.to_dataset())


# ------------------------------------------------------------ dask and memory


@pytest.mark.parametrize("pad_mode", ["edge", "constant", "reflect"])
def test_dask_stays_lazy(pad_mode, raise_if_dask_computes):
    X = make_fields(n_samples=3, ny=10, nx=13)
    Xd = X.chunk({"sample": 1})
    tok = PatchTokenizer(patch_size=8, multiple_of=4, pad_mode=pad_mode)
    # One compute for the finiteness booleans, one for all minima and maxima.
    with raise_if_dask_computes(max_computes=2) as scheduler:
        tok.fit(Xd)
    assert scheduler.total == 2
    assert tok.ranges_ == PatchTokenizer(patch_size=8, multiple_of=4).fit(X).ranges_
    with raise_if_dask_computes():
        T = tok.transform(Xd)
        back = tok.inverse_transform(T)
    assert isinstance(T.data, dsa.Array) and isinstance(back["pressure"].data, dsa.Array)
    # Bit-identical to the numpy path.
    xr.testing.assert_identical(T.compute(), tok.transform(X))
    xr.testing.assert_identical(back.compute(), tok.inverse_transform(tok.transform(X)))


def test_fixed_ranges_fit_computes_only_finiteness(raise_if_dask_computes):
    Xd = make_fields(fields=["pressure"]).chunk({"sample": 1})
    with raise_if_dask_computes(max_computes=1):
        PatchTokenizer(ranges={"pressure": (0, 1)}, multiple_of=1).fit(Xd)


@pytest.mark.parametrize("as_array", [False, True])
def test_transform_allocates_only_the_output(as_array):
    X = make_fields(n_samples=4, n_times=5, ny=64, nx=96, seed=1)  # float64 input
    if as_array:
        X = as_fields(X)
    tok = PatchTokenizer(patch_size=32, multiple_of=32).fit(X)
    out_bytes = 4 * 5 * 3 * 64 * 96 * 4
    tracemalloc.start()
    try:
        T = tok.transform(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert T.nbytes == out_bytes
    assert peak < 1.1 * out_bytes, (peak, out_bytes)


# ------------------------------------------------------------------- errors


def test_patch_not_multiple():
    with pytest.raises(ValueError, match=r"sides \[6\] .*not multiples of multiple_of=4"):
        PatchTokenizer(patch_size=(8, 6), multiple_of=4).fit(make_fields(ny=16, nx=16))
    with pytest.raises(ValueError, match="pair of positive ints"):
        PatchTokenizer(patch_size=(8, 8, 8), multiple_of=4).fit(make_fields(ny=16, nx=16))


def test_domain_smaller_than_token():
    with pytest.raises(ValueError, match=r"domain \(10, 13\) .* smaller than one token \(16, 8\)"):
        PatchTokenizer(patch_size=(16, 8), multiple_of=8).fit(make_fields())


def test_fields_differ():
    tok = PatchTokenizer(multiple_of=1).fit(make_fields())
    with pytest.raises(ValueError, match=r"misses fields \['microstructure'\]"):
        tok.transform(make_fields(fields=["temperature", "pressure"]))
    with pytest.raises(ValueError, match=r"has fields \['density'\] not seen in fit"):
        tok.transform(make_fields(fields=[*UNITS, "density"]))


@pytest.mark.parametrize("as_array", [False, True])
def test_other_grid_round_trips_with_its_coords(as_array):
    kind = as_fields if as_array else (lambda ds: ds)
    tok = PatchTokenizer(patch_size=4, multiple_of=4).fit(kind(make_fields()))  # 10 x 13: 3 x 4 tokens
    X = kind(make_fields(ny=21, nx=9, seed=1))
    T = tok.transform(X)
    assert T.sizes["token_y"] == 6 and T.sizes["token_x"] == 3
    assert T.attrs["skmld_input_shape"] == [21, 9] and T.attrs["skmld_grid_shape"] == [6, 3]
    assert T.attrs["skmld_spacing"] == [0.5, 0.5] and T.attrs["skmld_origin"] == [0.0, 0.0]
    back = tok.inverse_transform(T)
    assert type(back) is type(X) and dict(back.sizes) == dict(X.sizes)
    xr.testing.assert_identical(back.coords.to_dataset(), X.coords.to_dataset())
    xr.testing.assert_allclose(back, X.astype(np.float32), rtol=1e-5, atol=1e-5)
    # A shifted window of the fitted shape keeps its own origin; tokens without attrs use the fitted grid.
    shifted = make_fields().assign_coords(x=0.5 * np.arange(13) + 7.0)
    np.testing.assert_array_equal(tok.inverse_transform(tok.transform(shifted))["x"], shifted["x"])
    bare = tok.inverse_transform(xr.DataArray(T.values, dims=TOKEN_DIMS))
    assert (bare.sizes["y"], bare.sizes["x"]) == (24, 12)  # the whole token grid
    np.testing.assert_array_equal(bare["x"], 0.5 * np.arange(12))


def test_other_spacing_or_fields_refused():
    tok = PatchTokenizer(multiple_of=1).fit(make_fields())
    coarse = make_fields(nx=12).assign_coords(x=np.arange(12.0))
    with pytest.raises(ValueError, match=r"spacing along \['x'\].*\(0.5, 1.0\).*fitted on \(0.5, 0.5\)"):
        tok.transform(coarse)
    with pytest.raises(ValueError, match=r"misses fields \['microstructure'\]"):
        tok.transform(make_fields(ny=20, fields=["temperature", "pressure"]))
    # Without coordinates the spacing is unknown, and any grid is taken.
    assert tok.transform(make_fields(nx=12).drop_vars(["y", "x"])).attrs["skmld_spacing"][1] != 1.0


def test_bad_ranges():
    X = make_fields()
    with pytest.raises(ValueError, match=r"ranges names fields \['density'\]"):
        PatchTokenizer(ranges={"density": (0, 1)}).fit(X)
    with pytest.raises(ValueError, match=r"ranges\['pressure'\] must be finite with min <= max"):
        PatchTokenizer(ranges={"pressure": (2, 1)}).fit(X)
    with pytest.raises(ValueError, match=r"ranges\['pressure'\] must be a pair"):
        PatchTokenizer(ranges={"pressure": 2}).fit(X)


def test_invalid_parameters():
    X = make_fields()
    with pytest.raises(InvalidParameterError, match="pad_mode"):
        PatchTokenizer(pad_mode="mirror").fit(X)
    with pytest.raises(InvalidParameterError, match="multiple_of"):
        PatchTokenizer(multiple_of=0).fit(X)
    with pytest.raises(InvalidParameterError, match="ranges"):
        PatchTokenizer(ranges=[(0, 1)]).fit(X)


def test_fit_validates_values():
    X = make_fields()
    X["pressure"][1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN in field 'pressure' at sample index 1"):
        PatchTokenizer().fit(X)


def test_inverse_errors():
    X = make_fields()
    tok = PatchTokenizer(patch_size=4, multiple_of=4).fit(X)
    T = tok.transform(X)
    with pytest.raises(ValueError, match=r"misses \['patch_y', 'patch_x'\]"):
        tok.inverse_transform(T.isel(patch_y=0, patch_x=0))
    with pytest.raises(ValueError, match=r"token shape \(2, 4\) .* tokenizer makes token shape \(4, 4\)"):
        tok.inverse_transform(T.isel(patch_y=slice(0, 2)))
    with pytest.raises(ValueError, match=r"token grid"):
        tok.inverse_transform(T.isel(token_x=slice(0, 2)))
    with pytest.raises(ValueError, match=r"misses fields \['pressure'\]"):
        tok.inverse_transform(T.sel(field=["temperature", "microstructure"]))
    with pytest.raises(ValueError, match=r"scaled with ranges"):
        tok.inverse_transform(T.assign_attrs(skmld_ranges=[[0, 1]] * 3))
    with pytest.raises(TypeError, match="ndarray"):
        tok.inverse_transform(T.values)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        PatchTokenizer().transform(make_fields())
    with pytest.raises(NotFittedError):
        PatchTokenizer().inverse_transform(xr.DataArray(np.zeros((1,) * 7), dims=TOKEN_DIMS))


# -------------------------------------------------------- sklearn protocol


def test_sklearn_protocol():
    X = make_fields()
    tok = PatchTokenizer(patch_size=(4, 8), ranges={"temperature": (0, 2)}, multiple_of=4)
    assert tok.get_params() == {"patch_size": (4, 8), "ranges": {"temperature": (0, 2)},
                                "multiple_of": 4, "pad_mode": "edge"}
    assert repr(tok) == ("PatchTokenizer(multiple_of=4, patch_size=(4, 8), "
                         "ranges={'temperature': (0, 2)})")
    twin = clone(tok)
    assert twin.get_params() == tok.get_params() and not hasattr(twin, "ranges_")
    tok.fit(X)
    assert not hasattr(clone(tok), "fields_")
    tok.set_params(pad_mode="wrap")
    assert tok.pad_mode == "wrap"
    xr.testing.assert_identical(tok.fit_transform(X), tok.fit(X).transform(X))
    again = pickle.loads(pickle.dumps(tok))
    xr.testing.assert_identical(again.transform(X), tok.transform(X))
    xr.testing.assert_identical(again.inverse_transform(again.transform(X)),
                                tok.inverse_transform(tok.transform(X)))
    assert tok.__sklearn_tags__().input_tags.two_d_array is False


def test_in_pipeline():
    X = make_fields()
    pipe = Pipeline([("tokens", PatchTokenizer(patch_size=4, multiple_of=4)),
                     ("identity", FunctionTransformer())])
    T = pipe.fit(X).transform(X)
    xr.testing.assert_identical(T, pipe["tokens"].transform(X))
    back = pipe.inverse_transform(T)
    np.testing.assert_allclose(back["temperature"], X["temperature"], rtol=1e-5)
    fresh = clone(pipe)
    assert not hasattr(fresh["tokens"], "ranges_")
    xr.testing.assert_identical(fresh.fit(X).transform(X), T)
    loaded = pickle.loads(pickle.dumps(pipe))
    xr.testing.assert_identical(loaded.transform(X), T)
    # The meso pattern of the design: share token shape and ranges.
    meso = PatchTokenizer(patch_size=pipe["tokens"].token_shape_,
                          ranges=pipe["tokens"].ranges_, multiple_of=4)
    Xm = make_fields(ny=20, nx=26, seed=3)
    Tm = meso.fit_transform(Xm)
    assert Tm.attrs["skmld_ranges"] == T.attrs["skmld_ranges"]
    assert Tm.attrs["skmld_token_shape"] == T.attrs["skmld_token_shape"] == [4, 4]


def test_normalised_data_against_physical_ranges_warn_and_arrays_are_pointed_to_their_wrapper():
    """[0, 1] data with ranges in kelvin would scale to a sliver below 0; a bare array is told how to become fields."""
    import warnings

    normalised = make_fields(fields=("temperature",))  # values in [0, 1), labelled K
    with pytest.warns(UserWarning, match=r"'temperature' has values in \[0\.\d+, 0\.9\d+\], wholly outside its "
                                         r"fixed range ranges\['temperature'\] = \(300, 5000\): they scale to "
                                         r"\[-0\.06\d+, -0\.06\d+\].*normalised_from="):
        PatchTokenizer(ranges={"temperature": (300.0, 5000.0)}).fit(normalised)
    physical = make_fields(fields=("temperature",), lows=[300.0], spans=[4700.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # physical data within the range: silent
        PatchTokenizer(ranges={"temperature": (300.0, 5000.0)}).fit(physical)
    with pytest.raises(TypeError, match=r"got ndarray\. A \(samples, H, W, fields, time\) array.*"
                                        r"skmld\.datasets\.from_reference_arrays"):
        PatchTokenizer().fit(np.zeros((2, 32, 32, 3, 4)))
