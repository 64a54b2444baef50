"""The trainer of any compiled Keras classifier (hl_flower.model), on the
reference CNN."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hl_flower.model import LocalTrainer, optimizer_state, set_optimizer_state
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


# --- FedProx's proximal term (Li et al., MLSys 2020, eq. 2) ------------------

def _sgd_trainer(learning_rate: float) -> LocalTrainer:
    """A softmax layer trained by plain SGD: an update is -learning_rate x gradient."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss="sparse_categorical_crossentropy")
    return LocalTrainer(model, np.zeros((1, 4), np.float32))


def _trained_from(trainer: LocalTrainer, start: list[np.ndarray], epochs: int,
                  mu: float) -> list[np.ndarray]:
    x = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12, dtype=np.int64) % 3
    trainer.model.set_weights(start)
    set_optimizer_state(trainer.model, None)
    trainer.fit_epochs(x, y, epochs, len(x), np.random.default_rng(0), proximal_mu=mu)
    return trainer.model.get_weights()


def test_proximal_gradient_is_mu_times_the_distance_from_the_received_weights() -> None:
    # Full-batch SGD: the first step starts at the anchor w0 (no pull), so it
    # reaches w1 with or without the term; the second step differs by
    # -lr * mu * (w1 - w0), the gradient of (mu / 2) ||w - w0||^2 at w1.
    lr, mu = 0.5, 3.0
    trainer = _sgd_trainer(lr)
    w0 = [w.copy() for w in trainer.model.get_weights()]
    w1 = _trained_from(trainer, w0, 1, 0.0)
    free = _trained_from(trainer, w0, 2, 0.0)
    held = _trained_from(trainer, w0, 2, mu)
    for a, b, start, first in zip(held, free, w0, w1, strict=True):
        assert np.abs(first - start).max() > 1e-3  # the pull is not trivially zero
        np.testing.assert_allclose(a - b, -lr * mu * (first - start), atol=1e-6)


def test_the_objective_gradient_is_the_loss_gradient_plus_mu_times_the_distance() -> None:
    # Away from the anchor, on a model with non-trainable weights (BatchNorm's
    # statistics, which the term leaves out): d/dw [loss + (mu / 2)||w - w0||^2]
    # = d loss / dw + mu (w - w0), and the traced step applies exactly that.
    import tensorflow as tf

    from hl_flower.model import training_loss

    lr, mu = 0.1, 0.7
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="sparse_categorical_crossentropy")
    trainer = LocalTrainer(model, np.zeros((1, 4), np.float32))
    step = trainer._anchor_here(mu)  # w0: the weights now
    anchor = [w.numpy() for w in model.trainable_variables]
    assert len(anchor) < len(model.weights)  # the moving statistics are not anchored
    rng = np.random.default_rng(2)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0, 0.3, variable.shape))
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12, dtype=np.int64) % 3
    loss_fn, _ = training_loss(model)
    with tf.GradientTape(persistent=True) as tape:
        loss = loss_fn(y, model(x, training=True))
        objective = loss + trainer._proximal_term()
    weights = [w.numpy() for w in model.trainable_variables]
    of_loss = tape.gradient(loss, model.trainable_variables)
    of_objective = tape.gradient(objective, model.trainable_variables)
    for total, data, w, w0 in zip(of_objective, of_loss, weights, anchor, strict=True):
        assert np.abs(w - w0).max() > 0.1
        np.testing.assert_allclose(total, data.numpy() + mu * (w - w0), atol=1e-6)
    step(x, y)  # one full-batch SGD step from the same weights
    for after, before, total in zip(model.trainable_variables, weights, of_objective,
                                    strict=True):
        np.testing.assert_allclose(after.numpy(), before - lr * total.numpy(), atol=1e-6)


def test_a_large_mu_keeps_the_weights_near_the_received_model() -> None:
    x, y = _separable()
    distances = {}
    for mu in (0.0, 10.0):
        trainer = _trainer()
        start = [w.copy() for w in trainer.model.get_weights()]
        trainer.fit_epochs(x, y, 3, 16, np.random.default_rng(0), proximal_mu=mu)
        distances[mu] = np.sqrt(sum(np.sum((w - s) ** 2) for w, s in zip(
            trainer.model.get_weights(), start, strict=True)))
    assert distances[10.0] < 0.5 * distances[0.0]


def test_mu_zero_is_the_plain_step_and_mu_changes_need_no_new_trace() -> None:
    trainer = _trainer()
    x, y = _separable(20)
    trainer.fit_epochs(x, y, 1, 8, np.random.default_rng(0), proximal_mu=0.0)
    assert trainer._proximal_step is None  # nothing made, nothing to pay
    for mu in (0.1, 5.0, 0.0, 1.0):
        trainer.fit_epochs(x, y, 1, 8, np.random.default_rng(0), proximal_mu=mu)
    assert trainer._proximal_step.experimental_get_tracing_count() == 1
    assert trainer._train_batch.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("mu", [-0.1, float("nan"), float("inf")])
def test_a_bad_mu_is_refused(mu: float) -> None:
    x, y = _separable(8)
    with pytest.raises(ValueError, match="proximal-mu must be a finite number >= 0"):
        _trainer().fit_epochs(x, y, 1, 8, np.random.default_rng(0), proximal_mu=mu)
