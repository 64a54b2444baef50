"""The server's view of the model: fresh seeded weights and test accuracy.

Both reuse one Keras model per process (built once, weights set per call).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .config import HLConfig
from .data import load_test_set, one_hot
from .model import fresh_weights, shared_trainer

EVALUATION_BATCH = 1000  # accuracy does not depend on it; larger is faster


class TestSetEvaluator:
    """Accuracy of a model on the global test set (one Keras model, reused)."""

    __test__ = False  # a name pytest would otherwise try to collect

    def __init__(self, config: HLConfig) -> None:
        dataset = load_test_set(config.dataset)
        self.trainer = shared_trainer(dataset.input_shape, dataset.num_classes,
                                      config.learning_rate)
        self.x = dataset.x_test
        self.y = one_hot(dataset.y_test, dataset.num_classes)

    def __call__(self, arrays: ArrayRecord) -> float:
        """Test accuracy of ``arrays``."""
        self.trainer.model.set_weights(arrays.to_numpy_ndarrays())
        return self.trainer.accuracy(self.x, self.y, EVALUATION_BATCH)


def model_factory(config: HLConfig) -> Callable[[int], ArrayRecord]:
    """Fresh seeded initial model for each episode."""
    dataset = load_test_set(config.dataset)
    model = shared_trainer(dataset.input_shape, dataset.num_classes,
                           config.learning_rate).model  # the evaluator's model

    def new_model(episode: int) -> ArrayRecord:
        seed = int(np.random.SeedSequence([config.seed, episode, 0]).generate_state(1)[0])
        return ArrayRecord(fresh_weights(model, seed))

    return new_model
