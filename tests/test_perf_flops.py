"""The benchmarks' analytic FLOP counter against hand-computed counts."""

import importlib.util
from pathlib import Path

import keras
import tensorflow as tf

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "flops.py"
_spec = importlib.util.spec_from_file_location("perf_flops", _PATH)
flops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flops)


def _tiny():
    inputs = keras.Input(shape=(None, None, 2))
    x = keras.layers.Conv2D(3, 3, padding="same")(inputs)  # 8×12 out
    x = keras.layers.MaxPooling2D(2)(x)  # not counted
    x = keras.layers.Conv2D(4, 1)(x)  # 4×6 out
    x = keras.layers.Conv2DTranspose(5, 2, strides=2)(x)  # 8×12 out
    x = keras.layers.Dense(6)(x)
    return keras.Model(inputs, x)


def test_forward_flops_matches_hand_count():
    model = _tiny()
    expected = (
        2 * 3 * 3 * 2 * 3 * 8 * 12  # 3×3 conv 2→3 at 8×12
        + 2 * 1 * 1 * 3 * 4 * 4 * 6  # 1×1 conv 3→4 at 4×6
        + 2 * 2 * 2 * 4 * 5 * 4 * 6  # 2×2 stride-2 transposed conv 4→5: each of 4×6 inputs meets the kernel
        + 2 * 5 * 6 * 8 * 12  # dense 5→6 at each of 8×12 positions
    )
    assert flops.forward_flops(model, (8, 12, 2)) == expected


def test_graph_flops_counts_forward_and_both_gradients():
    model = _tiny()
    x = tf.zeros((2, 8, 12, 2))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(model(x))
        return y, tape.gradient(y, [x] + model.trainable_variables)

    by_type = flops.graph_flops(step.get_concrete_function(x).graph)
    forward = 2 * flops.forward_flops(model, (8, 12, 2))
    # Convolutions: forward + input gradient + filter gradient; the transposed conv's forward
    # is a Conv2DBackpropInput and its input gradient a Conv2D. Dense: three matmuls.
    assert flops.total(by_type) == 3 * forward


def test_graph_flops_skips_work_nothing_uses():
    model = _tiny()
    x = tf.zeros((2, 8, 12, 2))

    @tf.function
    def grads_only(x):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(model(x))
        return tape.gradient(y, model.trainable_variables[-2:])  # the dense layer's kernel and bias

    # The dense output's value is never needed (d sum / d out = 1): the runtime prunes its matmul,
    # and the convolutions' input gradients; what is left is the conv forwards and the dense
    # kernel gradient, whose cost is that of its forward.
    by_type = flops.graph_flops(grads_only.get_concrete_function(x).graph)
    assert flops.total(by_type) == 2 * flops.forward_flops(model, (8, 12, 2))
