"""The engine's fast paths against the straightforward computation, on tiny networks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from skmld import _engine
from skmld.micro import build_networks

FIELDS = ["temperature", "pressure"]  # two fields: per-field and coupled networks, at two thirds of three's cost
C, H, W = 2, 32, 32  # latent channels, field grid (latent grid 4 × 4, the U-Nets need multiples of 4)
LR = 1e4
WEIGHTS = dict.fromkeys(("reconstruction", "kl", "edge", "latent_mean", "latent_log_var", "multistep"), 1.0)


def tiny_networks():
    keras.utils.set_random_seed(0)
    # No dropout: chunks draw their own masks, which is the one intended difference.
    return build_networks(FIELDS, latent_channels=C, filters=2, kernel_size=3, dynamics="unet", dynamics_filters=2,
                          dropout=0.0, dtype=None)


def batch_of(rows: dict, n: int, key=(7, 3)) -> dict:
    return {**{k: tf.constant(v) for k, v in rows.items()},
            "pos": tf.range(n, dtype=tf.int32), "count": tf.fill([n], n), "key": tf.constant([key] * n, tf.int32)}


def spec_of(batch: dict):
    spec = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype) for k, v in batch.items()}
    return spec, spec


def one_step(make, batch, names, chunk):
    """Loss terms and the gradients (from an SGD update) of one step from fresh networks."""
    nets = tiny_networks()
    variables = nets.variables(names)
    before = [v.numpy() for v in variables]
    # A large rate, so that the update, not the weight, sets the rounding of ``before - after``.
    optimizer = keras.optimizers.SGD(learning_rate=LR)
    optimizer.build(variables)
    train_step, _ = make(nets, optimizer, variables, spec_of(batch), chunk)
    terms = {k: float(v) for k, v in train_step(batch).items()}
    return terms, [(b - v.numpy()) / LR for b, v in zip(before, variables)], train_step


def assert_same_step(whole, chunked, batch):
    (terms_a, grads_a, step_a), (terms_b, grads_b, step_b) = whole, chunked
    assert while_loops(step_a, batch) == 0 and while_loops(step_b, batch) == 1  # the chunks are a loop
    assert terms_a.keys() == terms_b.keys()
    for k in terms_a:
        np.testing.assert_allclose(terms_b[k], terms_a[k], rtol=1e-5, err_msg=k)
    assert any(np.abs(g).max() > 0 for g in grads_a)
    # Float32 sums of ~10⁴ terms (a conv's filter gradient) in another order: ≈ 1e-5 of the largest.
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def while_loops(train_step, batch) -> int:
    """While ops in the traced step and the functions it calls."""
    graph_def = train_step.get_concrete_function(batch).graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return sum(n.op in ("While", "StatelessWhile") for n in nodes)


@pytest.mark.traced  # its step is traced anyway (to count its loops): 45 s traced, 56 s eager
def test_chunked_dynamics_step_equals_whole_batch():
    n, chunk, horizon = 5, 2, 2  # a ragged last chunk
    rng = np.random.default_rng(0)
    rows = {"z_mean": rng.standard_normal((n, horizon + 1, H // 8, W // 8, len(FIELDS) * C), dtype=np.float32),
            "z_log_var": rng.uniform(-3, -1, (n, horizon + 1, H // 8, W // 8, len(FIELDS) * C)).astype(np.float32),
            "x": rng.random((n, horizon, H, W, len(FIELDS)), dtype=np.float32)}
    batch = batch_of(rows, n)
    names = [f"decoupled_{k}/{f}" for f in FIELDS for k in ("mean", "log_var")] + list(_engine.COUPLED)

    def make(nets, optimizer, variables, spec, chunk):
        return _engine.make_dynamics_step(
            nets, horizon=horizon, time_ratio=1, coupled=True, train_decoupled=True, train_coupled=True,
            weights=WEIGHTS, optimizer=optimizer, variables=variables, global_batch=n,
            strategy=tf.distribute.get_strategy(), spec=spec, jit=False, chunk=chunk)

    whole, chunked = one_step(make, batch, names, None), one_step(make, batch, names, chunk)
    assert_same_step(whole, chunked, batch)


def test_chunked_vae_step_equals_whole_batch():
    n = 5
    rows = {"x": np.random.default_rng(1).random((n, H, W, len(FIELDS)), dtype=np.float32)}
    batch = batch_of(rows, n)
    names = [f"{k}/{f}" for f in FIELDS for k in ("encoder", "decoder")]

    def make(nets, optimizer, variables, spec, chunk):
        return _engine.make_vae_step(nets, WEIGHTS, optimizer, variables, n, tf.distribute.get_strategy(), spec,
                                     False, chunk)

    assert_same_step(one_step(make, batch, names, None), one_step(make, batch, names, 2), batch)


def test_calibrated_reconstruction_is_the_gaussian_nll_at_the_batch_mse():
    n = 4
    batch = batch_of({"x": np.random.default_rng(3).random((n, H, W, len(FIELDS)), dtype=np.float32)}, n)
    names = [f"{k}/{f}" for f in FIELDS for k in ("encoder", "decoder")]

    def make(nets, optimizer, variables, spec, chunk):
        return _engine.make_vae_step(nets, WEIGHTS, optimizer, variables, n, tf.distribute.get_strategy(), spec,
                                     False, chunk, loss="calibrated")

    terms, grads, _ = one_step(make, batch, names, None)
    mse = np.array([terms[f"mse_{f}"] for f in FIELDS])
    assert (mse > 0).all() and any(np.abs(g).max() > 0 for g in grads)
    expected = 0.5 * H * W * np.log(mse + _engine.MIN_PIXEL_VARIANCE)
    np.testing.assert_allclose([terms[f"reconstruction_{f}"] for f in FIELDS], expected, rtol=1e-5)
    np.testing.assert_allclose(terms["reconstruction"], expected.sum(), rtol=1e-5)
    np.testing.assert_allclose(terms["kl"], sum(terms[f"kl_{f}"] for f in FIELDS), rtol=1e-5)
    np.testing.assert_allclose(terms["kl_temperature"], sum(terms[f"kl_temperature_c{k}"] for k in range(C)),
                               rtol=1e-5)


def test_multistep_field_weights_weigh_each_field():
    n, horizon = 3, 1
    rng = np.random.default_rng(4)
    latent = (n, horizon + 1, H // 8, W // 8, len(FIELDS) * C)
    batch = batch_of({"z_mean": rng.standard_normal(latent, dtype=np.float32),
                      "z_log_var": np.full(latent, -4.0, np.float32),
                      "x": rng.random((n, horizon, H, W, len(FIELDS)), dtype=np.float32)}, n)
    nets = tiny_networks()

    def multistep(field_weights):
        _, evaluate = _engine.make_dynamics_step(
            nets, horizon=horizon, time_ratio=1, coupled=True, train_decoupled=False, train_coupled=False,
            weights=WEIGHTS, optimizer=None, variables=[], global_batch=n, strategy=tf.distribute.get_strategy(),
            spec=spec_of(batch), jit=False, field_weights=field_weights)
        return float(evaluate(batch)["multistep"])

    parts = [multistep(np.eye(len(FIELDS))[i]) for i in range(len(FIELDS))]
    assert min(parts) > 0
    np.testing.assert_allclose(multistep(None), sum(parts), rtol=1e-5)
    np.testing.assert_allclose(multistep([2.0, 0.5]), 2 * parts[0] + 0.5 * parts[1], rtol=1e-5)


@pytest.mark.traced
def test_encode_and_decode_trace_once_per_grid():
    """Frames of other batch sizes reuse a grid's one trace; another grid gets its own. Both equal eager calls."""
    nets = tiny_networks()
    rng = np.random.default_rng(0)
    latents = {}
    for n, t, h in [(2, 3, H), (1, 5, H), (3, 1, 2 * H)]:
        x = rng.random((n, t, h, W, len(FIELDS)), dtype=np.float32)
        zm, _ = _engine.encode_all(nets, x, batch_size=4)  # batches of 4, 2, 1 and 3 frames
        frames = x.reshape((n * t, h, W, -1))
        np.testing.assert_allclose(zm.reshape((n * t,) + zm.shape[2:]), nets.encode(frames)[0], rtol=1e-5, atol=1e-6)
        assert _engine.decode_all(nets, zm, batch_size=4).shape == x.shape
        latents[h] = (x, zm)
    for x, zm in latents.values():
        assert nets.compiled("encode", x[0]).experimental_get_tracing_count() == 1
        assert nets.compiled("decode", zm[0]).experimental_get_tracing_count() == 1


def test_rollouts_run_on_several_grids_and_batch_sizes():
    """Grids and batch sizes in turn: each call equals the same frames rolled out alone."""
    from skmld import _rollout

    nets = tiny_networks()
    lower, upper = np.full(len(FIELDS), -np.inf, np.float32), np.full(len(FIELDS), np.inf, np.float32)
    rollout = _rollout.make_rollout(nets, 1, False, lower, upper)
    ensemble = _rollout.make_ensemble(nets, 1, False, lower, upper)
    rng = np.random.default_rng(1)
    for n, h in [(2, H), (1, 2 * H), (3, H), (1, 2 * H)]:
        x0 = tf.constant(rng.random((n, h, W, len(FIELDS)), dtype=np.float32))
        mean = rollout(x0, tf.constant(2))[0].numpy()
        assert mean.shape == (n, 3, h, W, len(FIELDS))
        np.testing.assert_allclose(mean[-1:], rollout(x0[-1:], tf.constant(2))[0].numpy(), rtol=1e-5, atol=1e-6)
        _, std, draws = ensemble(x0, tf.constant(2), tf.constant(3), tf.constant(5), True)
        assert std.shape == mean.shape and draws.shape == (n, 3, 3, h, W, len(FIELDS))
