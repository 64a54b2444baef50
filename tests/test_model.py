"""The trainer of any compiled Keras classifier (hl_flower.model), on the
reference CNN."""

from __future__ import annotations

import numpy as np

from hl_flower.model import LocalTrainer, optimizer_state
from hl_flower.reference_task import build_node_model

SHAPE, CLASSES = (8, 8, 1), 3


def _trainer() -> LocalTrainer:
    return LocalTrainer(build_node_model(SHAPE, CLASSES, 1e-2), np.zeros((1, *SHAPE), np.float32))


def _separable(count: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Three classes told apart by which third of the image is bright."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % CLASSES
    x = rng.uniform(0, 0.2, (count, *SHAPE)).astype(np.float32)
    for i, label in enumerate(labels):
        x[i, :, label * 2:label * 2 + 3] += 0.8
    return x, labels.astype(np.int64)


def test_local_epochs_raise_accuracy() -> None:
    trainer = _trainer()
    x, y = _separable()
    before = trainer.accuracy(x, y)
    trainer.fit_epochs(x, y, 5, 16, np.random.default_rng(0))
    assert trainer.accuracy(x, y) > max(before, 0.9)


def test_warm_up_traces_once_and_changes_nothing() -> None:
    trainer = _trainer()
    weights = [w.copy() for w in trainer.model.get_weights()]
    trainer.warm_up()
    assert trainer._train_batch.experimental_get_tracing_count() == 1
    assert all(np.array_equal(a, b) for a, b in
               zip(weights, trainer.model.get_weights(), strict=True))
    assert all(not np.any(slot) for slot in optimizer_state(trainer.model))
    x, y = _separable(20)
    trainer.fit_epochs(x, y, 1, 8, np.random.default_rng(0))  # no second trace
    trainer.warm_up()  # already warm: no-op
    assert trainer._train_batch.experimental_get_tracing_count() == 1
    assert any(np.any(slot) for slot in optimizer_state(trainer.model))
