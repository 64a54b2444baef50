"""The project's ClientApp: the task's model and partition, through
:mod:`hl_flower.node`.

The node learns its partition from ``context.node_config`` (set by the
simulation engine, or by ``flower-supernode --node-config``) and the run
settings from the message, so the same ClientApp serves simulation and
deployment. Its copy of the policy lives in ``Context.state`` with a version.
"""

from __future__ import annotations

import dataclasses
import functools

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from . import (
    task,
    tf_setup,  # noqa: F401  (quiet TF before import)
)
from .config import HLConfig
from .data import Partition, load_partition
from .messages import HL_CONFIG
from .model import LocalTrainer
from .node import choose_reply, identify_reply, run_settings, train_reply

app = ClientApp()


def node_identity(context: Context) -> tuple[int, int]:
    """(partition id, number of partitions) from the node's config."""
    try:
        return (int(context.node_config["partition-id"]),
                int(context.node_config["num-partitions"]))
    except KeyError:
        raise ValueError("this SuperNode has no partition: start it with "
                         "--node-config 'partition-id=<n> num-partitions=<N>'"
                         ) from None


def node_partition(config: HLConfig, node: int) -> Partition:
    """This node's data: the task's own ``load_partition``, else its slice of
    the task's training set (loaded once per process, task and node)."""
    return _node_partition(task.task_config(config), config.num_nodes, config.main_samples,
                           config.other_samples, config.partition, config.seed,
                           config.partition_seed, node)


@functools.lru_cache(maxsize=128)  # ~1.5 MB each on mnist-5k
def _node_partition(settings: HLConfig, num_nodes: int, main: int, other: int,
                    partition: str, seed: int, partition_seed: int, node: int) -> Partition:
    config = dataclasses.replace(settings, num_nodes=num_nodes)
    if task.has_own_partitions(config):
        return Partition(*task.own_partition(config, node))
    return load_partition(task.training_set(settings), node, num_nodes, main, other,
                          partition, seed, partition_seed)


def node_trainer(config: HLConfig, data: Partition) -> LocalTrainer:
    """The process's trainer for this task and the node's kind of input."""
    return task.shared_trainer(config, data.x)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train one epoch on the global model; if asked, choose the next node."""
    config = run_settings(message)
    node, _ = node_identity(context)
    data = node_partition(config, node)
    return train_reply(message, context, node_trainer(config, data), data.x, data.y, node)


@app.query("identify")
def identify(message: Message, context: Context) -> Message:
    """Tell the server which partition this node serves; if the server sent
    the run settings, load this node's data and trace the training step now,
    so the first HL step does not pay for them."""
    node, num_partitions = node_identity(context)
    if HL_CONFIG in message.content.config_records:
        config = run_settings(message)
        if num_partitions == config.num_nodes and 0 <= node < num_partitions:
            node_trainer(config, node_partition(config, node)).warm_up()
    return identify_reply(message, context, node, num_partitions)


@app.query("choose")
def choose(message: Message, context: Context) -> Message:
    """k > 1: choose the next nodes for an observation the server assembled."""
    return choose_reply(message, context)
