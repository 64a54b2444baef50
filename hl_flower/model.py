"""Local training of any compiled Keras classifier, and its optimizer's state.

:class:`LocalTrainer` runs a node's epochs and the server's test accuracy on
one model per process. The model, its loss and its optimizer come from the
task (:mod:`hl_flower.task`); labels arrive as integers 0..C-1 and are given
to the loss one-hot when it is a (non-sparse) categorical loss.
"""

from __future__ import annotations

from collections.abc import Callable

import keras  # noqa: E402
import numpy as np

from . import tf_setup  # noqa: F401  (quiet TF before import)

ONE_HOT_LOSSES = ("categorical_crossentropy", "categorical_focal_crossentropy",
                  "categorical_hinge", "kl_divergence", "kullback_leibler_divergence")


def training_loss(model: keras.Model) -> tuple[Callable, bool]:
    """The compiled model's loss as ``loss(y, prediction) -> scalar`` and
    whether it wants one-hot labels. Raises ValueError for a model compiled
    without one loss."""
    loss = model.loss
    if isinstance(loss, (list, tuple, dict)) or loss is None:
        raise ValueError("the model must be compiled with one loss for its one output")
    function = keras.losses.get(loss) if isinstance(loss, str) else loss
    name = (loss if isinstance(loss, str) else
            getattr(loss, "name", None) or getattr(loss, "__name__", "")).lower()
    one_hot = name in ONE_HOT_LOSSES or (isinstance(function, keras.losses.Loss)
                                         and type(function).__name__ in (
                                             "CategoricalCrossentropy",
                                             "CategoricalFocalCrossentropy",
                                             "CategoricalHinge", "KLDivergence"))
    if isinstance(function, keras.losses.Loss):
        return function, one_hot

    def mean_loss(y, prediction):
        return keras.ops.mean(function(y, prediction))

    return mean_loss, one_hot


def _optimizer_slots(model: keras.Model) -> list:
    """Optimizer variables that training changes (step count, Adam moments)."""
    return [v for v in model.optimizer.variables if v.name != "learning_rate"]


def optimizer_state(model: keras.Model) -> list[np.ndarray]:
    """The optimizer's step count and Adam moments as arrays."""
    return [np.asarray(v.numpy()) for v in _optimizer_slots(model)]


def set_optimizer_state(model: keras.Model, state: list[np.ndarray] | None) -> None:
    """Restore the optimizer's slots, or zero them (a fresh Adam) if None."""
    for i, variable in enumerate(_optimizer_slots(model)):
        value = np.zeros(variable.shape, variable.dtype) if state is None else state[i]
        variable.assign(value)


class LocalTrainer:
    """Fast local epochs and test accuracy for one compiled model.

    Same semantics as ``model.fit(shuffle=True)`` / ``model.evaluate`` (the
    compiled optimizer on the mean batch loss plus the model's own
    regularisation losses, the last batch smaller), without Keras' per-call
    set-up of data adapters and callbacks, which costs as much as the
    training itself on a 500-sample node. Each batch is one traced call.
    ``sample`` is one or more inputs (n, ...) with the data's shape and dtype.
    Raises ValueError for a model compiled without one loss.
    """

    def __init__(self, model: keras.Model, sample: np.ndarray) -> None:
        import tensorflow as tf

        self.model = model
        loss_fn, one_hot = training_loss(model)
        classes = int(np.asarray(model(sample[:1], training=False)).shape[-1])
        self._blank = np.zeros((2, *sample.shape[1:]), sample.dtype)  # 2: no broadcasting
        spec = (tf.TensorSpec((None, *sample.shape[1:]), tf.as_dtype(sample.dtype)),
                tf.TensorSpec((None,), tf.int64))

        @tf.function(input_signature=spec)
        def train_batch(x, y):
            target = tf.one_hot(y, classes, dtype=tf.float32) if one_hot else y
            with tf.GradientTape() as tape:
                loss = loss_fn(target, model(x, training=True))
                if model.losses:  # kernel regularisers and the like
                    loss = loss + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables,
                                                strict=True))
            return loss

        @tf.function(input_signature=spec)
        def count_correct(x, y):
            predicted = tf.argmax(model(x, training=False), axis=1)
            return tf.reduce_sum(tf.cast(predicted == y, tf.int64))

        self._train_batch = train_batch
        self._count_correct = count_correct
        self._warm = False

    def warm_up(self) -> None:
        """Trace the training step now (two blank samples), so the first real
        step does not pay for it; weights are kept and the optimizer's slots
        zeroed (every local training sets both anyway)."""
        if self._warm:
            return
        weights = self.model.get_weights()
        self._train_batch(self._blank, np.zeros(len(self._blank), np.int64))
        self.model.set_weights(weights)
        set_optimizer_state(self.model, None)
        self._warm = True

    def fit_epochs(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                   rng: np.random.Generator) -> float:
        """Train ``epochs`` shuffled epochs on samples ``x`` (n, ...) and
        integer labels ``y`` (n,); returns the last epoch's mean loss. The
        order and any random layers (Dropout) draw from ``rng`` alone, so a
        training is the same in any process, whatever ran there before."""
        self._reseed_random_layers(rng)
        mean_loss = 0.0
        for _ in range(epochs):
            order = rng.permutation(len(x))
            losses, sizes = [], []
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                losses.append(float(self._train_batch(x[batch], y[batch])))
                self._warm = True
                sizes.append(len(batch))
            mean_loss = float(np.average(losses, weights=sizes))
        return mean_loss

    def _reseed_random_layers(self, rng: np.random.Generator) -> None:
        """Set the state of every Keras seed generator of the model (Dropout's,
        for one) from ``rng``; a model without them draws nothing from it."""
        for variable in self.model.variables:
            if variable.name == "seed_generator_state":
                seed = int(rng.integers(1, 2**31 - 1))
                variable.assign(np.array([seed, 0], dtype=variable.dtype))

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
        """Share of samples ``x`` (n, ...) whose most probable class is their
        integer label in ``y`` (n,)."""
        correct = sum(int(self._count_correct(x[i:i + batch_size], y[i:i + batch_size]))
                      for i in range(0, len(x), batch_size))
        return correct / len(x)
