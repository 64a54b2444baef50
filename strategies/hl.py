"""Homogeneous Learning as a Flower strategy (Message API).

Each HL step is one Flower round whose train message goes to exactly the
node(s) holding the model. The holder trains, computes the observation and
lets its own copy of the DQN choose the next node; this strategy only relays:
it adopts the holder's model (the mean for k > 1), evaluates it, computes the
reward, stores the transition, stops the episode at the goal or the step cap
and trains the DQN between episodes. Like ``FedXgbCyclic`` it trains one node
per round; unlike it, the next node is the holder's decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from hl_flower.config import HLConfig, to_flat
from hl_flower.distance import step_reward
from hl_flower.dqn import DQNAgent, Transition, epsilon_at
from hl_flower.messages import (
    ARRAYS,
    HL_CONFIG,
    METRICS,
    POLICY,
    QUERY_CHOOSE,
    QUERY_IDENTIFY,
    STEP,
    payload_bytes,
)
from hl_flower.observation import flatten_weights, reference_observation


class NodeFailure(RuntimeError):
    """A node replied with an error or did not reply in time."""


@dataclass
class StepResult:
    """What happened in one HL step (one Flower round)."""

    episode: int
    step: int
    holders: list[int]  # partitions that trained this step
    next_nodes: list[int]  # the holder's choice (empty when the episode ended)
    accuracy: float
    reward: float
    hop_cost: float
    bytes_sent: int  # array payloads, both directions
    policy_sent: bool
    train_loss: float
    time_train: float  # on the node: local epoch
    time_observe: float  # on the node: observation and DQN choice
    time_evaluate: float  # on the server: test-set evaluation
    time_step: float  # whole round as the server saw it
    done: bool


@dataclass
class EpisodeResult:
    """Summary of one episode."""

    episode: int
    steps: int
    accuracy: float
    communication_cost: float
    total_reward: float
    epsilon: float
    reached_goal: bool
    bytes_sent: int
    dqn_loss: float | None
    wall_time: float
    path: list[int] = field(default_factory=list)


class HomogeneousLearning(Strategy):
    """Decentralised learning where the holder's DQN picks the next node.

    Parameters
    ----------
    config : HLConfig
        Run settings (goal, step cap, k, starter, DQN settings, seed...).
    agent : DQNAgent
        The server's copy of the DQN: trained between episodes and sent to
        nodes whose copy is stale.
    distance : np.ndarray
        N x N communication distances; a hop's cost is ``distance[a][b]``.
    learn : bool (default: True)
        Store transitions, train the DQN and decay epsilon. False runs the
        policy as it is (with ``epsilon`` fixed, e.g. 0 for greedy).
    epsilon : float, optional
        Fixed exploration rate when ``learn`` is False.
    """

    def __init__(self, config: HLConfig, agent: DQNAgent, distance: np.ndarray,
                 learn: bool = True, epsilon: float | None = None) -> None:
        self.config = config
        self.agent = agent
        self.distance = distance
        self.learn = learn
        self.fixed_epsilon = epsilon
        self.node_ids: dict[int, int] = {}  # partition id -> Flower node id
        self.policy_version = 1
        self.sent_version: dict[int, int] = {}  # node id -> policy version held
        self.selected: list[int] = [config.starter]
        self.step_config = ConfigRecord()
        self.run_settings = ConfigRecord(to_flat(config))
        self.bytes_this_round = 0
        self.policy_sent_this_round = False
        self._previous_global: list[np.ndarray] = []  # k > 1: model before the step
        self._trained_weights: list[list[np.ndarray]] = []  # last step's updates

    # ------------------------------------------------------------------ #
    # Strategy interface
    # ------------------------------------------------------------------ #
    def summary(self) -> None:
        """Log the strategy's settings."""
        cfg = self.config
        log(INFO, "\t├──> Nodes: %d, k=%d, starter=%d", cfg.num_nodes, cfg.k,
            cfg.starter)
        log(INFO, "\t├──> Goal: %.3f within %d steps, %d episodes", cfg.goal,
            cfg.max_steps, cfg.episodes)
        log(INFO, "\t└──> DQN: learn=%s, epsilon=%s", self.learn,
            self.fixed_epsilon if not self.learn else "decaying")

    def configure_train(self, server_round: int, arrays: ArrayRecord,
                        config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """One train message to each selected node; policy only if stale."""
        messages = []
        self.policy_sent_this_round = False
        if not bool(config["decide"]):  # k > 1: the server assembles the observation
            self._previous_global = arrays.to_numpy_ndarrays()
        for partition in self.selected:
            content = RecordDict({ARRAYS: arrays, HL_CONFIG: self.run_settings,
                                  STEP: config})
            if bool(config["decide"]):
                self._attach_policy_if_stale(content, partition)
            messages.append(Message(content, dst_node_id=self.node_ids[partition],
                                    message_type=MessageType.TRAIN))
        self.bytes_this_round = sum(payload_bytes(m.content) for m in messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Adopt the holder's model (mean for k > 1) and pass on its metrics."""
        replies = self._checked(replies, expected=len(self.selected))
        self.bytes_this_round += sum(payload_bytes(m.content) for m in replies)
        by_partition = {int(m.content[METRICS]["partition-id"]): m for m in replies}
        ordered = [by_partition[p] for p in self.selected]
        weights = [m.content[ARRAYS].to_numpy_ndarrays() for m in ordered]
        if len(weights) == 1:
            arrays = ordered[0].content[ARRAYS]
        else:
            arrays = ArrayRecord([np.mean(layer, axis=0) for layer in zip(*weights, strict=True)])
        lead = ordered[0].content[METRICS]
        metrics = MetricRecord({
            "train-loss": float(np.mean([m.content[METRICS]["train-loss"]
                                         for m in ordered])),
            "num-examples": int(sum(m.content[METRICS]["num-examples"]
                                    for m in ordered)),
            "time-train": max(m.content[METRICS]["time-train"] for m in ordered),
            "time-observe": float(lead["time-observe"]),
        })
        if "next-nodes" in lead:
            metrics["next-nodes"] = list(lead["next-nodes"])
            metrics["observation"] = list(lead["observation"])
        for message in ordered:
            self.sent_version[message.metadata.src_node_id] = int(
                message.content[METRICS]["policy-version"])
        self._trained_weights = weights
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """HL evaluates the travelling model centrally: no evaluate messages."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Nothing to aggregate (see ``configure_evaluate``)."""
        return None

    # ------------------------------------------------------------------ #
    # The HL loop
    # ------------------------------------------------------------------ #
    def start(  # type: ignore[override]  # episodes, not a fixed round count
        self, grid: Grid, new_model: Callable[[int], ArrayRecord],
        evaluate_fn: Callable[[ArrayRecord], float], episodes: int | None = None,
        on_step: Callable[[StepResult], None] | None = None,
        on_episode: Callable[[EpisodeResult], None] | None = None,
        first_episode: int = 0,
    ) -> list[EpisodeResult]:
        """Run ``episodes`` episodes, each from ``new_model(episode)``.

        ``evaluate_fn`` returns the test accuracy of a model. Returns one
        result per episode; ``on_step`` and ``on_episode`` see them as they
        happen.
        """
        episodes = self.config.episodes if episodes is None else episodes
        self.discover_nodes(grid)
        results = []
        server_round = 0
        for episode in range(first_episode, first_episode + episodes):
            result, server_round = self.run_episode(
                grid, episode, new_model(episode), evaluate_fn, server_round, on_step)
            if on_episode:
                on_episode(result)
            results.append(result)
        return results

    def epsilon(self, episode: int) -> float:
        """Exploration rate for this episode."""
        if not self.learn:
            return float(self.fixed_epsilon or 0.0)
        return epsilon_at(episode, self.config.epsilon_start, self.config.epsilon_decay)

    def run_episode(self, grid: Grid, episode: int, arrays: ArrayRecord,
                    evaluate_fn: Callable[[ArrayRecord], float], server_round: int,
                    on_step: Callable[[StepResult], None] | None = None,
                    ) -> tuple[EpisodeResult, int]:
        """Train from ``arrays`` until the goal or the step cap."""
        cfg = self.config
        started = time.perf_counter()
        epsilon = self.epsilon(episode)
        self.selected = [cfg.starter]
        previous_lead = cfg.starter
        state: np.ndarray | None = None
        total_reward = cost = 0.0
        total_bytes = 0
        path: list[int] = []
        accuracy = 0.0
        for step in range(1, cfg.max_steps + 1):
            server_round += 1
            step_started = time.perf_counter()
            step_config = ConfigRecord({
                "episode": episode, "step": step, "epsilon": epsilon,
                "policy-version": self.policy_version, "decide": cfg.k == 1,
                "server-round": server_round})
            replies = grid.send_and_receive(
                self.configure_train(server_round, arrays, step_config, grid),
                timeout=cfg.reply_timeout)
            arrays, metrics = self.aggregate_train(server_round, replies)
            observation, next_nodes = self._observation_and_choice(
                grid, metrics, arrays, step_config)
            evaluated = time.perf_counter()
            accuracy = float(evaluate_fn(arrays))
            time_evaluate = time.perf_counter() - evaluated
            hop = 0.0 if step == 1 else float(self.distance[previous_lead,
                                                             self.selected[0]])
            reward = step_reward(accuracy, cfg.goal, hop, cfg.reward_base)
            done = accuracy >= cfg.goal or step >= cfg.max_steps
            if self.learn and state is not None:
                self.agent.remember(Transition(state, tuple(self.selected), reward,
                                               observation, done))
            total_reward += reward
            cost += hop
            total_bytes += self.bytes_this_round
            path.append(self.selected[0])
            if on_step:
                on_step(StepResult(
                    episode, step, list(self.selected), [] if done else next_nodes,
                    accuracy, reward, hop, self.bytes_this_round,
                    self.policy_sent_this_round, float(metrics["train-loss"]),
                    float(metrics["time-train"]), float(metrics["time-observe"]),
                    time_evaluate, time.perf_counter() - step_started, done))
            if done:
                break
            state = observation
            previous_lead = self.selected[0]
            self.selected = next_nodes
        dqn_loss = self._after_episode()
        return EpisodeResult(
            episode, step, accuracy, cost, total_reward, epsilon,
            accuracy >= cfg.goal, total_bytes, dqn_loss,
            time.perf_counter() - started, path), server_round

    def _after_episode(self) -> float | None:
        """Train the DQN once; a changed policy gets a new version."""
        if not self.learn:
            return None
        loss = self.agent.train()
        if loss is not None:
            self.policy_version += 1
        return loss

    # ------------------------------------------------------------------ #
    # Helpers
    # ------------------------------------------------------------------ #
    def discover_nodes(self, grid: Grid, wait: float | None = None) -> None:
        """Ask every connected node which partition it serves."""
        deadline = time.monotonic() + (wait or self.config.reply_timeout)
        while len(list(grid.get_node_ids())) < self.config.num_nodes:
            if time.monotonic() > deadline:
                raise NodeFailure(
                    f"only {len(list(grid.get_node_ids()))} of "
                    f"{self.config.num_nodes} nodes connected; start them all")
            time.sleep(0.2)
        messages = [Message(RecordDict(), dst_node_id=node_id,
                            message_type=QUERY_IDENTIFY)
                    for node_id in grid.get_node_ids()]
        replies = self._checked(
            grid.send_and_receive(messages, timeout=self.config.reply_timeout),
            expected=len(messages))
        for reply in replies:
            metrics = reply.content[METRICS]
            partition = int(metrics["partition-id"])
            if int(metrics["num-partitions"]) != self.config.num_nodes:
                raise NodeFailure(
                    f"node {reply.metadata.src_node_id} serves partition "
                    f"{partition} of {metrics['num-partitions']}, but the run "
                    f"has {self.config.num_nodes} nodes")
            self.node_ids[partition] = reply.metadata.src_node_id
            self.sent_version[reply.metadata.src_node_id] = int(
                metrics["policy-version"])
        missing = sorted(set(range(self.config.num_nodes)) - set(self.node_ids))
        if missing:
            raise NodeFailure(f"no node serves partitions {missing}")

    def _attach_policy_if_stale(self, content: RecordDict, partition: int) -> None:
        node_id = self.node_ids[partition]
        if self.sent_version.get(node_id) != self.policy_version:
            content[POLICY] = ArrayRecord(self.agent.get_weights())
            self.sent_version[node_id] = self.policy_version
            self.policy_sent_this_round = True

    def _observation_and_choice(self, grid: Grid, metrics: MetricRecord,
                                arrays: ArrayRecord, step_config: ConfigRecord
                                ) -> tuple[np.ndarray, list[int]]:
        """k = 1: the holder sent both. k > 1: assemble, and ask the lead."""
        if "next-nodes" in metrics:
            return (np.asarray(metrics["observation"], np.float32),
                    [int(n) for n in metrics["next-nodes"]])
        previous = flatten_weights(self._previous_global)
        trained = {p: flatten_weights(w)
                   for p, w in zip(self.selected, self._trained_weights, strict=True)}
        observation = reference_observation(previous, trained, self.config.num_nodes,
                                            self.config.pca_components)
        return observation, self._ask_lead(grid, observation, step_config)

    def _ask_lead(self, grid: Grid, observation: np.ndarray,
                  step_config: ConfigRecord) -> list[int]:
        lead = self.selected[0]
        content = RecordDict({HL_CONFIG: self.run_settings, STEP: step_config,
                              METRICS: MetricRecord({"observation":
                                                     observation.tolist()})})
        self._attach_policy_if_stale(content, lead)
        message = Message(content, dst_node_id=self.node_ids[lead],
                          message_type=QUERY_CHOOSE)
        self.bytes_this_round += payload_bytes(content)
        (reply,) = self._checked(grid.send_and_receive(
            [message], timeout=self.config.reply_timeout), expected=1)
        self.sent_version[self.node_ids[lead]] = int(
            reply.content[METRICS]["policy-version"])
        return [int(n) for n in reply.content[METRICS]["next-nodes"]]

    def _checked(self, replies: Iterable[Message], expected: int) -> list[Message]:
        replies = list(replies)
        for reply in replies:
            if reply.has_error():
                raise NodeFailure(f"node {reply.metadata.src_node_id} failed: "
                                  f"{reply.error.reason}")
        if len(replies) < expected:
            raise NodeFailure(f"{expected - len(replies)} of {expected} nodes "
                              "did not reply in time")
        return replies
