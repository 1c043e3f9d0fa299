"""skmld._prediction: the predict side's helpers (blocks of rows, rollout arguments, latent limits, lock),
streamed scores and lazy rollouts, on the session's tiny fitted micro pipeline."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from skmld import _prediction
from skmld._prediction import PredictionMixin


def test_locked_runs_under_the_rollout_lock():
    assert _prediction._locked(lambda a, b: (_prediction._ROLLOUT_LOCK.locked(), a + b), 2, 3) == (True, 5)
    assert not _prediction._ROLLOUT_LOCK.locked()
    assert isinstance(_prediction._ROLLOUT_LOCK, type(threading.Lock()))


def test_mean_or_std_picks_the_mean_without_draws_else_the_std():
    calls = []

    class Rolls:
        def _rollout_block(self, *args):
            calls.append(args)
            return "mean", "std", "z_mean", "z_log_var"

    assert _prediction._mean_or_std(Rolls(), "x0", 3, 0, 7) == "mean"
    assert _prediction._mean_or_std(Rolls(), "x0", 3, 5, 7) == "std"
    assert calls == [("x0", 3, 0, 7), ("x0", 3, 5, 7)]


@pytest.mark.parametrize("whole_domain, grid", [(False, (1, 2)), (False, (3, 3)), (True, (4, 4))])
@pytest.mark.parametrize("batch_size", [1, 8, 20])
@pytest.mark.parametrize("n_draws", [0, 2, 16])
def test_rollout_rows_are_whole_samples_about_a_batch(whole_domain, grid, batch_size, n_draws):
    est = SimpleNamespace(_whole_domain=whole_domain, batch_size=batch_size)
    rows = PredictionMixin._rollout_rows(est, grid, n_draws)
    # The most whole samples whose rows (each member a row) fit max(batch_size, 8); one sample at least.
    per_sample = 1 if whole_domain else grid[0] * grid[1]
    fits = [k * per_sample for k in range(1, 64) if k * per_sample * max(n_draws, 1) <= max(batch_size, 8)]
    assert rows == max(fits, default=per_sample)


def test_check_rollout_args_defaults_seed_and_errors():
    est = SimpleNamespace(random_state=5)
    x = np.zeros((2, 4, 1, 1, 1))
    seed = np.random.RandomState(5).randint(0, 2**31 - 1)  # the same seed on every call
    assert PredictionMixin._check_rollout_args(est, x, None, 16, False) == (3, seed)  # n_steps: T - 1
    assert PredictionMixin._check_rollout_args(est, x, np.int64(7), 2, True) == (7, seed)
    assert PredictionMixin._check_rollout_args(est, x, 2, 1, False) == (2, seed)  # n_draws unused
    for n_steps in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match=rf"n_steps must be a positive int, got {n_steps!r}"):
            PredictionMixin._check_rollout_args(est, x, n_steps, 2, True)
    for n_draws in (1, 0, True, 2.0):
        with pytest.raises(ValueError, match=rf"n_draws must be an int >= 2 .*, got {n_draws!r}"):
            PredictionMixin._check_rollout_args(est, x, 2, n_draws, True)


def _shallow(est):
    """A copy of a fitted estimator sharing its networks, with a rollout cache of its own (copy.copy
    would serialize and rebuild every network)."""
    c = object.__new__(type(est))
    c.__dict__.update({k: v for k, v in vars(est).items() if k != "_rollout_fn"})
    return c


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_latent_limits_widen_the_training_range(micro_pipe, margin):
    est = _shallow(micro_pipe["micro"]).set_params(latent_margin=margin)
    lo, hi = est.latent_range_
    got_lo, got_hi = est._latent_limits()
    np.testing.assert_allclose(got_lo, lo - margin * (hi - lo), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_hi, hi + margin * (hi - lo), rtol=1e-6, atol=1e-6)
    assert got_lo.dtype == got_hi.dtype == np.float32
    assert est.set_params(latent_margin=None)._latent_limits() == (None, None)


def test_compiled_rollouts_are_cached_per_kind_and_margin(micro_pipe):
    est = _shallow(micro_pipe["micro"])
    mean = est._compiled_rollout("mean")
    assert est._compiled_rollout("mean") is mean
    assert est._compiled_rollout("ensemble") is not mean
    est.set_params(latent_margin=0.5)  # the bounds change after fit: a new rollout
    assert est._compiled_rollout("mean") is not mean
    assert sorted(est._rollout_fn, key=str) == [("ensemble", 0.0), ("mean", 0.0), ("mean", 0.5)]


class Decay(PredictionMixin):
    """Test-only model: the rollout of a first frame x0 is ``x0 · 0.9^s + 0.01 s``; its std ``n_draws + seed``.

    Only the rollout of a block of rows is faked; blocking, streaming and laziness are PredictionMixin's.
    """

    _whole_domain = False
    random_state = 0
    fields_ = ["temperature", "pressure"]

    def __init__(self, rows):
        self.rows, self.blocks = rows, []

    def _rollout_rows(self, grid, n_draws=0):
        return self.rows

    def _check_predict_input(self, X, name="X"):
        return X, SimpleNamespace(grid_shape=(1, 1))

    def _rollout_block(self, x0, n_steps, n_draws, seed, keep_draws=False):
        self.blocks.append(len(x0))
        s = np.arange(n_steps + 1).reshape(1, -1, 1, 1, 1)
        mean = (np.asarray(x0)[:, None] * 0.9**s + 0.01 * s).astype(np.float32)
        if n_draws == 0:
            return mean, None, None, None
        return mean, np.full_like(mean, n_draws + seed), None


def _frames(n=5, t=4, seed=0):
    """(n, t, 3, 2, 2) rows whose means differ a lot: merging per-block sums must shift the means."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 1.0, (n, t, 3, 2, 2)) + 10.0 * np.arange(n)[:, None, None, None, None]).astype(np.float32)


