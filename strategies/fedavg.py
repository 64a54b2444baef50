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

import random

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedYogi

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import HL_CONFIG, METRICS, STEP
from hl_flower.methods import FEDAVG

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome
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
    """A Flower strategy over ``fedavg_fraction`` of the nodes each round,
    until the goal.

    Parameters
    ----------
    config : HLConfig
        The run's settings (nodes, goal, step cap as the round cap, seed, the
        fraction and the strategy's own settings).
    method : str (default: "FedAvg")
        Flower's name of the strategy, one of :data:`FLOWER_STRATEGIES`.

    Raises
    ------
    ValueError
        ``method`` is not one of :data:`FLOWER_STRATEGIES`.
    """

    def __init__(self, config: HLConfig, method: str = FEDAVG) -> None:
        if method not in FLOWER_STRATEGIES:
            raise ValueError(f"unknown Flower strategy {method!r}; use one of "
                             + ", ".join(FLOWER_STRATEGIES))
        self.name = method
        self.config = config
        self.distance = None
        self.run_settings = ConfigRecord(to_flat(config))
        self.strategy = flower_strategy(method, config)

    def prepare(self, grid: Grid) -> None:
        """Seed Flower's node sampling (it draws from Python's ``random``)."""
        random.seed(self.config.seed)

    def begin_episode(self, episode: int) -> None:
        """A new Flower strategy: its server state (the last global model,
        momentum, Adam's moments) belongs to one episode, and every episode
        starts from a new model."""
        self.strategy = flower_strategy(self.name, self.config)

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
        """Sample, train everywhere, aggregate the replies that pass
        :func:`reply_problem` as the strategy does (weighted by examples, then
        its server update); the rest are failures."""
        replies = list(grid.send_and_receive(
            self.train_messages(server_round, arrays, step_config, grid),
            timeout=self.config.reply_timeout))
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
