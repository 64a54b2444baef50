"""Local training of any compiled Keras classifier, and its optimizer's state.

:class:`LocalTrainer` runs a node's epochs and the server's test accuracy on
one model per process. The model, its loss and its optimizer come from the
task (:mod:`hl_flower.task`); labels arrive as integers 0..C-1 and are given
to the loss one-hot when it is a (non-sparse) categorical loss.
"""

from __future__ import annotations

import math
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
        self._loss_fn, self._one_hot = training_loss(model)
        self._classes = int(np.asarray(model(sample[:1], training=False)).shape[-1])
        self._blank = np.zeros((2, *sample.shape[1:]), sample.dtype)  # 2: no broadcasting
        self._spec = (tf.TensorSpec((None, *sample.shape[1:]), tf.as_dtype(sample.dtype)),
                      tf.TensorSpec((None,), tf.int64))

        @tf.function(input_signature=self._spec)
        def count_correct(x, y):
            predicted = tf.argmax(model(x, training=False), axis=1)
            return tf.reduce_sum(tf.cast(predicted == y, tf.int64))

        self._train_batch = self._traced_step(proximal=False)
        self._count_correct = count_correct
        self._warm = False
        # FedProx's term, made on first use with mu > 0: anchor w0 and mu as
        # variables, so each local training sets them without a new trace
        self._proximal_step: Callable | None = None
        self._anchor: list | None = None
        self._mu: object | None = None

    def _traced_step(self, proximal: bool) -> Callable:
        """One traced training step on a batch; returns the batch's loss (the
        data loss plus the model's own regularisation losses). With
        ``proximal`` the gradient is also taken of :meth:`_proximal_term`."""
        import tensorflow as tf

        model, loss_fn, one_hot, classes = (self.model, self._loss_fn, self._one_hot,
                                            self._classes)

        @tf.function(input_signature=self._spec)
        def train_batch(x, y):
            target = tf.one_hot(y, classes, dtype=tf.float32) if one_hot else y
            with tf.GradientTape() as tape:
                loss = loss_fn(target, model(x, training=True))
                if model.losses:  # kernel regularisers and the like
                    loss = loss + tf.add_n(model.losses)
                objective = loss
                if proximal:
                    objective = loss + tf.cast(self._proximal_term(), loss.dtype)
            grads = tape.gradient(objective, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables,
                                                strict=True))
            return loss

        return train_batch

    def _proximal_term(self):  # -> tf.Tensor, a float32 scalar
        """FedProx's proximal term (mu / 2) * ||w - w0||^2 over the trainable
        weights w and the anchor w0 (Li et al., "Federated Optimization in
        Heterogeneous Networks", MLSys 2020, eq. 2); its gradient is
        mu * (w - w0)."""
        import tensorflow as tf

        squares = [tf.cast(tf.reduce_sum(tf.square(w - anchor)), tf.float32)
                   for w, anchor in zip(self.model.trainable_variables, self._anchor,
                                        strict=True)]
        return 0.5 * self._mu * tf.add_n(squares)

    def _anchor_here(self, mu: float) -> Callable:
        """Anchor the proximal term at the current trainable weights with
        weight ``mu``; returns the step that applies it."""
        import tensorflow as tf

        weights = [w.numpy() for w in self.model.trainable_variables]
        if self._proximal_step is None:
            self._anchor = [tf.Variable(w, trainable=False) for w in weights]
            self._mu = tf.Variable(mu, dtype=tf.float32, trainable=False)
            self._proximal_step = self._traced_step(proximal=True)
        else:
            for anchor, w in zip(self._anchor, weights, strict=True):
                anchor.assign(w)
            self._mu.assign(mu)
        return self._proximal_step

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
                   rng: np.random.Generator, proximal_mu: float = 0.0) -> float:
        """Train ``epochs`` shuffled epochs on samples ``x`` (n, ...) and
        integer labels ``y`` (n,); returns the last epoch's mean loss. The
        order and any random layers (Dropout) draw from ``rng`` alone, so a
        training is the same in any process, whatever ran there before.

        With ``proximal_mu`` = mu > 0 each batch's loss also gets FedProx's
        proximal term (mu / 2) * ||w - w0||^2, w0 being the trainable weights
        when the call starts (the model the node received), which keeps the
        local model near it (Li et al., MLSys 2020, eq. 2); the returned loss
        leaves the term out. mu = 0 runs the very same step as without it.
        Raises ValueError for a negative or non-finite ``proximal_mu``.
        """
        if not 0.0 <= proximal_mu < math.inf:
            raise ValueError(f"proximal-mu must be a finite number >= 0, got {proximal_mu}")
        step = self._anchor_here(proximal_mu) if proximal_mu > 0 else self._train_batch
        self._reseed_random_layers(rng)
        mean_loss = 0.0
        for _ in range(epochs):
            order = rng.permutation(len(x))
            losses, sizes = [], []
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                losses.append(float(step(x[batch], y[batch])))
                self._warm = self._warm or step is self._train_batch
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
