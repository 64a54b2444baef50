"""An existing Flower ClientApp that adds HL through :mod:`hl_flower.node`.

It keeps its own model and its own data split (here: every node takes an
equal, stratified share of the training set by its ``partition-id``), as a
Flower app written from Flower's templates would; HL only needs its three
handlers to call ``train_reply``, ``identify_reply`` and ``choose_reply``.
The ServerApp must evaluate the same model, so it is run with this
example's task::

    python sim.py --task examples/breast_cancer/task.py --nodes 4 --goal 0.9 \\
        --client-app examples.breast_cancer.own_client_app:app
"""

from __future__ import annotations

import functools

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from examples.breast_cancer.task import load_model, load_training_set
from hl_flower.node import choose_reply, identify_reply, train_reply, trainer_for

app = ClientApp()


@functools.cache
def node_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """This node's share: every ``num_partitions``-th sample of each class."""
    x, y = load_training_set()
    order = np.argsort(y, kind="stable")[partition_id::num_partitions]
    return x[order], y[order]


@functools.cache
def node_model():  # -> keras.Model, built once per process
    """The model, as the ServerApp's task builds it."""
    return load_model()


def identity(context: Context) -> tuple[int, int]:
    """(partition id, number of partitions) from the SuperNode's config."""
    return (int(context.node_config["partition-id"]),
            int(context.node_config["num-partitions"]))


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train on this node's data; choose the next node when asked."""
    partition_id, num_partitions = identity(context)
    x, y = node_data(partition_id, num_partitions)
    trainer = trainer_for(node_model(), x, learning_rate=0.001)
    return train_reply(message, context, trainer, x, y, partition_id)


@app.query("identify")
def identify(message: Message, context: Context) -> Message:
    """Tell the server which partition this node serves."""
    return identify_reply(message, context, *identity(context))


@app.query("choose")
def choose(message: Message, context: Context) -> Message:
    """k > 1: choose the next nodes for the observation the server sent."""
    return choose_reply(message, context)
