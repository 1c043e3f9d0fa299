"""Adam with TensorFlow's fused per-variable kernel.

Keras's Adam builds about twenty small ops per variable; with the ~400
variables of a micro model that dominates the time to trace a training step
and adds launch overhead to every step. ``ResourceApplyAdam`` does the same
update in one op. The maths is Keras's: ``m ← β₁m + (1−β₁)g``,
``v ← β₂v + (1−β₂)g²``, ``w ← w − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε)``.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="skmld")
class FusedAdam(keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` whose update is one fused TensorFlow op per variable.

    Falls back to Keras's update for ``amsgrad`` and for other backends.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras sums the replicas' gradients with ``ReplicaContext.all_reduce``,
        # which wraps the sum in ``tf.custom_gradient``. Inside a ``tf.function``
        # that registers a gradient closure in a process-wide registry, so every
        # traced train step and its graph stay alive: about 80 MiB per fit of a
        # tiny model, for the life of the process (tensorflow/tensorflow#62854).
        # Nothing differentiates through an update, so sum with a plain merge
        # call, and not at all with one replica.
        grads_and_vars = list(grads_and_vars)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return grads_and_vars
        present = [i for i, (g, _) in enumerate(grads_and_vars) if g is not None]
        summed = context.merge_call(_sum_over_replicas, args=tuple(grads_and_vars[i][0] for i in present))
        for i, g in zip(present, summed):
            grads_and_vars[i] = (g, grads_and_vars[i][1])
        return grads_and_vars

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The bias-correction powers are shared by all variables: compute them once.
        t = tf.cast(self.iterations + 1, tf.float32)
        self._powers = (tf.pow(tf.cast(self.beta_1, tf.float32), t), tf.pow(tf.cast(self.beta_2, tf.float32), t))
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow" or variable.dtype != tf.float32:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        beta_1_power, beta_2_power = self._powers
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.value.handle,
            v=v.value.handle,
            beta1_power=beta_1_power,
            beta2_power=beta_2_power,
            lr=tf.cast(learning_rate, tf.float32),
            beta1=tf.cast(self.beta_1, tf.float32),
            beta2=tf.cast(self.beta_2, tf.float32),
            epsilon=tf.cast(self.epsilon, tf.float32),
            grad=tf.cast(gradient, tf.float32),
        )


def _sum_over_replicas(strategy, *grads):
    return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, [(g, g) for g in grads])
