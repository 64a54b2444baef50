"""The node model: the reference CNN, built once per process and reused.

Reference (28x28 inputs): Conv2D(20, 5x5, relu) -> MaxPool 2 ->
Conv2D(50, 5x5, relu) -> MaxPool 2 -> Flatten -> Dense(C, softmax), Adam 1e-3,
categorical cross-entropy, 33,580 parameters for MNIST. Small inputs such as
scikit-learn's 8x8 digits are too small for two unpadded 5x5 convolutions, so
they use ``same`` padding (8x8 -> 4x4 -> 2x2), keeping layers and widths.
"""

from __future__ import annotations

import functools

import keras  # noqa: E402
import numpy as np

from . import tf_setup  # noqa: F401  (quiet TF before import)

KERNEL = 5
POOL = 2


def conv_padding(side: int) -> str:
    """``valid`` when both unpadded convolutions fit the image, else ``same``."""
    after_first = (side - KERNEL + 1) // POOL
    return "valid" if after_first - KERNEL + 1 >= POOL else "same"


def build_node_model(input_shape: tuple[int, ...], num_classes: int,
                     learning_rate: float = 1e-3) -> keras.Model:
    """Build and compile the reference CNN for the given input shape."""
    padding = conv_padding(int(input_shape[0]))
    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(20, KERNEL, activation="relu", padding=padding),
        keras.layers.MaxPooling2D(POOL),
        keras.layers.Conv2D(50, KERNEL, activation="relu", padding=padding),
        keras.layers.MaxPooling2D(POOL),
        keras.layers.Flatten(),
        keras.layers.Dense(num_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    # Create the optimizer's slots now so their state can be saved and reset.
    model.optimizer.build(model.trainable_variables)
    return model


@functools.lru_cache(maxsize=4)
def shared_node_model(input_shape: tuple[int, ...], num_classes: int,
                      learning_rate: float) -> keras.Model:
    """The process's one node model for this shape (built on first use)."""
    return build_node_model(input_shape, num_classes, learning_rate)


def fresh_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    """Newly initialised weights for ``model``'s layers, reproducible from ``seed``.

    Drawn with seeded initialisers instead of building a new model.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for layer in model.layers:
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if variable.name.endswith("bias") or len(shape) == 1:
                weights.append(np.zeros(shape, np.float32))
            else:
                weights.append(_glorot_uniform(shape, rng))
    return weights


def _glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Keras' default kernel initialiser, drawn from a numpy generator."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


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

    Same semantics as ``model.fit(shuffle=True)`` / ``model.evaluate`` (Adam
    on the mean batch loss, the last batch smaller), without Keras' per-call
    set-up of data adapters and callbacks, which costs as much as the
    training itself on a 500-sample node. Each batch is one traced call.
    """

    def __init__(self, model: keras.Model) -> None:
        import tensorflow as tf

        self.model = model
        loss_fn = keras.losses.CategoricalCrossentropy()
        shape = (None, *model.input_shape[1:])
        classes = model.output_shape[-1]
        spec = (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((None, classes), tf.float32))

        @tf.function(input_signature=spec)
        def train_batch(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables,
                                                strict=True))
            return loss

        @tf.function(input_signature=spec)
        def count_correct(x, y):
            predicted = tf.argmax(model(x, training=False), axis=1)
            return tf.reduce_sum(tf.cast(predicted == tf.argmax(y, axis=1), tf.int64))

        self._train_batch = train_batch
        self._count_correct = count_correct
        self._warm = False

    def warm_up(self) -> None:
        """Trace the training step now (one blank sample), so the first real
        step does not pay for it; weights are kept and Adam's slots zeroed
        (every local training sets both anyway)."""
        if self._warm:
            return
        weights = self.model.get_weights()
        self._train_batch(np.zeros((1, *self.model.input_shape[1:]), np.float32),
                          np.zeros((1, self.model.output_shape[-1]), np.float32))
        self.model.set_weights(weights)
        set_optimizer_state(self.model, None)
        self._warm = True

    def fit_epochs(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                   rng: np.random.Generator) -> float:
        """Train ``epochs`` shuffled epochs; returns the last epoch's mean loss."""
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

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
        """Share of samples whose most probable class is the label."""
        correct = sum(int(self._count_correct(x[i:i + batch_size], y[i:i + batch_size]))
                      for i in range(0, len(x), batch_size))
        return correct / len(x)


@functools.lru_cache(maxsize=4)
def shared_trainer(input_shape: tuple[int, ...], num_classes: int,
                   learning_rate: float) -> LocalTrainer:
    """The process's one trainer (and model) for this shape."""
    return LocalTrainer(shared_node_model(input_shape, num_classes, learning_rate))
