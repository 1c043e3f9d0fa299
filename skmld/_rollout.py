"""Compiled rollouts of a fitted latent model: the mean trajectory and trajectory ensembles.

Both start from encoded initial frames and step the latent state with the
fitted dynamics; decoded fields are clipped to the fields' bounds (``lower``,
``upper``: one value per field in the networks' scaled units, ±inf where a
field has none).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from skmld._engine import Networks

_INT = tf.TensorSpec((), tf.int32)


def _clip(x, lower, upper):
    return tf.clip_by_value(x, lower, upper)


def _cap(z_log_var):
    """Log-variances capped at 0, the prior's: a member never spreads wider than N(0, 1).

    Late in long rollouts the predicted log-variance can grow without bound, and a
    member drawn with it would leave every range the decoder knows (inf, then NaN).
    """
    return tf.minimum(z_log_var, 0.0)


def per_grid(make):
    """``get(x0)``: the function ``make(spec)`` builds for ``x0``'s grid, built once per grid and dtype.

    The decoders' up-sampling needs the grid at trace time, so a grid cannot be
    left unknown: one trace per grid (for any batch size), rather than
    TensorFlow's shape relaxation, which after two grids traces one with none.
    """
    fns = {}

    def get(x0):
        spec = tf.TensorSpec((None,) + tuple(x0.shape[1:]), x0.dtype)
        if spec not in fns:
            fns[spec] = make(spec)
        return fns[spec]

    return get


def _stack(ta):
    """TensorArray of ``(B, ...)`` per step -> ``(B, steps, ...)``."""
    out = ta.stack()
    rank = tf.rank(out)
    return tf.transpose(out, tf.concat([[1, 0], tf.range(2, rank)], 0))


def _latent_clip(z_lower, z_upper):
    """``clip(z)``: latents kept in ``[z_lower, z_upper]`` (one value per latent channel), or unchanged (``None``)."""
    if z_lower is None:
        return lambda z: z
    z_lower, z_upper = tf.constant(z_lower, tf.float32), tf.constant(z_upper, tf.float32)
    return lambda z: tf.clip_by_value(z, tf.cast(z_lower, z.dtype), tf.cast(z_upper, z.dtype))


def make_rollout(nets: Networks, time_ratio: int, jit: bool, lower, upper, z_lower=None, z_upper=None):
    """``rollout(x0, n_steps) -> (mean, z_mean, z_log_var)``: the latent means stepped and decoded.

    ``mean`` has fields ``(B, n_steps + 1, H, W, F)``; the latents ``(B, n_steps + 1, h, w, F*C)``.
    With ``z_lower``, ``z_upper`` (one value per latent channel) the stepped
    latent means are kept within them (see ``latent_margin``).
    """
    stepper = nets.stepper()
    lower, upper = tf.constant(lower, tf.float32), tf.constant(upper, tf.float32)
    clip_z = _latent_clip(z_lower, z_upper)

    def rollout(x0, n_steps):
        zm, zv = nets.encode(x0)
        means = tf.TensorArray(tf.float32, size=n_steps + 1)
        zms = tf.TensorArray(tf.float32, size=n_steps + 1)
        zvs = tf.TensorArray(tf.float32, size=n_steps + 1)
        for s in tf.range(n_steps + 1):
            if s > 0:
                for _ in range(time_ratio):
                    zm, zv = stepper(zm, zv)
                    zm = clip_z(zm)
            means = means.write(s, _clip(tf.cast(nets.decode(zm), tf.float32), lower, upper))
            zms = zms.write(s, tf.cast(zm, tf.float32))
            zvs = zvs.write(s, tf.cast(zv, tf.float32))
        return _stack(means), _stack(zms), _stack(zvs)

    get = per_grid(lambda spec: tf.function(rollout, input_signature=[spec, _INT], jit_compile=jit))

    def call(x0, n_steps):
        return get(x0)(x0, n_steps)

    call.python_function = rollout  # the body, uncompiled, as tf.function exposes it (benchmarks)
    return call


def make_ensemble(nets: Networks, time_ratio: int, jit: bool, lower, upper, z_lower=None, z_upper=None):
    """``ensemble(x0, n_steps, n_draws, seed, keep) -> (mean, std, draws)``: a trajectory ensemble.

    Each of the ``n_draws`` members starts from a draw of the initial frame's
    latent posterior ``z̄ + exp(zσ/2)·ε`` and is carried through the dynamics:
    after every (micro) step its state is a draw of the predicted distribution,
    ``z ← m(z) + exp(v(z)/2)·ε``, so the members drift apart as the errors of
    the dynamics add up; log-variances are capped at the prior's (0). ``mean`` and ``std`` ``(B, n_steps + 1, H, W, F)`` are
    the members' mean and standard deviation, computed per step in two passes
    (the deviations from the mean, not E[x²] − E[x]², which float32 cannot
    resolve for small spreads). ``draws`` ``(B, n_draws, n_steps + 1, H, W, F)``
    holds the members when ``keep`` (a Python bool), else it is empty. ``z_lower``,
    ``z_upper``: as for :func:`make_rollout`, applied to each member's predicted mean
    ``m(z)`` before its draw, so members at the bound still spread around it.
    """
    stepper = nets.stepper()
    lower, upper = tf.constant(lower, tf.float32), tf.constant(upper, tf.float32)
    clip_z = _latent_clip(z_lower, z_upper)

    def ensemble(x0, n_steps, n_draws, seed, keep):
        zm, zv = nets.encode(x0)
        batch = tf.shape(zm)[0]
        # Members stacked member-major on the batch axis: row d * B + b.
        zm, zv = tf.tile(zm, [n_draws, 1, 1, 1]), tf.tile(_cap(zv), [n_draws, 1, 1, 1])

        def noise(counter):
            return tf.random.stateless_normal(tf.shape(zm), seed=tf.stack([seed, counter]), dtype=zm.dtype)

        z = zm + tf.exp(0.5 * zv) * noise(0)
        means = tf.TensorArray(tf.float32, size=n_steps + 1)
        stds = tf.TensorArray(tf.float32, size=n_steps + 1)
        members = tf.TensorArray(tf.float32, size=n_steps + 1 if keep else 0, dynamic_size=not keep)
        for s in tf.range(n_steps + 1):
            if s > 0:
                for k in range(time_ratio):
                    m, zv = stepper(z, zv)
                    zv = _cap(zv)
                    z = clip_z(m) + tf.exp(0.5 * zv) * noise(s * time_ratio + k + 1)
            x = _clip(tf.cast(nets.decode(z), tf.float32), lower, upper)
            x = tf.reshape(x, tf.concat([[n_draws, batch], tf.shape(x)[1:]], 0))
            mean = tf.reduce_mean(x, axis=0)
            var = tf.reduce_sum(tf.square(x - mean), axis=0) / tf.cast(tf.maximum(n_draws - 1, 1), tf.float32)
            means = means.write(s, mean)
            stds = stds.write(s, tf.sqrt(var))
            if keep:  # a Python bool: one trace with the members, one without
                members = members.write(s, tf.transpose(x, [1, 0, 2, 3, 4]))
        draws = tf.transpose(members.stack(), [1, 2, 0, 3, 4, 5]) if keep else tf.zeros([0, 0, 0, 0, 0, 0])
        return _stack(means), _stack(stds), draws

    def make(spec):
        def with_keep(keep):  # ``keep`` is a Python bool: one function with the members, one without
            def fn(x0, n_steps, n_draws, seed):
                return ensemble(x0, n_steps, n_draws, seed, keep)

            return tf.function(fn, input_signature=[spec, _INT, _INT, _INT], jit_compile=jit)

        return {False: with_keep(False), True: with_keep(True)}

    get = per_grid(make)

    def call(x0, n_steps, n_draws, seed, keep):
        return get(x0)[bool(keep)](x0, n_steps, n_draws, seed)

    call.python_function = ensemble
    return call


def scaled_bounds(bounds: dict | None, ranges: dict | None, fields: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-field lower and upper bounds in the networks' units (fields scaled by ``ranges`` to [0, 1]).

    ``bounds``: field -> physical ``(lo, hi)`` (``None`` where unbounded); without
    ``bounds`` or ``ranges`` nothing is bounded.
    """
    lower, upper = np.full(len(fields), -np.inf, np.float32), np.full(len(fields), np.inf, np.float32)
    if not bounds or ranges is None:
        return lower, upper
    for i, f in enumerate(fields):
        r_lo, r_hi = ranges[f]
        scale = (r_hi - r_lo) or 1.0
        lo, hi = bounds.get(f, (None, None))
        if lo is not None:
            lower[i] = (lo - r_lo) / scale
        if hi is not None:
            upper[i] = (hi - r_lo) / scale
    return lower, upper
