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
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import HL_CONFIG, METRICS, STEP
from hl_flower.reward import RewardFunction, reward_function

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome
from .replies import INTEGER_METRICS, NUMERIC_METRICS, reply_problem

# What an honest node returns after a FedAvg round (no choice, no observation)
FEDAVG_METRICS = {*NUMERIC_METRICS, *INTEGER_METRICS, "partition-id"}


class FedAvgBaseline(EpisodeLoop, FedAvg):
    """FedAvg over ``fraction_train`` of the nodes each round, until the goal.

    Parameters
    ----------
    num_nodes : int
        N, the nodes that must be connected.
    fraction_train : float (default: 1.0)
        Fraction of the nodes sampled each round (at least one).
    goal : float (default: 0.8)
        Test accuracy (0-1) that ends an episode.
    max_steps : int (default: 36)
        Rounds after which an episode ends without the goal.
    seed : int (default: 0)
        Seeds Flower's node sampling; sent to the nodes as ``seed``.
    reward : RewardFunction, optional
        Reward of a round (hop cost NaN); default the paper's.
    node_settings : Mapping[str, int | float | str | bool], optional
        The run config the nodes' ClientApp reads from every train message.
    reply_timeout : float (default: 600.0)
        Seconds to wait for the nodes' replies.
    """

    name = "FedAvg"

    def __init__(self, *, num_nodes: int, fraction_train: float = 1.0, goal: float = 0.8,
                 max_steps: int = 36, seed: int = 0, reward: RewardFunction | None = None,
                 node_settings: Mapping[str, Any] | None = None,
                 reply_timeout: float = 600.0) -> None:
        FedAvg.__init__(self, fraction_train=fraction_train, fraction_evaluate=0.0,
                        min_train_nodes=1, min_available_nodes=num_nodes,
                        configrecord_key=STEP)
        self.set_episode_rules(num_nodes=num_nodes, goal=goal, max_steps=max_steps,
                               reward=reward, reply_timeout=reply_timeout, distance=None)
        self.seed = seed
        self.run_settings = ConfigRecord(
            dict(node_settings or {}) | {"num-nodes": num_nodes, "seed": seed})

    @classmethod
    def from_config(cls, config: HLConfig, fraction_train: float = 1.0) -> FedAvgBaseline:
        """FedAvg for a run's settings."""
        return cls(num_nodes=config.num_nodes, fraction_train=fraction_train,
                   goal=config.goal, max_steps=config.max_steps, seed=config.seed,
                   reward=reward_function(config), node_settings=to_flat(config),
                   reply_timeout=config.reply_timeout)

    def prepare(self, grid: Grid) -> None:
        """Seed Flower's node sampling (it draws from Python's ``random``)."""
        random.seed(self.seed)

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
        problem = reply_problem(reply, sent, self.num_nodes, None, 0)
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
            timeout=self.reply_timeout))
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
