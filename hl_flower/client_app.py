"""What runs on a node: train the travelling model, then choose who gets it.

The node learns its partition from ``context.node_config`` (set by the
simulation engine, or by ``flower-supernode --node-config``) and the run
settings from the message, so the same ClientApp serves simulation and
deployment. Its copy of the policy lives in ``Context.state`` with a version.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from . import (
    task,
    tf_setup,  # noqa: F401  (quiet TF before import)
)
from .config import HLConfig, from_flat
from .data import Partition, load_partition
from .dqn import choose_nodes, q_values
from .messages import (
    ARRAYS,
    CONTEXT,
    HL_CONFIG,
    METRICS,
    POLICY,
    STATE_OPTIMIZER,
    STATE_OPTIMIZER_EPISODE,
    STATE_POLICY,
    STATE_POLICY_VERSION,
    STEP,
    STREAM_EXPLORE,
    STREAM_FIT,
    step_seed,
)
from .model import LocalTrainer, optimizer_state, set_optimizer_state
from .observation import flatten_weights, reference_observation
from .progress_observation import progress_observation, ranks_to_nodes, update_size

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


def _run_settings(message: Message) -> HLConfig:
    return from_flat(dict(message.content[HL_CONFIG]))


def current_policy(message: Message, context: Context, step: ConfigRecord) -> list:
    """The policy weights the step names: from the message (kept in the node's
    state if the server says so), else the copy in state."""
    version = int(step["policy-version"])
    if POLICY in message.content.array_records:
        if not bool(step.get("keep-policy", True)):  # many nodes: no copy per node
            return message.content[POLICY].to_numpy_ndarrays()
        context.state[STATE_POLICY] = message.content[POLICY]
        context.state[STATE_POLICY_VERSION] = ConfigRecord({"version": version})
    held = held_policy_version(context)
    if held != version:
        raise ValueError(f"node holds policy version {held}, the server "
                         f"expects {version} and sent no policy")
    return context.state[STATE_POLICY].to_numpy_ndarrays()


def held_policy_version(context: Context) -> int:
    """Version of the policy this node keeps (0 = none)."""
    if STATE_POLICY_VERSION not in context.state:
        return 0
    return int(context.state[STATE_POLICY_VERSION]["version"])


def decide(policy: list, observation: np.ndarray, step: ConfigRecord,
           config: HLConfig, order: list[int] | None = None) -> list[int]:
    """Epsilon-greedy choice of the next node(s) with this node's policy;
    with relative actions, ``order`` maps the chosen ranks to node ids."""
    rng = np.random.default_rng(step_seed(config.seed, int(step["episode"]),
                                          int(step["step"]), STREAM_EXPLORE))
    q = q_values(policy, observation[None, :])[0]
    chosen = choose_nodes(q, config.k, float(step["epsilon"]), rng)
    if config.actions == "relative":
        if order is None or sorted(order) != list(range(config.num_nodes)):
            raise ValueError("relative actions need the server's node order; "
                             "it sent none or a bad one")
        return ranks_to_nodes(chosen, order)
    return chosen


def _fit_local(trainer: LocalTrainer, data: Partition, config: HLConfig,
               context: Context, step: ConfigRecord, node: int) -> float:
    """One local training run; Adam's state persists per node within an
    episode (told apart by the server's ``episode-key``, unique per episode
    even when several runs in one Flower run reuse episode numbers)."""
    model = trainer.model
    episode, key = int(step["episode"]), int(step["episode-key"])
    if (STATE_OPTIMIZER in context.state
            and int(context.state[STATE_OPTIMIZER_EPISODE]["episode"]) == key):
        set_optimizer_state(model, context.state[STATE_OPTIMIZER].to_numpy_ndarrays())
    else:
        set_optimizer_state(model, None)
    rng = np.random.default_rng(step_seed(config.seed, episode, int(step["step"]),
                                          STREAM_FIT) + [node])
    loss = trainer.fit_epochs(data.x, data.y, config.local_epochs, config.batch_size, rng)
    context.state[STATE_OPTIMIZER] = ArrayRecord(optimizer_state(model))
    context.state[STATE_OPTIMIZER_EPISODE] = ConfigRecord({"episode": key})
    return loss


def node_observation(message: Message, config: HLConfig, node: int,
                     received: list, trained: list) -> np.ndarray:
    """The DQN's input after this node trained: the reference PCA, or the
    server's ``progress`` context plus this node's update size."""
    received_flat, trained_flat = flatten_weights(received), flatten_weights(trained)
    if config.observation == "progress":
        if CONTEXT not in message.content.config_records:
            raise ValueError("the progress observation needs the server's context; "
                             "the server sent none")
        return progress_observation(np.asarray(message.content[CONTEXT]["features"]),
                                    update_size(received_flat, trained_flat))
    return reference_observation(received_flat, {node: trained_flat},
                                 config.num_nodes, config.pca_components)


def _order(message: Message, record: str) -> list[int] | None:
    """The node order the server sent in ``record`` (relative actions)."""
    if record not in message.content or "order" not in message.content[record]:
        return None
    return [int(n) for n in message.content[record]["order"]]


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train one epoch on the global model; if asked, choose the next node."""
    config = _run_settings(message)
    node, num_partitions = node_identity(context)
    step = message.content[STEP]
    started = time.perf_counter()
    data = node_partition(config, node)
    trainer = node_trainer(config, data)
    global_weights = message.content[ARRAYS].to_numpy_ndarrays()
    trainer.model.set_weights(global_weights)
    loss = _fit_local(trainer, data, config, context, step, node)
    trained = trainer.model.get_weights()
    trained_at = time.perf_counter()
    metrics = MetricRecord({
        "train-loss": loss, "num-examples": len(data.y), "partition-id": node,
        "policy-version": held_policy_version(context),
        "time-train": trained_at - started})
    if bool(step["decide"]):
        observation = node_observation(message, config, node, global_weights, trained)
        policy = current_policy(message, context, step)
        metrics["next-nodes"] = decide(policy, observation, step, config,
                                       _order(message, CONTEXT))
        metrics["observation"] = observation.astype(float).tolist()
        metrics["policy-version"] = held_policy_version(context)
    metrics["time-observe"] = time.perf_counter() - trained_at
    content = RecordDict({ARRAYS: ArrayRecord(trained), METRICS: metrics})
    return Message(content, reply_to=message)


@app.query("identify")
def identify(message: Message, context: Context) -> Message:
    """Tell the server which partition this node serves; if the server sent
    the run settings, load this node's data and trace the training step now,
    so the first HL step does not pay for them."""
    node, num_partitions = node_identity(context)
    if HL_CONFIG in message.content.config_records:
        config = _run_settings(message)
        if num_partitions == config.num_nodes and 0 <= node < num_partitions:
            node_trainer(config, node_partition(config, node)).warm_up()
    metrics = MetricRecord({"partition-id": node, "num-partitions": num_partitions,
                            "policy-version": held_policy_version(context)})
    return Message(RecordDict({METRICS: metrics}), reply_to=message)


@app.query("choose")
def choose(message: Message, context: Context) -> Message:
    """k > 1: choose the next nodes for an observation the server assembled."""
    config = _run_settings(message)
    step = message.content[STEP]
    observation = np.asarray(message.content[METRICS]["observation"], np.float32)
    policy = current_policy(message, context, step)
    metrics = MetricRecord({"next-nodes": decide(policy, observation, step, config,
                                                 _order(message, METRICS)),
                            "policy-version": held_policy_version(context)})
    return Message(RecordDict({METRICS: metrics}), reply_to=message)
