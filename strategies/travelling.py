"""One model travelling between nodes: the Flower strategy HL and the hop
baselines share.

Each step is one Flower round whose train message goes to exactly the
node(s) holding the model; the server adopts the holder's trained model (the
mean for k > 1). Like Flower's ``FedXgbCyclic`` one node trains per round;
what differs between HL and the baselines is only who gets the model next
(:meth:`TravellingModel.choose_next`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import ARRAYS, HL_CONFIG, METRICS, QUERY_IDENTIFY, STEP

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome


class TravellingModel(EpisodeLoop, Strategy):
    """Base of the strategies whose model hops from node to node.

    Parameters
    ----------
    config : HLConfig
        Run settings (goal, step cap, k, starter, seed...).
    distance : np.ndarray
        N x N communication distances; a hop's cost is ``distance[a][b]``.
    """

    name = "travelling"

    def __init__(self, config: HLConfig, distance: np.ndarray) -> None:
        self.config = config
        self.distance = distance
        self.node_ids: dict[int, int] = {}  # partition id -> Flower node id
        self.selected: list[int] = [config.starter]
        self.run_settings = ConfigRecord(to_flat(config))
        self.node_policy_versions: dict[int, int] = {}  # node id -> as reported

    # -- what differs between strategies --------------------------------- #
    def choose_next(self, grid: Grid, metrics: MetricRecord, step_config: ConfigRecord
                    ) -> tuple[np.ndarray | None, list[int]]:
        """(observation or None, next node(s)) after the selected nodes trained."""
        raise NotImplementedError

    def message_content(self, partition: int, arrays: ArrayRecord,
                        step_config: ConfigRecord) -> RecordDict:
        """What one selected node receives (HL adds the policy when stale)."""
        return RecordDict({ARRAYS: arrays, HL_CONFIG: self.run_settings,
                           STEP: step_config})

    # -- Strategy interface ---------------------------------------------- #
    def summary(self) -> None:
        """Log the strategy's settings."""
        cfg = self.config
        log(INFO, "\t├──> %s: %d nodes, k=%d, starter=%d", self.name, cfg.num_nodes,
            cfg.k, cfg.starter)
        log(INFO, "\t└──> Goal: %.3f within %d steps", cfg.goal, cfg.max_steps)

    def configure_train(self, server_round: int, arrays: ArrayRecord,
                        config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """One train message to each selected node."""
        return [Message(self.message_content(partition, arrays, config),
                        dst_node_id=self.node_ids[partition],
                        message_type=MessageType.TRAIN)
                for partition in self.selected]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Adopt the holder's model (mean for k > 1) and pass on its metrics."""
        ordered = self._in_selected_order(
            self._checked(replies, expected=len(self.selected)))
        weights = [m.content[ARRAYS].to_numpy_ndarrays() for m in ordered]
        if len(weights) == 1:
            arrays = ordered[0].content[ARRAYS]
        else:
            arrays = ArrayRecord([np.mean(layer, axis=0)
                                  for layer in zip(*weights, strict=True)])
        node_metrics = [m.content[METRICS] for m in ordered]
        lead = node_metrics[0]
        metrics = MetricRecord({
            "train-loss": float(np.mean([m["train-loss"] for m in node_metrics])),
            "num-examples": int(sum(m["num-examples"] for m in node_metrics)),
            "time-train": max(m["time-train"] for m in node_metrics),
            "time-observe": float(lead["time-observe"]),
        })
        for key in ("next-nodes", "observation"):
            if key in lead:
                metrics[key] = list(lead[key])
        for message in ordered:
            self.node_policy_versions[message.metadata.src_node_id] = int(
                message.content[METRICS]["policy-version"])
        self.trained_weights = weights
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """The travelling model is evaluated centrally: no evaluate messages."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Nothing to aggregate (see ``configure_evaluate``)."""
        return None

    # -- EpisodeLoop hooks ------------------------------------------------- #
    def prepare(self, grid: Grid) -> None:
        """Learn which Flower node serves which partition."""
        self.discover_nodes(grid)

    def begin_episode(self, episode: int) -> None:
        """Every episode starts at the starter node."""
        self.selected = [self.config.starter]

    def play_round(self, grid: Grid, server_round: int, arrays: ArrayRecord,
                   step_config: ConfigRecord) -> RoundOutcome:
        """The selected node(s) train; then the next node(s) are chosen."""
        replies = grid.send_and_receive(
            self.configure_train(server_round, arrays, step_config, grid),
            timeout=self.config.reply_timeout)
        trained, metrics = self.aggregate_train(server_round, replies)
        observation, next_nodes = self.choose_next(grid, metrics, step_config)
        return RoundOutcome(trained, list(self.selected), next_nodes, observation,
                            float(metrics["train-loss"]), float(metrics["time-train"]),
                            float(metrics["time-observe"]))

    def after_step(self, outcome: RoundOutcome, reward: float, done: bool) -> None:
        """The chosen nodes hold the model next."""
        if not done:
            self.selected = outcome.next_nodes

    # -- helpers ----------------------------------------------------------- #
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
            self.node_policy_versions[reply.metadata.src_node_id] = int(
                metrics["policy-version"])
        missing = sorted(set(range(self.config.num_nodes)) - set(self.node_ids))
        if missing:
            raise NodeFailure(f"no node serves partitions {missing}")

    def _in_selected_order(self, replies: list[Message]) -> list[Message]:
        by_partition = {int(m.content[METRICS]["partition-id"]): m for m in replies}
        return [by_partition[p] for p in self.selected]

    @staticmethod
    def _checked(replies: Iterable[Message], expected: int) -> list[Message]:
        replies = list(replies)
        for reply in replies:
            if reply.has_error():
                raise NodeFailure(f"node {reply.metadata.src_node_id} failed: "
                                  f"{reply.error.reason}")
        if len(replies) < expected:
            raise NodeFailure(f"{expected - len(replies)} of {expected} nodes "
                              "did not reply in time")
        return replies
