"""skmld._rollout: the compiled mean rollout and trajectory ensemble, on a fake network with known dynamics.

The fake encodes a frame as itself, decodes a latent as itself and steps the
latent mean by +1 and the log-variance by +0.5, so every rollout has a closed
form; tiny tensors, no fitted model. The last test checks the fitted
estimator's compiled ensemble against the same loop written out by hand.
"""

import pickle

import numpy as np
import pytest
import tensorflow as tf

from skmld import _rollout

INF = np.inf


class FakeNets:
    """Identity encoder and decoder (log-variance ``log_var``); the stepper adds 1 to the mean, 0.5 to the
    log-variance."""

    def __init__(self, log_var=-1.0):
        self.log_var = log_var

    def encode(self, x):
        return x, tf.zeros_like(x) + self.log_var

    def decode(self, z):
        return z

    def stepper(self):
        return lambda zm, zv: (zm + 1.0, zv + 0.5)


def _x0(batch=2, side=4, fields=2, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (batch, side, side, fields)).astype(np.float32)


def test_cap_keeps_log_variances_at_or_below_the_prior():
    z = np.array([-3.0, -1e-3, 0.0, 2.0, 50.0], np.float32)
    np.testing.assert_array_equal(_rollout._cap(tf.constant(z)).numpy(), np.minimum(z, 0.0))


def test_latent_clip_per_channel_in_the_input_dtype():
    z = np.random.default_rng(1).normal(0.0, 2.0, (2, 3, 3, 3)).astype(np.float32)
    lo, hi = np.array([-1.0, 0.0, -INF], np.float32), np.array([1.0, 0.5, 0.25], np.float32)
    clip = _rollout._latent_clip(lo, hi)
    np.testing.assert_array_equal(clip(tf.constant(z)).numpy(), np.clip(z, lo, hi))
    half = clip(tf.constant(z, tf.float16))
    assert half.dtype == tf.float16
    np.testing.assert_array_equal(half.numpy(), np.clip(z.astype(np.float16), lo.astype(np.float16),
                                                        hi.astype(np.float16)))
    unbounded = _rollout._latent_clip(None, None)
    assert unbounded(z) is z  # no bound: the latents pass through untouched


@pytest.mark.parametrize("step_shape", [(2,), (2, 3, 4, 5)])
def test_stack_puts_steps_second(step_shape):
    steps = [np.random.default_rng(s).normal(size=step_shape).astype(np.float32) for s in range(3)]
    ta = tf.TensorArray(tf.float32, size=3)
    for s, x in enumerate(steps):
        ta = ta.write(s, x)
    np.testing.assert_array_equal(_rollout._stack(ta).numpy(), np.stack(steps, axis=1))


@pytest.mark.traced
def test_per_grid_traces_once_per_grid_and_dtype_for_any_batch():
    traces = []

    def make(spec):
        def double(x):
            traces.append(tuple(x.shape))  # runs at trace time only
            return 2 * x

        return tf.function(double, input_signature=[spec])

    get = _rollout.per_grid(make)
    for batch in (1, 3, 2):
        x = tf.constant(np.full((batch, 4, 6, 2), batch, np.float32))
        np.testing.assert_array_equal(get(x)(x).numpy(), 2 * x.numpy())
    assert traces == [(None, 4, 6, 2)]  # one trace, the batch left open
    x = tf.zeros((1, 8, 6, 2))
    get(x)(x)
    get(tf.zeros((1, 4, 6, 2), tf.float16))(tf.zeros((5, 4, 6, 2), tf.float16))
    assert traces == [(None, 4, 6, 2), (None, 8, 6, 2), (None, 4, 6, 2)]


def test_scaled_bounds_in_the_networks_units():
    fields = ["temperature", "pressure", "microstructure", "flat"]
    ranges = {"temperature": (300.0, 1300.0), "pressure": (0.0, 50.0), "microstructure": (0.0, 1.0), "flat": (5.0, 5.0)}
    bounds = {"temperature": (300.0, None), "microstructure": (0.0, 1.0), "flat": (None, 7.0)}
    lower, upper = _rollout.scaled_bounds(bounds, ranges, fields)
    # (bound - min) / (max - min); an unbounded or unnamed side is ±inf; a zero-width range scales by 1.
    np.testing.assert_array_equal(lower, [0.0, -INF, 0.0, -INF])
    np.testing.assert_array_equal(upper, [INF, INF, 1.0, 2.0])
    assert lower.dtype == upper.dtype == np.float32
    for no_bounds in ((None, ranges), ({}, ranges), (bounds, None)):
        lower, upper = _rollout.scaled_bounds(*no_bounds, fields)
        assert (lower == -INF).all() and (upper == INF).all()


@pytest.mark.parametrize("time_ratio", [1, 2])
def test_mean_rollout_steps_clips_and_decodes(time_ratio):
    x0 = _x0()
    lower, upper = np.array([-INF, 0.0], np.float32), np.array([INF, 2.5], np.float32)
    rollout = _rollout.make_rollout(FakeNets(), time_ratio, False, lower, upper)
    mean, zm, zv = (a.numpy() for a in rollout(tf.constant(x0), tf.constant(3)))
    assert mean.shape == zm.shape == zv.shape == (2, 4) + x0.shape[1:]
    for s in range(4):
        n = s * time_ratio  # micro steps taken
        np.testing.assert_allclose(zm[:, s], x0 + n, rtol=1e-6)
        np.testing.assert_allclose(zv[:, s], -1.0 + 0.5 * n, rtol=1e-6)
        np.testing.assert_allclose(mean[:, s], np.clip(x0 + n, lower, upper), rtol=1e-6)  # fields clipped, not latents


