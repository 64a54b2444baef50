"""The built-in task: the paper's CNN on an image set chosen by ``--dataset``.

Reference (28x28 inputs): Conv2D(20, 5x5, relu) -> MaxPool 2 ->
Conv2D(50, 5x5, relu) -> MaxPool 2 -> Flatten -> Dense(C, softmax), Adam 1e-3,
categorical cross-entropy, 33,580 parameters for MNIST (Sun & Ochiai 2022 and
its reference code). Small inputs such as scikit-learn's 8x8 digits are too
small for two unpadded 5x5 convolutions, so they use ``same`` padding
(8x8 -> 4x4 -> 2x2), keeping layers and widths.

It is one implementation of the task seam (:mod:`hl_flower.task`); nothing
else in the library imports the CNN or the image sets.
"""

from __future__ import annotations

import keras
import numpy as np

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .image_sets import image_shape_and_classes
from .image_sets import load_test_set as test_images
from .image_sets import load_training_set as training_images

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
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    # Create the optimizer's slots now so their state can be saved and reset.
    model.optimizer.build(model.trainable_variables)
    return model


def load_model(dataset: str, learning_rate: float) -> keras.Model:
    """The reference CNN for ``dataset``'s image shape and class count."""
    shape, classes = image_shape_and_classes(dataset)
    return build_node_model(shape, classes, learning_rate)


def load_training_set(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, side, side, 1) in [0, 1] and labels (n,) that nodes partition."""
    images = training_images(dataset)
    return images.x_train, images.y_train


def load_test_set(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The server's test images and labels."""
    images = test_images(dataset)
    return images.x_test, images.y_test


def initial_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    """Fresh weights drawn as Keras' defaults for these layers draw them
    (Glorot-uniform kernels, zero biases), from a numpy generator seeded
    with ``seed``, without building a new model."""
    return fresh_weights(model, seed)


def fresh_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    """Newly initialised weights for ``model``'s layers, reproducible from ``seed``."""
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