def test_score_per_field_streamed_in_blocks_is_the_r2_of_the_whole_rollout():
    x = _frames()[..., :2]  # two fields
    t = x[:, 1:].astype(np.float64)
    s = np.arange(1, x.shape[1]).reshape(1, -1, 1, 1, 1)
    p = (x[:, :1] * 0.9**s + 0.01 * s).astype(np.float32).astype(np.float64)
    axes = (0, 1, 2, 3)  # all but field
    expected = 1 - ((t - p) ** 2).sum(axes) / ((t - t.mean(axes, keepdims=True)) ** 2).sum(axes)
    for rows, blocks in ((1, [1] * 5), (2, [2, 2, 1]), (8, [5])):
        model = Decay(rows)
        per_field = model.score_per_field(x)
        assert model.blocks == blocks
        assert list(per_field) == Decay.fields_
        # Chan et al.'s parallel sums give the one-pass R² up to float64 rounding.
        np.testing.assert_allclose(list(per_field.values()), expected, rtol=1e-12)
    assert Decay(2).score(x) == pytest.approx(np.mean(expected), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 time steps"):
        Decay(2).score_per_field(x[:, :1])


def test_lazy_rollout_is_computed_only_on_demand_and_equals_the_eager_one():
    dask = pytest.importorskip("dask")
    import dask.array as da

    x = _frames()
    lazy_x = da.from_array(x, chunks=(2,) + x.shape[1:])

    def refuse(*args, **kwargs):
        raise AssertionError("the lazy rollout computed")

    model = Decay(2)
    with dask.config.set(scheduler=refuse):
        mean, std = model._rollout(lazy_x, (1, 1), 3, 4, 1)
    assert isinstance(mean, da.Array) and isinstance(std, da.Array)
    assert model.blocks == [1, 1]  # one trace each of the mean and the ensemble, on a dummy frame
    eager = Decay(2)._rollout(x, (1, 1), 3, 4, 1)
    # The same blocks of rows as the eager rollout.
    np.testing.assert_array_equal(mean.compute(), eager[0])
    np.testing.assert_array_equal(std.compute(), eager[1])
    s = np.arange(4).reshape(1, -1, 1, 1, 1)
    np.testing.assert_array_equal(eager[0], (x[:, :1] * 0.9**s + 0.01 * s).astype(np.float32))
    np.testing.assert_array_equal(eager[1], 5.0)
    assert Decay(2)._rollout(x, (1, 1), 3, 0, 1)[1] is None  # no draws: no std


def test_lazy_rollout_does_not_pickle_the_estimator():
    """dask names the blocks without hashing the estimator (pickling its networks took longer than the rollout)."""
    import dask.array as da

    pickled = []

    class Counted(Decay):
        def __reduce_ex__(self, protocol):
            pickled.append(protocol)
            return super().__reduce_ex__(protocol)

    x = _frames()
    mean, _ = Counted(2)._rollout(da.from_array(x, chunks=(2,) + x.shape[1:]), (1, 1), 3, 0, 1)
    np.testing.assert_array_equal(mean.compute(), Decay(2)._rollout(x, (1, 1), 3, 0, 1)[0])
    assert pickled == []


# -- predict, predict_draws, encode/decode and score of a fitted estimator (the session's micro pipeline) --
def test_predict_beyond_data_extends_time(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X)
    pred = micro_pipe["micro"].predict(tokens, n_steps=7)
    t = tokens["time"].values
    assert pred.sizes["time"] == 8
    np.testing.assert_allclose(pred["time"].values, t[0] + (t[1] - t[0]) * np.arange(8))


def test_return_std(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X)
    mean, std = micro_pipe["micro"].predict(tokens, return_std=True, n_draws=4)
    np.testing.assert_array_equal(mean.values, micro_pipe["micro"].predict(tokens).values)
    assert std.shape == mean.shape and (std.values >= 0).all() and (std.values > 0).any()


def test_predict_draws_layout_and_bounds(micro_pipe, micro_X):
    tokens = micro_pipe["tokens"].transform(micro_X)
    est = micro_pipe["micro"]
    draws = est.predict_draws(tokens, n_steps=3, n_draws=3)
    assert draws.dims == ("draw",) + tokens.dims and draws.sizes["draw"] == 3
    assert draws.attrs == tokens.attrs
    # The solid fraction declares [0, 1] and temperature >= its initial 300 K (valid_min/valid_max);
    # pressure is unbounded. Members stay inside, in scaled units too.
    assert est.bounds_ == {"temperature": (300.0, None), "pressure": (None, None), "microstructure": (0.0, 1.0)}
    lo, hi = est.ranges_["microstructure"]
    mu = draws.sel(field="microstructure").values * (hi - lo) + lo
    assert mu.min() >= -1e-6 and mu.max() <= 1 + 1e-6
    lo, hi = est.ranges_["temperature"]
    assert (draws.sel(field="temperature").values * (hi - lo) + lo).min() >= 300.0 - 1e-3 * (hi - lo)
    with pytest.raises(ValueError, match="n_draws"):
        est.predict_draws(tokens, n_draws=1)


def test_encode_decode_layout(micro_pipe, micro_X):
    est, tokens = micro_pipe["micro"], micro_pipe["tokens"].transform(micro_X)
    z = est.encode(tokens)
    assert z["z_mean"].dims == ("sample", "time", "field", "channel", "token_y", "token_x", "latent_y", "latent_x")
    assert z["z_mean"].shape[3:] == (est.latent_shape_[2], 1, 2, 4, 4)
    decoded = est.decode(z)
    assert decoded.dims == tokens.dims and decoded.shape == tokens.shape
    # The rollout's first frame is the decoded encoding of the first input frame.
    np.testing.assert_allclose(decoded.isel(time=0).values, est.predict(tokens).isel(time=0).values, atol=1e-5)


# -- per-field evaluation ----------------------------------------------------------------
def test_score_is_the_mean_of_per_field_r2_of_the_rollout(micro_pipe, micro_X):
    from skmld.metrics import r2_per_field

    tokens = micro_pipe["tokens"].transform(micro_X)
    est = micro_pipe["micro"]
    per_field = est.score_per_field(tokens)
    expected = r2_per_field(tokens.isel(time=slice(1, None)), est.predict(tokens).isel(time=slice(1, None)))
    assert list(per_field) == est.fields_
    np.testing.assert_allclose([per_field[f] for f in est.fields_], expected.sel(field=est.fields_).values,
                               rtol=1e-6, atol=1e-9)
    assert est.score(tokens) == pytest.approx(np.mean(list(per_field.values())))
