"""`--ema DECAY`: an exponential moving average of a model's weights during finetune phase 2.

The average covers every float weight, BatchNorm moving statistics included (they belong to the
weights they were measured with). Its decay warms up as min(decay, (1 + n) / (10 + n)) after n
updates, so the far-off first weights fade fast in a short schedule. ValMonitor scores the averaged
weights on val after each epoch (`swapped()`), keeps the best, and that is what model.keras holds.
"""
from __future__ import annotations

from contextlib import contextmanager

from cxredge.keras import tf


def effective_decay(decay: float, updates: int) -> float:
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


class WeightEMA:
    def __init__(self, model, decay: float):
        self.decay, self.updates = float(decay), 0
        self.weights = [w for w in model.weights if "float" in str(w.dtype)]
        self.shadow = [tf.Variable(tf.convert_to_tensor(w), trainable=False) for w in self.weights]
        self._rate = tf.Variable(0.0, trainable=False)
        self._step = tf.function(self._average)

    def _average(self):
        for s, w in zip(self.shadow, self.weights):
            s.assign(self._rate * s + (1.0 - self._rate) * tf.convert_to_tensor(w))

    def update(self) -> None:
        """One step of the average (after a training batch)."""
        self.updates += 1
        self._rate.assign(effective_decay(self.decay, self.updates))
        self._step()

    @contextmanager
    def swapped(self):
        """Inside the block the model holds the averaged weights; its own come back after."""
        raw = [tf.identity(tf.convert_to_tensor(w)) for w in self.weights]
        for w, s in zip(self.weights, self.shadow):
            w.assign(s)
        try:
            yield
        finally:
            for w, r in zip(self.weights, raw):
                w.assign(r)
