"""Flower's own aggregating strategies as baselines, counted in rounds to the goal.

:class:`FlowerBaseline` plays one of ``flwr.serverapp.strategy``'s FedAvg,
FedProx, FedAvgM, FedAdam or FedYogi itself (its node sampling, messages,
weighted aggregation and server update) driven by the same episode loop as
HL, so it stops at the goal and its traffic is counted on the same metered
grid. Its train messages carry the HL settings too, so the very same
ClientApp trains one local epoch on each sampled node (with FedProx's
proximal term when the step config carries ``proximal-mu``). There is no
hop, so its communication cost on the distance matrix is undefined (NaN).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedYogi

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import HL_CONFIG, METRICS, STEP
from hl_flower.methods import FEDAVG
from hl_flower.reward import RewardFunction, reward_function

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome, node_settings_record
from .replies import INTEGER_METRICS, NUMERIC_METRICS, reply_problem

# What an honest node returns after a FedAvg round (no choice, no observation)
FEDAVG_METRICS = {*NUMERIC_METRICS, *INTEGER_METRICS, "partition-id"}

# Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), Algorithm 2
_ADAPTIVE = {"eta": "server_learning_rate", "beta_1": "server_beta_1",
             "beta_2": "server_beta_2", "tau": "server_tau"}
# Each strategy by Flower's name, with its own arguments: Flower's keyword ->
# the HLConfig field that holds it
FLOWER_STRATEGIES: dict[str, tuple[type[FedAvg], dict[str, str]]] = {
    FEDAVG: (FedAvg, {}),
    "FedProx": (FedProx, {"proximal_mu": "proximal_mu"}),  # Li et al., MLSys 2020
    "FedAvgM": (FedAvgM, {"server_learning_rate": "server_learning_rate",  # Hsu et al.
                          "server_momentum": "server_momentum"}),  # 2019
    "FedAdam": (FedAdam, _ADAPTIVE),
    "FedYogi": (FedYogi, _ADAPTIVE),
}
# Settings whose 0 means "Flower's own default" (it differs between strategies)
_ZERO_IS_FLOWER_DEFAULT = {"server_learning_rate"}


def flower_strategy(method: str, config: HLConfig) -> FedAvg:
    """A new Flower strategy ``method`` with the run's settings.

    It trains ``config.fedavg_fraction`` of the nodes each round (at least
    one), evaluates none (the server does, on the test set) and puts the
    round's config under the ``step`` key the ClientApp reads. Its own
    arguments come from ``config`` (:data:`FLOWER_STRATEGIES`); a
    ``server_learning_rate`` of 0 leaves Flower's default of that strategy.

    Raises
    ------
    KeyError
        ``method`` is not one of :data:`FLOWER_STRATEGIES`.
    """
    kind, own = FLOWER_STRATEGIES[method]
    arguments = {keyword: getattr(config, field) for keyword, field in own.items()
                 if not (field in _ZERO_IS_FLOWER_DEFAULT and getattr(config, field) == 0)}
    return kind(fraction_train=config.fedavg_fraction, fraction_evaluate=0.0,
                min_train_nodes=1, min_available_nodes=config.num_nodes,
                configrecord_key=STEP, **arguments)


def in_sent_dtypes(aggregated: ArrayRecord, sent: ArrayRecord) -> ArrayRecord:
    """``aggregated`` with every array in the dtype of the same array in
    ``sent``. FedAdam's server step returns float64 for a float32 model (its
    bias-corrected step size is a NumPy float64), which the nodes would train
    as float32 and the reply check would then refuse; arrays already in
    their dtype are kept as they are.
    """
    return ArrayRecord({
        name: array if array.dtype == sent[name].dtype
        else Array(np.asarray(array.numpy(), dtype=sent[name].dtype))
        for name, array in aggregated.items()})


class FlowerBaseline(EpisodeLoop):
    """A Flower aggregating strategy (FedAvg or one of its subclasses) played
    round by round until the goal, measured like HL.

    Parameters
    ----------
    strategy : flwr.serverapp.strategy.FedAvg
        The strategy, as built (its sampling, aggregation and server update
        are used as they are). Each episode plays a fresh copy of it, so no
        server state (last model, momentum, Adam's moments) leaks between
        episodes; the copies put their round config under ``"step"``, the
        record the nodes read. The object given is left as it is.
    num_nodes : int
        N, the nodes that must be connected.
    goal : float (default: 0.8)
        Test accuracy (0-1) that ends an episode.
    max_steps : int (default: 36)
        Rounds after which an episode ends without the goal.
    seed : int (default: 0)
        Seeds Flower's node sampling; sent to the nodes as ``seed``.
    reward : RewardFunction, optional
        Reward of a round (its hop cost is NaN); default the paper's.
    node_settings : Mapping[str, int | float | str | bool], optional
        The run config the nodes' ClientApp reads from every train message.
    reply_timeout : float (default: 600.0)
        Seconds to wait for the nodes' replies.

    Raises
    ------
    ValueError
        A setting out of range, a node setting the nodes would refuse, or a
        strategy that is not FedAvg-like.
    """

    def __init__(self, strategy: FedAvg, *, num_nodes: int, goal: float = 0.8,
                 max_steps: int = 36, seed: int = 0, reward: RewardFunction | None = None,
                 node_settings: Mapping[str, Any] | None = None,
                 reply_timeout: float = 600.0) -> None:
        if not isinstance(strategy, FedAvg):
            raise ValueError(f"strategy must be a flwr FedAvg or one of its subclasses "
                             f"(FedProx, FedAdam, ...), got {type(strategy).__name__}")
        self.set_episode_rules(num_nodes=num_nodes, goal=goal, max_steps=max_steps,
                               reward=reward, reply_timeout=reply_timeout, distance=None)
        self.name = type(strategy).__name__
        self.template = copy.deepcopy(strategy)
        self.template.configrecord_key = STEP  # the record the nodes read
        self.strategy = copy.deepcopy(self.template)
        self.seed = seed
        self.run_settings = node_settings_record(node_settings, num_nodes=num_nodes,
                                                 seed=seed)

    @classmethod
    def from_config(cls, config: HLConfig, method: str = FEDAVG) -> FlowerBaseline:
        """Flower's strategy ``method`` (one of :data:`FLOWER_STRATEGIES`)
        with a run's settings. Raises ValueError for another name."""
        if method not in FLOWER_STRATEGIES:
            raise ValueError(f"unknown Flower strategy {method!r}; use one of "
                             + ", ".join(FLOWER_STRATEGIES))
        return cls(flower_strategy(method, config), num_nodes=config.num_nodes,
                   goal=config.goal, max_steps=config.max_steps, seed=config.seed,
                   reward=reward_function(config), node_settings=to_flat(config),
                   reply_timeout=config.reply_timeout)

    def prepare(self, grid: Grid) -> None:
        """Seed Flower's node sampling (it draws from Python's ``random``)."""
        random.seed(self.seed)

    def begin_episode(self, episode: int) -> None:
        """A fresh copy of the strategy: its server state belongs to one
        episode, and every episode starts from a new model."""
        self.strategy = copy.deepcopy(self.template)

    def train_messages(self, server_round: int, arrays: ArrayRecord,
                       step_config: ConfigRecord, grid: Grid) -> list[Message]:
        """The strategy's train messages, plus the run settings the ClientApp reads."""
        messages = list(self.strategy.configure_train(server_round, arrays, step_config,
                                                      grid))
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
        """Sample, train everywhere, aggregate the replies that pass
        :func:`reply_problem` as the strategy does (weighted by examples, then
        its server update); the rest are failures."""
        replies = list(grid.send_and_receive(
            self.train_messages(server_round, arrays, step_config, grid),
            timeout=self.reply_timeout))
        problems = {id(m): self._reply_problem(m, arrays) for m in replies}
        usable = [m for m in replies if problems[id(m)] is None]
        failures = [f"node {m.metadata.src_node_id}: {problems[id(m)]}"
                    for m in replies if problems[id(m)] is not None]
        self.round_failures = failures
        # The episode's round number: what Flower's own loop would pass to a
        # strategy made for this episode (FedAdam's bias correction uses it)
        trained, metrics = self.strategy.aggregate_train(int(step_config["step"]), usable)
        if trained is None or metrics is None:
            raise NodeFailure(f"no node returned a usable model in round {server_round}")
        answered = [m.content[METRICS] for m in usable]
        return RoundOutcome(
            in_sent_dtypes(trained, arrays),
            sorted(int(m["partition-id"]) for m in answered), [], None,
            float(metrics["train-loss"]),
            float(sum(m["time-train"] for m in answered)),  # nodes' compute, summed
            0.0, failures)
