"""The server's view of the model: fresh seeded weights and test accuracy.

Both use the task's one model per process (built once, weights set per call).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .config import HLConfig
from .task import initial_weights, shared_trainer, test_set

EVALUATION_BATCH = 1000  # accuracy does not depend on it; larger is faster


class TestSetEvaluator:
    """Accuracy of a model on the global test set (one Keras model, reused)."""

    __test__ = False  # a name pytest would otherwise try to collect

    def __init__(self, config: HLConfig) -> None:
        dataset = test_set(config)
        self.trainer = shared_trainer(config, dataset.x_test)
        self.x, self.y = dataset.x_test, dataset.y_test

    def __call__(self, arrays: ArrayRecord) -> float:
        """Test accuracy of ``arrays``."""
        self.trainer.model.set_weights(arrays.to_numpy_ndarrays())
        return self.trainer.accuracy(self.x, self.y, EVALUATION_BATCH)


def model_factory(config: HLConfig) -> Callable[[int], ArrayRecord]:
    """Fresh seeded initial model for each episode (the task's own
    initialisers; see :func:`hl_flower.task.initial_weights`)."""

    sample = test_set(config).x_test[:1]

    def new_model(episode: int) -> ArrayRecord:
        seed = int(np.random.SeedSequence([config.seed, episode, 0]).generate_state(1)[0])
        return ArrayRecord(initial_weights(config, seed, sample))

    return new_model
