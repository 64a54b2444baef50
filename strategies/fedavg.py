"""Flower's own FedAvg as a baseline, counted in rounds to the goal.

:class:`FedAvgBaseline` is ``flwr.serverapp.strategy.FedAvg`` itself (its
node sampling, messages and weighted aggregation) driven by the same episode
loop as HL, so it stops at the goal and its traffic is counted on the same
metered grid. Its train messages carry the HL settings too, so the very same
ClientApp trains one local epoch on each sampled node. There is no hop, so
its communication cost on the distance matrix is undefined (NaN).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import HL_CONFIG, METRICS, STEP

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome
from .replies import INTEGER_METRICS, NUMERIC_METRICS, reply_problem

# What an honest node returns after a FedAvg round (no choice, no observation)
FEDAVG_METRICS = {*NUMERIC_METRICS, *INTEGER_METRICS, "partition-id"}


class FedAvgBaseline(EpisodeLoop, FedAvg):
    """FedAvg over ``fraction_train`` of the nodes each round, until the goal.

    Parameters
    ----------
    config : HLConfig
        The run's settings (nodes, goal, step cap as the round cap, seed).
    fraction_train : float (default: 1.0)
        Fraction of the nodes sampled each round (at least one).
    """

    name = "FedAvg"

    def __init__(self, config: HLConfig, fraction_train: float = 1.0) -> None:
        FedAvg.__init__(self, fraction_train=fraction_train, fraction_evaluate=0.0,
                        min_train_nodes=1, min_available_nodes=config.num_nodes,
                        configrecord_key=STEP)
        self.config = config
        self.distance = None
        self.run_settings = ConfigRecord(to_flat(config))

    def prepare(self, grid: Grid) -> None:
        """Seed Flower's node sampling (it draws from Python's ``random``)."""
        random.seed(self.config.seed)

    def configure_train(self, server_round: int, arrays: ArrayRecord,
                        config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """FedAvg's messages, plus the run settings the ClientApp reads."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        for message in messages:
            message.content[HL_CONFIG] = self.run_settings
        return messages

    def _reply_problem(self, reply: Message, sent: ArrayRecord) -> str | None:
        """:func:`reply_problem`, plus the shape Flower's aggregation needs:
        one model, one metrics record, exactly the honest metric names."""
        problem = reply_problem(reply, sent, self.config.num_nodes, None,
                                self.config.observation_size)
        if problem:
            return problem
        content = reply.content
        keys = set(content[METRICS].keys())
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            return "extra records in the reply"
        if keys != FEDAVG_METRICS:
            return f"unexpected metrics {sorted(keys ^ FEDAVG_METRICS)}"
        return None

    def play_round(self, grid: Grid, server_round: int, arrays: ArrayRecord,
                   step_config: ConfigRecord) -> RoundOutcome:
        """Sample, train everywhere, average the replies that pass
        :func:`reply_problem` weighted by examples; the rest are failures."""
        replies = list(grid.send_and_receive(
            self.configure_train(server_round, arrays, step_config, grid),
            timeout=self.config.reply_timeout))
        problems = {id(m): self._reply_problem(m, arrays) for m in replies}
        usable = [m for m in replies if problems[id(m)] is None]
        failures = [f"node {m.metadata.src_node_id}: {problems[id(m)]}"
                    for m in replies if problems[id(m)] is not None]
        self.round_failures = failures
        trained, metrics = self.aggregate_train(server_round, usable)
        if trained is None or metrics is None:
            raise NodeFailure(f"no node returned a usable model in round {server_round}")
        answered = [m.content[METRICS] for m in usable]
        return RoundOutcome(
            trained, sorted(int(m["partition-id"]) for m in answered), [], None,
            float(metrics["train-loss"]),
            float(sum(m["time-train"] for m in answered)),  # nodes' compute, summed
            0.0, failures)
