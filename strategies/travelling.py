"""One model travelling between nodes: the Flower strategy HL and the hop
baselines share.

Each step is one Flower round whose train message goes to exactly the
node(s) holding the model; the server adopts the holder's trained model (the
mean for k > 1), or with a path average the running average of the models
along the episode's path (:func:`path_average_step`). Like Flower's
``FedXgbCyclic`` one node trains per round; what differs between HL and the
baselines is only who gets the model next (:meth:`TravellingModel.choose_next`).
With ``proximal_mu`` > 0 each holder's epoch carries FedProx's proximal term,
anchored at the model it received.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from hl_flower.config import HLConfig, to_flat
from hl_flower.messages import ARRAYS, HL_CONFIG, METRICS, PROXIMAL_MU, QUERY_IDENTIFY, STEP
from hl_flower.reward import RewardFunction, reward_function
from hl_flower.starters import starter_of

from .episodes import EpisodeLoop, NodeFailure, RoundOutcome, node_settings_record
from .replies import raised_message, reply_problem

CONNECT_GRACE = 30.0  # seconds the first round waits for every partition's node


def average_models(models: list[list[np.ndarray]], sizes: list[int]) -> list[np.ndarray]:
    """Every array of ``models`` (non-trainable state such as BatchNorm's
    statistics too) averaged as FedAvg averages it: weighted by the nodes'
    sample counts ``sizes``. With equal counts that is the plain mean, and it
    is computed as one (the reference's k > 1 figures depend on its rounding).
    Each array keeps its dtype."""
    equal = len(set(sizes)) == 1
    return [(np.mean(layer, axis=0) if equal else np.average(layer, axis=0, weights=sizes)
             ).astype(layer[0].dtype) for layer in zip(*models, strict=True)]


def path_average_step(average: list[np.ndarray] | None, model: list[np.ndarray],
                      decay: float) -> list[np.ndarray]:
    """One step of the exponential moving average of the models along a path.

    ``avg_t = decay * avg_{t-1} + (1 - decay) * w_t`` for every floating-point
    array, and ``avg_1 = w_1`` (``average`` None: the episode's first step).
    Arrays that are not floating point (integer counters, say) are taken
    from ``w_t`` as they are. Each result keeps the dtype of ``w_t``'s
    array, and ``decay`` = 0 gives ``w_t``'s values (a strategy with decay 0
    skips the average altogether). Averaging the iterates goes back to
    Polyak & Juditsky ("Acceleration of stochastic approximation by
    averaging", SIAM J. Control Optim. 30(4), 1992); the exponential form is
    the weight EMA of Tarvainen & Valpola ("Mean teachers are better role
    models", NeurIPS 2017). Here the iterates are the models the holders
    returned along the path, one per step.

    Parameters
    ----------
    average : list of np.ndarray or None
        ``avg_{t-1}``: arrays with the shapes of ``model``'s, or None.
    model : list of np.ndarray
        ``w_t``, the model the holder(s) returned this step.
    decay : float
        In [0, 1): the weight of the past average.

    Returns
    -------
    list of np.ndarray
        ``avg_t``, new arrays (neither input is changed).

    Raises
    ------
    ValueError
        ``decay`` outside [0, 1), or ``average`` not shaped like ``model``.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"path-average decay must be in [0, 1), got {decay}")
    if average is None:
        return [np.array(w, copy=True) for w in model]
    if [np.shape(a) for a in average] != [np.shape(w) for w in model]:
        raise ValueError("the path average and the model have different shapes: "
                         f"{[np.shape(a) for a in average]} vs {[np.shape(w) for w in model]}")
    return [(decay * a + (1.0 - decay) * w).astype(w.dtype)
            if np.issubdtype(w.dtype, np.floating) else np.array(w, copy=True)
            for a, w in zip(average, model, strict=True)]


class TravellingModel(EpisodeLoop, Strategy):
    """Base of the strategies whose model hops from node to node.

    Parameters
    ----------
    num_nodes : int
        N, the nodes (partitions 0..N-1) the model travels between.
    distance : np.ndarray
        N x N communication distances; a hop's cost is ``distance[a][b]``.
    goal : float (default: 0.8)
        Test accuracy (0-1) that ends an episode (the paper's 0.80).
    max_steps : int (default: 36)
        Rounds after which an episode ends without the goal (the paper's 36).
    k : int (default: 1)
        Nodes that train per round; their models are averaged.
    starter : int or sequence of int (default: 0)
        The node that trains in round 1 of every episode; with several
        candidates, one drawn per episode from ``seed`` and the episode
        number (:func:`hl_flower.starters.starter_of`).
    seed : int (default: 0)
        Seeds the strategy's own draws; sent to the nodes as ``seed``.
    reward : RewardFunction, optional
        ``reward(accuracy, previous_accuracy, hop_cost)`` of a step; default
        the paper's, ``32^(accuracy - goal) - hop_cost - 1``.
    node_settings : Mapping[str, int | float | str | bool], optional
        The run config the nodes' ClientApp reads from every train message
        (kebab-case keys); the strategy sets ``num-nodes``, ``k`` and
        ``seed`` in it itself.
    reply_timeout : float (default: 600.0)
        Seconds to wait for a node's reply before the step moves on.
    failure_cooldown : int (default: 5)
        Rounds a failed node is skipped before it is tried again.
    max_failures : int (default: 50)
        Failed or rejected replies after which the run stops.
    proximal_mu : float (default: 0.0)
        mu >= 0 of FedProx's proximal term (mu / 2) * ||w - w_received||^2,
        which each holder adds to its epoch's loss (Li et al., "Federated
        Optimization in Heterogeneous Networks", MLSys 2020, eq. 2). With
        mu > 0 it is sent in the step config under ``proximal-mu``, the key
        Flower's FedProx writes; with mu = 0 the key is not sent and the
        nodes run their plain step.
    path_average : float (default: 0.0)
        Decay in [0, 1) of the path average (0 = off): the server adopts the
        exponential moving average of the models the holders returned in
        this episode (:meth:`along_path`).

    Raises
    ------
    ValueError
        For a setting out of range.
    """

    name = "travelling"

    def __init__(self, *, num_nodes: int, distance: np.ndarray, goal: float = 0.8,
                 max_steps: int = 36, k: int = 1, starter: int | Sequence[int] = 0,
                 seed: int = 0,
                 reward: RewardFunction | None = None,
                 node_settings: Mapping[str, Any] | None = None,
                 reply_timeout: float = 600.0, failure_cooldown: int = 5,
                 max_failures: int = 50, proximal_mu: float = 0.0,
                 path_average: float = 0.0) -> None:
        self.set_episode_rules(num_nodes=num_nodes, goal=goal, max_steps=max_steps,
                               reward=reward, reply_timeout=reply_timeout,
                               distance=np.asarray(distance, np.float64))
        starters = tuple(int(node) for node in np.atleast_1d(starter))
        if (not 1 <= k <= num_nodes or not starters
                or not all(0 <= node < num_nodes for node in starters)):
            raise ValueError(f"k must be in 1..{num_nodes} and starter in "
                             f"0..{num_nodes - 1}, got {k} and {starter}")
        if not 0.0 <= proximal_mu < math.inf:
            raise ValueError(f"proximal_mu must be a finite number >= 0, got {proximal_mu}")
        if not 0.0 <= path_average < 1.0:
            raise ValueError(f"path_average must be in [0, 1), got {path_average}")
        self.proximal_mu, self.path_average = proximal_mu, path_average
        self.path_model: list[np.ndarray] | None = None  # avg_t of this episode
        self.k, self.starters, self.seed = k, starters, seed
        self.starter = starter_of(starters, seed, 0)  # the episode's (begin_episode)
        self.failure_cooldown, self.max_failures = failure_cooldown, max_failures
        self.node_ids: dict[int, int] = {}  # partition id -> Flower node id
        self.selected: list[int] = [self.starter]
        self.run_settings = node_settings_record(node_settings, num_nodes=num_nodes,
                                                 k=k, seed=seed)
        self.node_policy_versions: dict[int, int] = {}  # node id -> as reported
        self.trained_weights: list[list[np.ndarray]] = []  # last step's updates
        self.down_until: dict[int, int] = {}  # partition -> round it may retry
        self.ignored_nodes: dict[int, int | None] = {}  # node id -> partition it
        # duplicates (None: it serves another setup, or no partition at all)
        self.ignore_reasons: dict[int, str] = {}  # node id -> why, for messages
        self.failures = 0
        self.failures_by_node: dict[int, int] = {}

    @staticmethod
    def settings_of(config: HLConfig) -> dict[str, Any]:
        """The keyword arguments above, taken from a run's settings."""
        return {"num_nodes": config.num_nodes, "goal": config.goal,
                "max_steps": config.max_steps, "k": config.k,
                "starter": config.starter_nodes,
                "seed": config.seed, "reward": reward_function(config),
                "node_settings": to_flat(config), "reply_timeout": config.reply_timeout,
                "failure_cooldown": config.failure_cooldown,
                "max_failures": config.max_failures, "proximal_mu": config.proximal_mu,
                "path_average": config.path_average}

    @classmethod
    def from_config(cls, config: HLConfig, distance: np.ndarray, **extra: Any
                    ) -> TravellingModel:
        """The strategy for a run's settings (``extra``: the subclass's own
        arguments)."""
        return cls(distance=distance, **cls.settings_of(config), **extra)

    @property
    def observation_size(self) -> int:
        """Length of the observation a deciding node sends (none here)."""
        return 0

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
        log(INFO, "\t├──> %s: %d nodes, k=%d, starter=%s", self.name, self.num_nodes,
            self.k, ",".join(map(str, self.starters)))
        log(INFO, "\t└──> Goal: %.3f within %d steps", self.goal, self.max_steps)

    def configure_train(self, server_round: int, arrays: ArrayRecord,
                        config: ConfigRecord, grid: Grid,
                        partitions: list[int] | None = None) -> Iterable[Message]:
        """One train message to each selected node (or to ``partitions``)."""
        return [Message(self.message_content(partition, arrays, config),
                        dst_node_id=self.node_ids[partition],
                        message_type=MessageType.TRAIN)
                for partition in (self.selected if partitions is None else partitions)]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Adopt the holder's model (for k > 1 the nodes' models averaged,
        see :func:`average_models`) and pass on its metrics."""
        by_partition = self._by_partition(
            self._checked(replies, expected=len(self.selected)))
        ordered = [by_partition[p] for p in self.selected]
        weights = [m.content[ARRAYS].to_numpy_ndarrays() for m in ordered]
        if len(weights) == 1:
            arrays = ordered[0].content[ARRAYS]
        else:
            arrays = ArrayRecord(average_models(
                weights, [int(m.content[METRICS]["num-examples"]) for m in ordered]))
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
        """Every episode starts at its starter node, with no path average."""
        self.starter = starter_of(self.starters, self.seed, episode)
        self.selected = [self.starter]
        self.path_model = None

    def step_settings(self, episode: int, step: int, epsilon: float) -> dict:
        """``proximal-mu`` when mu > 0, so the holder adds the proximal term
        (:func:`hl_flower.node.fit_local`); nothing when mu = 0."""
        return {PROXIMAL_MU: self.proximal_mu} if self.proximal_mu > 0 else {}

    def along_path(self, trained: ArrayRecord) -> ArrayRecord:
        """The model the server adopts after a step: ``trained`` (the
        holder's model, or the k holders' mean) without a path average, else
        the episode's running average ``avg_t = decay * avg_{t-1} + (1 -
        decay) * w_t`` (:func:`path_average_step`; ``avg_1 = w_1``), under
        ``trained``'s array names.

        The average is adopted, not only evaluated: the next holder trains
        it, and the server evaluates it for the goal and the reward. Each
        hop's epoch pulls the model towards the holder's classes; handing on
        the average keeps a share ``decay^j * (1 - decay)`` of the model
        returned j steps ago in what travels, so what earlier holders taught
        fades geometrically instead of being overwritten by one epoch, and
        the next epoch starts from there. Evaluating the average while
        ``w_t`` travels on would score a model that no node trains from and
        that forgets as much as before. The average is computed on the server
        from replies it receives anyway and has the model's names, shapes and
        dtypes, so the bytes on the wire are those of a run without it.
        """
        if self.path_average == 0.0:
            return trained
        self.path_model = path_average_step(self.path_model, trained.to_numpy_ndarrays(),
                                            self.path_average)
        return ArrayRecord({name: Array(array) for name, array in
                            zip(trained.keys(), self.path_model, strict=True)})

    def episode_starter(self) -> int | None:
        """The node that trained first in this episode."""
        return self.starter

    def play_round(self, grid: Grid, server_round: int, arrays: ArrayRecord,
                   step_config: ConfigRecord) -> RoundOutcome:
        """The selected node(s) train; then the next node(s) are chosen, and
        the server adopts :meth:`along_path` of their model.

        A node that fails, times out or sends a reply that does not pass
        :func:`reply_problem` is marked unavailable and replaced by the best
        available node (:meth:`replacement`), which trains the same global
        model: the step is retried, never lost.
        """
        self.refresh_nodes(grid, server_round)
        slots = self._available_slots(server_round)
        accepted: dict[int, Message] = {}
        failures: list[str] = []
        pending = list(slots)
        while pending:
            replies = grid.send_and_receive(
                self.configure_train(server_round, arrays, step_config, grid,
                                     partitions=pending),
                timeout=self.reply_timeout)
            by_partition = self._by_partition(replies)
            choices = len(slots) if bool(step_config["decide"]) else None
            retry = []
            for partition in pending:
                reply = by_partition.get(partition)
                problem = (f"no reply within {self.reply_timeout:g} s"
                           if reply is None else reply_problem(
                               reply, arrays, self.num_nodes, choices,
                               self.observation_size))
                if problem is None:
                    accepted[partition] = reply
                    continue
                failures.append(f"{partition}: {problem}")
                self.round_failures = failures
                self._mark_failed(partition, problem, server_round)
                taken = set(accepted) | set(pending) | set(retry)
                substitute = self.replacement(partition, taken, server_round)
                slots[slots.index(partition)] = substitute
                retry.append(substitute)
            pending = retry
        self.selected = slots
        trained, metrics = self.aggregate_train(server_round,
                                                [accepted[p] for p in slots])
        observation, next_nodes = self.choose_next(grid, metrics, step_config)
        return RoundOutcome(self.along_path(trained), list(slots), next_nodes, observation,
                            float(metrics["train-loss"]), float(metrics["time-train"]),
                            float(metrics["time-observe"]), failures)

    def after_step(self, outcome: RoundOutcome, accuracy: float, reward: float,
                   done: bool) -> None:
        """The chosen nodes hold the model next."""
        if not done:
            self.selected = outcome.next_nodes

    def attempted_nodes(self) -> list[int]:
        """The selected nodes of the round being played."""
        return list(self.selected)

    # -- availability -------------------------------------------------------- #
    def is_available(self, partition: int, server_round: int) -> bool:
        """Known, connected, and not within its cool-down after a failure."""
        return (partition in self.node_ids
                and server_round >= self.down_until.get(partition, 0))

    def replacement(self, failed: int, taken: set[int], server_round: int) -> int:
        """The node that trains instead of ``failed``: by default the nearest
        available one (HL asks its DQN, the rules apply their rule)."""
        return self.nearest(failed, self.available_nodes(taken, server_round))

    def nearest(self, node: int, candidates: list[int]) -> int:
        """The candidate closest to ``node`` (lowest id on ties)."""
        return min(candidates, key=lambda n: (self.distance[node, n], n))

    def available_nodes(self, taken: set[int], server_round: int) -> list[int]:
        """Nodes that may train now, except ``taken``; NodeFailure if none."""
        nodes = [n for n in range(self.num_nodes)
                 if n not in taken and self.is_available(n, server_round)]
        if not nodes:
            raise NodeFailure("no node is available: every node failed within the "
                              f"last {self.failure_cooldown} steps or left")
        return nodes

    def refresh_nodes(self, grid: Grid, server_round: int) -> None:
        """Follow nodes leaving and (re)joining: a node that disconnected is
        unavailable, and a duplicate of its partition may take over; a new
        node id is asked which partition it serves (once: a node that cannot
        be used is ignored from then on)."""
        connected = set(grid.get_node_ids())
        for partition, node_id in list(self.node_ids.items()):
            if node_id not in connected:
                del self.node_ids[partition]
                log(WARNING, "node %d (partition %d) disconnected", node_id, partition)
                for duplicate in [n for n, p in self.ignored_nodes.items() if p == partition]:
                    del self.ignored_nodes[duplicate]  # asked again below
                    self.ignore_reasons.pop(duplicate, None)
        new = connected - set(self.node_ids.values()) - set(self.ignored_nodes)
        if new:
            self._identify(grid, sorted(new))

    def _available_slots(self, server_round: int) -> list[int]:
        """The selection with nodes known to be down replaced up front."""
        slots = list(self.selected)
        for index, partition in enumerate(slots):
            if not self.is_available(partition, server_round):
                taken = set(slots[:index]) | set(slots[index + 1:])
                slots[index] = self.replacement(partition, taken, server_round)
        return slots

    def _mark_failed(self, partition: int, problem: str, server_round: int) -> None:
        self.failures += 1
        self.failures_by_node[partition] = self.failures_by_node.get(partition, 0) + 1
        self.down_until[partition] = server_round + self.failure_cooldown
        log(WARNING, "partition %d failed in round %d: %s", partition, server_round,
            problem)
        if self.failures > self.max_failures:
            raise NodeFailure(f"{self.failures} node failures, more than "
                              f"--max-failures {self.max_failures}; last: "
                              f"partition {partition}: {problem}")

    # -- helpers ----------------------------------------------------------- #
    def discover_nodes(self, grid: Grid, wait: float = CONNECT_GRACE) -> None:
        """Ask every connected node which partition it serves until all N
        partitions are served; NodeFailure after ``wait`` seconds naming
        what is missing and how to start the nodes."""
        deadline = time.monotonic() + wait
        while True:
            connected = set(grid.get_node_ids())
            new = connected - set(self.node_ids.values()) - set(self.ignored_nodes)
            if new:
                self._identify(grid, sorted(new), strict=True)
            missing = sorted(set(range(self.num_nodes)) - set(self.node_ids))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise NodeFailure(self._missing_partitions(len(connected), missing, wait))
            time.sleep(0.2)

    def _how_to_start(self) -> str:
        """How to give the run one node per partition."""
        return (f"in simulation give --federation-config \"num-supernodes={self.num_nodes}\"; "
                "in deployment start one SuperNode per partition with --node-config "
                f"'partition-id=<n> num-partitions={self.num_nodes}'")

    def _missing_partitions(self, connected: int, missing: list[int], waited: float) -> str:
        """Why the run cannot start, and the fix for simulation and deployment."""
        start = self._how_to_start()
        if connected < self.num_nodes:
            return (f"only {connected} of {self.num_nodes} nodes connected within "
                    f"{waited:g} s; {start}")
        ignored = "; ".join(self.ignore_reasons.values())
        return (f"no node serves partition(s) {missing} of {self.num_nodes}"
                + (f" (ignored: {ignored})" if ignored else "") + f"; {start}")

    def _identify(self, grid: Grid, node_ids: list[int], strict: bool = False) -> None:
        """Map ``node_ids`` to partitions. A node of another federation is an
        error at start (``strict``) and ignored later. A node without a
        partition, or a second node for a partition already served, is
        ignored with one warning. A silent node is asked again later."""
        messages = [Message(RecordDict({HL_CONFIG: self.run_settings}),
                            dst_node_id=node_id, message_type=QUERY_IDENTIFY)
                    for node_id in node_ids]
        replies = list(grid.send_and_receive(messages, timeout=self.reply_timeout))
        # An error reply made by the SuperLink (node gone) comes from the
        # SuperLink's own node id: name the node it was sent to.
        sent_to = {m.metadata.message_id: m.metadata.dst_node_id for m in messages
                   if m.metadata.message_id}
        for reply in replies:
            node_id = sent_to.get(reply.metadata.reply_to_message_id,
                                  reply.metadata.src_node_id)
            claim = self._claimed_partition(reply, node_id)
            if isinstance(claim, str):
                if strict and "serves partition" in claim:
                    raise NodeFailure(claim)
                log(WARNING, "%s; ignoring it", claim)
                self.ignored_nodes[node_id] = None
                self.ignore_reasons[node_id] = claim
                continue
            partition, version = claim
            holder = self.node_ids.get(partition)
            if holder is not None and holder != node_id:
                why = (f"nodes {holder} and {node_id} both serve partition {partition}; "
                       f"using node {holder}")
                log(WARNING, "%s, ignoring node %d", why, node_id)
                self.ignored_nodes[node_id] = partition
                self.ignore_reasons[node_id] = why
                continue
            if not strict:
                log(INFO, "partition %d is served by node %d", partition, node_id)
            self.node_ids[partition] = node_id
            self.down_until.pop(partition, None)
            self.node_policy_versions[node_id] = version

    def _claimed_partition(self, reply: Message, node_id: int) -> tuple[int, int] | str:
        """(partition, policy version) node ``node_id``'s identify reply
        claims, or why the node cannot be used."""
        if reply.has_error():
            return f"node {node_id} cannot serve: {raised_message(reply.error.reason)}"
        try:
            metrics = reply.content[METRICS]
            partition, partitions = (int(metrics["partition-id"]),
                                     int(metrics["num-partitions"]))
            version = int(metrics["policy-version"])
        except (KeyError, TypeError, ValueError):
            return f"node {node_id} did not say which partition it serves"
        if partitions != self.num_nodes or not 0 <= partition < partitions:
            return (f"node {node_id} serves partition {partition} of {partitions}, "
                    f"but the run has {self.num_nodes} nodes; to use such nodes give "
                    f"--nodes {partitions}, else {self._how_to_start()}")
        return partition, version

    def _by_partition(self, replies: Iterable[Message]) -> dict[int, Message]:
        """Replies keyed by the partition of the node that sent them (the
        server's own mapping; a reply's claimed partition is not trusted)."""
        partition_of = {node_id: p for p, node_id in self.node_ids.items()}
        return {partition_of[r.metadata.src_node_id]: r for r in replies
                if r.metadata.src_node_id in partition_of}

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
