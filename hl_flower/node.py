"""HL on a node, as functions any Flower ``ClientApp`` can call.

The project's own ClientApp (:mod:`hl_flower.client_app`) is three lines
around these; a Flower app of your own adds HL the same way, with its own
model and data::

    from flwr.clientapp import ClientApp
    from hl_flower.node import choose_reply, identify_reply, train_reply, trainer_for

    app = ClientApp()

    @functools.cache                              # one model per process
    def my_model():
        return build_my_keras_model()

    @app.train()
    def train(message, context):
        x, y = my_data(context)                   # (n, ...) inputs, (n,) labels 0..C-1
        trainer = trainer_for(my_model(), x)      # the same model object every time
        return train_reply(message, context, trainer, x, y,
                           partition_id=int(context.node_config["partition-id"]))

    @app.query("identify")
    def identify(message, context):
        return identify_reply(message, context,
                              int(context.node_config["partition-id"]),
                              int(context.node_config["num-partitions"]))

    @app.query("choose")                          # only used with k > 1
    def choose(message, context):
        return choose_reply(message, context)

The model must be the one the ServerApp evaluates (same weights, same order).
Its loss and optimizer are the node's own: the run config's ``learning-rate``
reaches a model only through ``trainer_for``'s ``learning_rate``.
The node's DQN copy and Adam's moments live in ``Context.state``.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .config import HLConfig, from_flat
from .dqn import choose_nodes, q_values
from .messages import (
    ARRAYS,
    CONTEXT,
    HL_CONFIG,
    METRICS,
    POLICY,
    PROXIMAL_MU,
    STATE_OPTIMIZER,
    STATE_OPTIMIZER_EPISODE,
    STATE_POLICY,
    STATE_POLICY_VERSION,
    STEP,
    STREAM_EXPLORE,
    STREAM_FIT,
    UNPACKS,
    step_seed,
)
from .model import LocalTrainer, optimizer_state, set_optimizer_state
from .observation import flatten_weights, reference_observation
from .packing import FORMAT as PACK_FORMAT
from .packing import open_message, packed
from .progress_observation import progress_observation, ranks_to_nodes, update_size
from .task import compile_classifier, needs_compiling


def train_reply(message: Message, context: Context, trainer: LocalTrainer,
                x: np.ndarray, y: np.ndarray, partition_id: int) -> Message:
    """Answer an HL train message: train ``trainer.model`` from the received
    weights on samples ``x`` (n, ...) and integer labels ``y`` (n,) for the
    run's local epochs; if the server asks, compute the observation and
    choose the next node(s) with this node's copy of the policy.

    Returns the reply: the trained weights and metrics (``train-loss``,
    ``num-examples``, ``partition-id``, ``policy-version``, ``time-train`` and
    ``time-observe`` in seconds, and when deciding ``next-nodes`` and
    ``observation``). Raises ValueError when the server's message does not
    fit what the node holds (a stale policy it did not send, no context for
    the progress observation).
    """
    was_packed = open_message(message)
    config = run_settings(message)
    step = message.content[STEP]
    started = time.perf_counter()
    global_weights = message.content[ARRAYS].to_numpy_ndarrays()
    trainer.model.set_weights(global_weights)
    loss = fit_local(trainer, x, y, config, context, step, partition_id)
    trained = trainer.model.get_weights()
    trained_at = time.perf_counter()
    metrics = MetricRecord({
        "train-loss": loss, "num-examples": len(y), "partition-id": partition_id,
        "policy-version": held_policy_version(context),
        "time-train": trained_at - started})
    if bool(step["decide"]):
        observation = node_observation(message, config, partition_id, global_weights,
                                       trained)
        policy = current_policy(message, context, step)
        metrics["next-nodes"] = decide(policy, observation, step, config,
                                       _order(message, CONTEXT))
        metrics["observation"] = observation.astype(float).tolist()
        metrics["policy-version"] = held_policy_version(context)
    metrics["time-observe"] = time.perf_counter() - trained_at
    content = RecordDict({ARRAYS: ArrayRecord(trained), METRICS: metrics})
    return Message(packed(content) if was_packed else content, reply_to=message)


def identify_reply(message: Message, context: Context, partition_id: int,
                   num_partitions: int) -> Message:
    """Answer the server's ``identify`` query: which partition this node
    serves, which policy version it holds, and that it takes models packed
    as one array (:mod:`hl_flower.packing`)."""
    metrics = MetricRecord({"partition-id": partition_id, "num-partitions": num_partitions,
                            "policy-version": held_policy_version(context),
                            UNPACKS: PACK_FORMAT})
    return Message(RecordDict({METRICS: metrics}), reply_to=message)


def choose_reply(message: Message, context: Context) -> Message:
    """Answer the ``choose`` query (k > 1): the next nodes for the
    observation the server assembled, by this node's copy of the policy."""
    config = run_settings(message)
    step = message.content[STEP]
    observation = np.asarray(message.content[METRICS]["observation"], np.float32)
    policy = current_policy(message, context, step)
    metrics = MetricRecord({"next-nodes": decide(policy, observation, step, config,
                                                 _order(message, METRICS)),
                            "policy-version": held_policy_version(context)})
    return Message(RecordDict({METRICS: metrics}), reply_to=message)


_TRAINERS: dict[int, LocalTrainer] = {}


def trainer_for(model: keras.Model, sample: np.ndarray,
                learning_rate: float = 1e-3) -> LocalTrainer:
    """The process's trainer for ``model`` (one per model object), given
    inputs ``sample`` (n, ...) like the node's data. Build the model once per
    process and pass the same object every time (a new object gets a new
    trainer and a new trace). An uncompiled model is compiled with sparse
    categorical cross-entropy (on probabilities if its outputs are
    probabilities, else on logits) and Adam at ``learning_rate``; a compiled
    one keeps its loss and optimizer, and then ``learning_rate`` is unused.
    Raises ValueError for a model compiled without one loss."""
    if id(model) not in _TRAINERS:
        if needs_compiling(model):
            compile_classifier(model, np.asarray(model(sample[:16], training=False)),
                               learning_rate)
        model.optimizer.build(model.trainable_variables)
        _TRAINERS[id(model)] = LocalTrainer(model, sample)
    return _TRAINERS[id(model)]


def run_settings(message: Message) -> HLConfig:
    """The run settings the server sent with ``message`` (restoring its
    content first if it came packed, :func:`hl_flower.packing.open_message`)."""
    open_message(message)
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


def fit_local(trainer: LocalTrainer, x: np.ndarray, y: np.ndarray, config: HLConfig,
              context: Context, step: ConfigRecord, node: int) -> float:
    """One local training run; Adam's state persists per node within an
    episode (told apart by the server's ``episode-key``, unique per episode
    even when several runs in one Flower run reuse episode numbers). A
    ``proximal-mu`` in the step config, whoever sent it, adds the proximal
    term anchored at the received model (FedProx)."""
    model = trainer.model
    episode, key = int(step["episode"]), int(step["episode-key"])
    if (STATE_OPTIMIZER in context.state
            and int(context.state[STATE_OPTIMIZER_EPISODE]["episode"]) == key):
        set_optimizer_state(model, context.state[STATE_OPTIMIZER].to_numpy_ndarrays())
    else:
        set_optimizer_state(model, None)
    rng = np.random.default_rng(step_seed(config.seed, episode, int(step["step"]),
                                          STREAM_FIT) + [node])
    loss = trainer.fit_epochs(x, y, config.local_epochs, config.batch_size, rng,
                              proximal_mu=float(step.get(PROXIMAL_MU, 0.0)))
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
