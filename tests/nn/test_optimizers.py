"""The fused Adam is Keras's Adam, faster."""

import keras
import numpy as np
import tensorflow as tf

from skmld.nn.optimizers import FusedAdam


def make_step(opt, variables):
    @tf.function
    def step(grads):
        opt.apply(grads, variables)

    return step


def test_fused_adam_matches_keras_adam():
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (4,), (2, 2, 3)]]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in init] for _ in range(5)]
    results = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        variables = [keras.Variable(w) for w in init]
        opt = cls(learning_rate=0.1, beta_1=0.5, beta_2=0.99)
        opt.build(variables)
        step = make_step(opt, variables)
        for g in grads:
            step([tf.constant(x) for x in g])
        results.append([v.numpy() for v in variables])
    for keras_w, fused_w, w0 in zip(*results, init):
        assert not np.allclose(keras_w, w0)
        np.testing.assert_allclose(fused_w, keras_w, rtol=1e-5, atol=1e-6)
