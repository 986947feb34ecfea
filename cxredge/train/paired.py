"""The int8-aware training step: each sample's float cut and int8 cut go through the same tail.

loss = CE(y, p_float) + CE(y, p_int8) + consistency * (KL(p_float || p_int8) + KL(p_int8 || p_float))

The two cross-entropies teach the head to classify both kinds of features; the symmetric KL term pulls
the two answers together, which is what the int8 model's agreement with the float model measures.
Measured on chest_xray_4class (fc head, test split, see docs/quantization.md): consistency 0 ->
93.8% agreement, 1 -> 94.5%, 4 -> 96.7% (with 2 points less accuracy). The logged "loss" stays the
float-feature cross-entropy, so it reads like val_loss; validation and early stopping use float
features only (the float model is what the user ships as the reference).
"""
from __future__ import annotations

from cxredge.keras import keras, tf

EPS = 1e-7


def symmetric_kl(p: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
    """Per-sample KL(p || q) + KL(q || p) of two probability batches (N, C)."""
    lp, lq = tf.math.log(p + EPS), tf.math.log(q + EPS)
    return tf.reduce_sum((p - q) * (lp - lq), axis=-1)


class PairedTail(keras.Model):
    """Wraps a tail model (weights shared); trains on ((float_cut, int8_cut), y, w) batches and
    evaluates / predicts on float cuts like the tail itself."""

    def __init__(self, tail: keras.Model, consistency: float, label_smoothing: float):
        super().__init__(name=f"{tail.name}_int8_aware")
        self.tail = tail
        self.consistency = float(consistency)
        self._ce = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing,
                                                        reduction=keras.losses.Reduction.NONE)

    def call(self, inputs, training=False):
        if isinstance(inputs, (list, tuple)):  # Keras builds the model on a training pair: the float side
            inputs = inputs[0]
        return self.tail(inputs, training=training)

    def _mean(self, per_sample: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        # what Keras does for the compiled loss: sum over the replica's batch / its size / replicas
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        n = tf.cast(tf.shape(per_sample)[0], per_sample.dtype)
        return tf.reduce_sum(per_sample * tf.cast(weights, per_sample.dtype)) / n / replicas

    def train_step(self, data):
        (float_cut, int8_cut), y, w = data
        with tf.GradientTape() as tape:
            p_float = self.tail(float_cut, training=True)
            p_int8 = self.tail(int8_cut, training=True)
            loss = self.compiled_loss(y, p_float, w, regularization_losses=self.losses)
            loss += self._mean(self._ce(y, p_int8), w)
            if self.consistency:
                loss += self.consistency * self._mean(symmetric_kl(p_float, p_int8), w)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self.compiled_metrics.update_state(y, p_float, w)
        return {m.name: m.result() for m in self.metrics}
