"""HL on tabular data: scikit-learn's breast-cancer set and a small MLP.

569 tumours, 30 measurements each, 2 classes (malignant 0, benign 1). The
set ships inside scikit-learn, so nothing is downloaded. The model is a
Keras MLP with BatchNormalization and Dropout; it is left uncompiled, so
HL-Flower compiles it (sparse categorical cross-entropy, Adam at
--learning-rate).

    python sim.py --task examples/breast_cancer/task.py --nodes 4 \\
        --main-samples 60 --other-samples 30 --goal 0.9
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

TEST_FRACTION = 0.25
SPLIT_SEED = 0  # the same split in every process: the server's and each node's


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised train and test arrays (scaler fitted on the training part)."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return (scaler.transform(x_train).astype(np.float32), y_train,
            scaler.transform(x_test).astype(np.float32), y_test)


def load_model() -> keras.Model:
    """30 inputs -> Dense 32 -> BatchNorm -> ReLU -> Dropout -> Dense 2 (softmax)."""
    return keras.Sequential([
        keras.Input(shape=(30,)),
        keras.layers.Dense(32),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(2, activation="softmax"),
    ])


def load_training_set() -> tuple[np.ndarray, np.ndarray]:
    """426 samples (n, 30) and labels (n,) that HL partitions into nodes."""
    x_train, y_train, _, _ = _split()
    return x_train, y_train


def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """143 held-out samples for the server's test accuracy."""
    _, _, x_test, y_test = _split()
    return x_test, y_test