def test_mean_rollout_keeps_each_stepped_latent_within_its_bounds():
    x0 = _x0(fields=1)
    z_lo, z_hi = np.array([0.0], np.float32), np.array([1.7], np.float32)
    rollout = _rollout.make_rollout(FakeNets(), 2, False, [-INF], [INF], z_lo, z_hi)
    zm = rollout(tf.constant(x0), tf.constant(2))[1].numpy()
    expected, z = [x0], x0
    for _ in range(2):
        for _ in range(2):  # clipped after every micro step, not once per step
            z = np.clip(z + 1.0, z_lo, z_hi)
        expected.append(z)
    np.testing.assert_allclose(zm, np.stack(expected, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(zm[:, 0], x0)  # the encoded frame is not clipped


def test_ensemble_first_frame_is_a_capped_posterior_draw_member_major():
    x0, n_draws, seed = _x0(batch=3), 4, 11
    # A log-variance of 3 would spread the members by exp(1.5); capped at 0 they spread by 1.
    ensemble = _rollout.make_ensemble(FakeNets(log_var=3.0), 1, False, [-INF, -INF], [INF, INF])
    mean, std, draws = (a.numpy() for a in ensemble(tf.constant(x0), tf.constant(1), tf.constant(n_draws),
                                                    tf.constant(seed), True))
    assert draws.shape == (3, n_draws, 2) + x0.shape[1:]
    eps = tf.random.stateless_normal((n_draws * 3,) + x0.shape[1:], seed=[seed, 0]).numpy()
    members = np.tile(x0, (n_draws, 1, 1, 1)) + eps  # row d * B + b: member d of sample b
    np.testing.assert_allclose(draws[:, :, 0], members.reshape((n_draws, 3) + x0.shape[1:]).swapaxes(0, 1),
                               rtol=1e-6, atol=1e-6)
    # mean and std summarise the kept members, step by step.
    np.testing.assert_allclose(mean, draws.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, draws.std(axis=1, ddof=1), rtol=1e-4, atol=1e-6)
    # Without keep the same seed gives the same mean and std and no members.
    again = ensemble(tf.constant(x0), tf.constant(1), tf.constant(n_draws), tf.constant(seed), False)
    np.testing.assert_array_equal(again[0].numpy(), mean)
    np.testing.assert_array_equal(again[1].numpy(), std)
    assert again[2].shape.num_elements() == 0


def test_ensemble_without_spread_follows_the_mean_rollout():
    # A log-variance of -200 draws no noise (exp(-100)): every member is the mean trajectory.
    x0, lower, upper = _x0(), np.array([-INF, 0.0], np.float32), np.array([INF, 2.5], np.float32)
    nets = FakeNets(log_var=-200.0)
    ensemble = _rollout.make_ensemble(nets, 2, False, lower, upper)
    mean, std, draws = (a.numpy() for a in ensemble(tf.constant(x0), tf.constant(3), tf.constant(3),
                                                    tf.constant(0), True))
    expected = _rollout.make_rollout(nets, 2, False, lower, upper)(tf.constant(x0), tf.constant(3))[0].numpy()
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    np.testing.assert_allclose(draws, np.broadcast_to(expected[:, None], draws.shape), rtol=1e-6)
    # Equal members have no spread but the rounding of their float32 mean: a few ulps, with two passes
    # (E[x²] − E[x]² would leave about sqrt(eps) · |x|).
    np.testing.assert_allclose(std, 0.0, atol=4 * np.finfo(np.float32).eps * np.abs(draws).max())


# -- the same rollout on the session's fitted micro model, against a hand-made loop ---------------------
def test_trajectory_ensemble_matches_a_straightforward_computation(micro_pipe, micro_X):
    """The compiled ensemble equals carrying each member through the dynamics by hand with the same keyed noise."""
    import tensorflow as tf

    est = micro_pipe["micro"]
    x, _ = est._check_predict_input(micro_pipe["tokens"].transform(micro_X))
    x0, n_steps, n_draws, seed = x[:5, 0], 2, 7, 123
    mean, std, draws = est._rollout_block(x0, n_steps, n_draws, seed, keep_draws=True)
    assert draws.shape == (5, n_draws, n_steps + 1) + x0.shape[1:]

    nets, stepper, ratio = est._networks, est._networks.stepper(), est._time_ratio
    zm, zv = nets.encode(tf.constant(np.tile(x0, (n_draws, 1, 1, 1))))
    zv = tf.minimum(zv, 0.0)  # capped at the prior's log-variance

    def noise(counter):
        return tf.random.stateless_normal(tf.shape(zm), seed=[seed, counter])

    lo, hi = est._latent_limits()  # every stepped state within the training latents' range

    z = zm + tf.exp(0.5 * zv) * noise(0)
    for s in range(n_steps + 1):
        for k in range(ratio if s else 0):
            m, zv = stepper(z, zv)
            zv = tf.minimum(zv, 0.0)
            z = tf.clip_by_value(m, lo, hi) + tf.exp(0.5 * zv) * noise(s * ratio + k + 1)
        members = np.asarray(nets.decode(z)).reshape((n_draws, 5) + x0.shape[1:])
        np.testing.assert_allclose(draws[:, :, s], members.swapaxes(0, 1), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mean[:, s], members.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(std[:, s] ** 2, members.var(axis=0, ddof=1), rtol=1e-3, atol=1e-6)
    # Members drift apart: the spread after the steps exceeds the initial frame's. (Not with the
    # bound: this tiny model's stepped means leave the training range, where it holds them together.)
    free = pickle.loads(pickle.dumps(est)).set_params(latent_margin=None)
    std = free._rollout_block(x0, n_steps, n_draws, seed)[1]
    assert std[:, -1].mean() > std[:, 0].mean()
