"""Homogeneous Learning as a Flower strategy (Message API).

Each HL step is one Flower round whose train message goes to exactly the
node(s) holding the model. The holder trains, computes the observation and
lets its own copy of the DQN choose the next node; this strategy only relays:
it adopts the holder's model (the mean for k > 1; with ``--path-average``
the running average along the path), evaluates it, computes the
reward, stores the transition, stops the episode at the goal or the step cap
and trains the DQN between episodes. Like ``FedXgbCyclic`` it trains one node
per round; unlike it, the next node is the holder's decision.
"""

from __future__ import annotations

from logging import INFO
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid

from hl_flower.config import CHOICES, HLConfig, observation_size
from hl_flower.dqn import (
    DQNAgent,
    NStepReturns,
    Transition,
    epsilon_at,
    policy_fingerprint,
    q_values,
)
from hl_flower.messages import CONTEXT, HL_CONFIG, METRICS, POLICY, QUERY_CHOOSE, STEP
from hl_flower.observation import flatten_weights, reference_observation
from hl_flower.progress_observation import (
    EpisodeProgress,
    node_order,
    nodes_to_ranks,
    progress_context,
    progress_observation,
    ranks_to_nodes,
    update_size,
)

from .episodes import EpisodeResult, NodeFailure, RoundOutcome, StepResult
from .travelling import TravellingModel

__all__ = ["EpisodeResult", "HomogeneousLearning", "NodeFailure", "StepResult"]


class HomogeneousLearning(TravellingModel):
    """Decentralised learning where the holder's DQN picks the next node.

    Parameters
    ----------
    agent : DQNAgent
        The server's copy of the DQN: trained between episodes and sent to
        nodes whose copy is stale. Its own settings (replay, discount,
        ``n_step``, target network, ``truncation`` at the step cap) govern
        how it learns.
    learn : bool (default: True)
        Store transitions, train the DQN and decay epsilon. False runs the
        policy as it is (with ``epsilon`` fixed, e.g. 0 for greedy).
    epsilon : float, optional
        Fixed exploration rate when ``learn`` is False (default 0).
    epsilon_start, epsilon_decay : float (default: 1.0, 0.02)
        Exploration rate of episode e: ``epsilon_start * exp(-epsilon_decay
        * e)`` (the paper's schedule).
    observation : str (default: "reference")
        The DQN's input: ``reference`` (PCA of the node models, N x
        ``pca_components``; the paper's) or ``progress``.
    actions : str (default: "absolute")
        Q-value n is node n (``absolute``) or the n-th nearest node
        (``relative``; needs ``progress``).
    pca_components : int (default: 10)
        Principal components per node of the reference observation.
    reward_scale : float (default: 1.0)
        Rewards are multiplied by this before they are stored.
    dqn_updates : str (default: "episode")
        Train the DQN once per ``episode`` (the paper) or every ``step``.
    keep_policy_on_nodes : bool (default: True)
        Nodes keep their copy of the policy between visits, so it travels
        only when it changed; False sends it with every decision.
    **settings
        :class:`TravellingModel`'s keyword arguments, with their types and
        defaults there: ``num_nodes`` (int) and ``distance`` (N x N array),
        both required; ``goal`` (0.8), ``max_steps`` (36), ``k`` (1),
        ``starter`` (0), ``seed`` (0), ``reward`` (the paper's),
        ``node_settings`` (run-config keys the nodes read, kebab-case:
        ``learning-rate``, ``local-epochs``, ``batch-size``, ``task``,
        ``partition``...), ``reply_timeout`` (600 s), ``failure_cooldown``
        (5), ``max_failures`` (50), ``proximal_mu`` (0.0), ``path_average``
        (0.0).

    Raises
    ------
    ValueError
        For a setting out of range, or an agent whose input size does not
        fit the observation.
    """

    name = "HL"

    def __init__(self, agent: DQNAgent, *, learn: bool = True,
                 epsilon: float | None = None, epsilon_start: float = 1.0,
                 epsilon_decay: float = 0.02, observation: str = "reference",
                 actions: str = "absolute", pca_components: int = 10,
                 reward_scale: float = 1.0, dqn_updates: str = "episode",
                 keep_policy_on_nodes: bool = True, **settings: Any) -> None:
        for name, value in (("observation", observation), ("actions", actions),
                            ("dqn_updates", dqn_updates)):
            if value not in CHOICES[name]:
                raise ValueError(f"{name} must be one of {CHOICES[name]}, got {value!r}")
        if actions == "relative" and observation != "progress":
            raise ValueError("relative actions need the progress observation")
        settings["node_settings"] = dict(settings.get("node_settings") or {}) | {
            "observation": observation, "actions": actions,
            "pca-components": pca_components}
        super().__init__(**settings)
        self.observation_kind, self.pca_components = observation, pca_components
        expected = observation_size(observation, self.num_nodes, pca_components)
        if agent.config.observation_size != expected:
            raise ValueError(f"the agent takes observations of {agent.config.observation_size} "
                             f"values, the {observation} observation of {self.num_nodes} "
                             f"nodes has {expected}")
        self.agent = agent
        self.learn = learn
        self.fixed_epsilon = epsilon
        self.epsilon_start, self.epsilon_decay = epsilon_start, epsilon_decay
        self.reward_scale, self.dqn_updates = reward_scale, dqn_updates
        self.keep_policy_on_nodes = keep_policy_on_nodes
        self.policy_version = policy_fingerprint(agent.get_weights())
        self.policy_updates = 0
        self.dqn_loss: float | None = None  # of the last DQN fit
        self.state: np.ndarray | None = None  # observation before the last choice
        self.state_holder = self.starter  # lead holder when ``state`` was made
        self.relative = actions == "relative"
        self.progress = EpisodeProgress(self.num_nodes)  # ``progress`` observation
        self.returns = NStepReturns(agent.config.n_step, agent.config.discount)
        self.step = 0  # the step being played
        self.previous_global: list[np.ndarray] = []  # k > 1: model before the step
        self._policy_record_of: tuple[int, ArrayRecord | None] = (0, None)

    @staticmethod
    def settings_of(config: HLConfig) -> dict[str, Any]:
        """:meth:`TravellingModel.settings_of` plus HL's own arguments."""
        return TravellingModel.settings_of(config) | {
            "epsilon_start": config.epsilon_start, "epsilon_decay": config.epsilon_decay,
            "observation": config.observation, "actions": config.actions,
            "pca_components": config.pca_components, "reward_scale": config.reward_scale,
            "dqn_updates": config.dqn_updates,
            "keep_policy_on_nodes": config.nodes_keep_policy}

    @property
    def observation_size(self) -> int:
        """Length of the observation a deciding node sends."""
        return observation_size(self.observation_kind, self.num_nodes, self.pca_components)

    def summary(self) -> None:
        """Log the strategy's settings."""
        super().summary()
        log(INFO, "\t└──> DQN: learn=%s, epsilon=%s", self.learn,
            self.fixed_epsilon if not self.learn else "decaying")

    # -- messages ---------------------------------------------------------- #
    def configure_train(self, server_round: int, arrays: ArrayRecord,
                        config: ConfigRecord, grid: Grid,
                        partitions: list[int] | None = None) -> list[Message]:
        """One train message per selected node; the policy only if stale."""
        if not bool(config["decide"]):  # k > 1: the server assembles the observation
            self.previous_global = arrays.to_numpy_ndarrays()
        return list(super().configure_train(server_round, arrays, config, grid,
                                            partitions))

    def message_content(self, partition: int, arrays: ArrayRecord,
                        step_config: ConfigRecord) -> RecordDict:
        """The model, settings and step; the policy too if the holder decides."""
        content = super().message_content(partition, arrays, step_config)
        self.step = int(step_config["step"])
        if bool(step_config["decide"]):
            self._attach_policy_if_stale(content, partition)
            if self.observation_kind == "progress":
                content[CONTEXT] = ConfigRecord(
                    {"features": self._context([partition]).tolist()}
                    | self._order_entry(partition))
        return content

    def step_settings(self, episode: int, step: int, epsilon: float) -> dict:
        """The holder decides when k = 1, with this policy version (and
        trains with the proximal term when mu > 0, as every travelling model)."""
        return super().step_settings(episode, step, epsilon) | {
            "decide": self.k == 1, "policy-version": self.policy_version,
            "keep-policy": self.keep_policy_on_nodes}

    # -- the DQN ----------------------------------------------------------- #
    def epsilon(self, episode: int) -> float:
        """Exploration rate for this episode."""
        if not self.learn:
            return float(self.fixed_epsilon or 0.0)
        return epsilon_at(episode, self.epsilon_start, self.epsilon_decay)

    def begin_episode(self, episode: int) -> None:
        """Start at the starter with no previous observation."""
        super().begin_episode(episode)
        self.state = None
        self.state_holder = self.starter
        self.progress = EpisodeProgress(self.num_nodes)
        self.returns.reset()

    def choose_next(self, grid: Grid, metrics: MetricRecord, step_config: ConfigRecord
                    ) -> tuple[np.ndarray, list[int]]:
        """k = 1: the holder sent both. k > 1: assemble, and ask the lead."""
        if "next-nodes" in metrics:
            return (np.asarray(metrics["observation"], np.float32),
                    [int(n) for n in metrics["next-nodes"]])
        previous = flatten_weights(self.previous_global)
        trained = {p: flatten_weights(w)
                   for p, w in zip(self.selected, self.trained_weights, strict=True)}
        if self.observation_kind == "progress":
            size = float(np.mean([update_size(previous, w) for w in trained.values()]))
            observation = progress_observation(self._context(self.selected), size)
        else:
            observation = reference_observation(previous, trained, self.num_nodes,
                                                self.pca_components)
        return observation, self._ask_lead(grid, observation, step_config)

    def after_step(self, outcome: RoundOutcome, accuracy: float, reward: float,
                   done: bool) -> None:
        """Store (previous observation, chosen nodes, scaled reward,
        observation), merged over ``n_step`` decisions; with
        ``dqn_updates=step`` train the DQN right away.

        A step that ends the episode without the goal (the step cap) is
        stored as ``truncated``: the agent's ``truncation`` setting decides
        whether its target bootstraps from the observation at the cap (the
        holder sends one every step, the last included)."""
        if self.learn and self.state is not None:
            truncated = done and not accuracy >= self.goal
            for transition in self.returns.add(Transition(
                    self.state, self._actions(outcome.holders),
                    reward * self.reward_scale, outcome.observation, done,
                    truncated=truncated)):
                self.agent.remember(transition)
        self.state = outcome.observation
        self.state_holder = outcome.holders[0]
        self.progress.record(outcome.holders, self.step, accuracy)
        self.dqn_loss = None
        if self.dqn_updates == "step":
            self.dqn_loss = self._train_dqn()
        super().after_step(outcome, accuracy, reward, done)

    def after_episode(self) -> float | None:
        """Train the DQN once (reference) and report the latest loss."""
        if self.dqn_updates == "episode":
            return self._train_dqn()
        return self.dqn_loss

    def _train_dqn(self) -> float | None:
        """One minibatch fit; a changed policy gets a new version."""
        if not self.learn:
            return None
        loss = self.agent.train()
        if loss is not None:
            self.refresh_policy_version()
            self.policy_updates += 1
        return loss

    def refresh_policy_version(self) -> None:
        """Name the agent's current weights (after a fit, or after weights
        were loaded into it, e.g. from a checkpoint), so nodes holding an
        older copy get the new one."""
        self.policy_version = policy_fingerprint(self.agent.get_weights())

    def replacement(self, failed: int, taken: set[int], server_round: int) -> int:
        """The DQN's best available node for the last observation (the
        nearest available node before the first observation exists)."""
        if self.state is None:
            return super().replacement(failed, taken, server_round)
        candidates = set(self.available_nodes(taken, server_round))
        q = q_values(self.agent.get_weights(), self.state[None, :])[0]
        ranked = [int(a) for a in np.argsort(-q, kind="stable")]
        if self.relative:
            ranked = ranks_to_nodes(ranked, node_order(self.distance, self.state_holder))
        return next(n for n in ranked if n in candidates)

    # -- helpers ----------------------------------------------------------- #
    def _context(self, holders: list[int]) -> np.ndarray:
        """The server's part of the ``progress`` observation for ``holders``."""
        return progress_context(self.progress, holders, self.step,
                                self.max_steps, self.distance, self.relative)

    def _order_entry(self, lead: int) -> dict:
        """With relative actions, the node ids by rank from ``lead``."""
        if not self.relative:
            return {}
        return {"order": node_order(self.distance, lead).tolist()}

    def _actions(self, holders: list[int]) -> tuple[int, ...]:
        """What the DQN chose, as it chose it: node ids, or ranks from the
        holder its observation was made for."""
        if not self.relative:
            return tuple(holders)
        return nodes_to_ranks(holders, node_order(self.distance, self.state_holder))

    def _attach_policy_if_stale(self, content: RecordDict, partition: int) -> None:
        """Send the policy unless the node keeps the current one."""
        node_id = self.node_ids[partition]
        if (not self.keep_policy_on_nodes
                or self.node_policy_versions.get(node_id) != self.policy_version):
            content[POLICY] = self._policy_record()
            self.node_policy_versions[node_id] = self.policy_version

    def _policy_record(self) -> ArrayRecord:
        """The policy as a record, built once per version."""
        if self._policy_record_of[0] != self.policy_version:
            self._policy_record_of = (self.policy_version,
                                      ArrayRecord(self.agent.get_weights()))
        return self._policy_record_of[1]

    def _ask_lead(self, grid: Grid, observation: np.ndarray,
                  step_config: ConfigRecord) -> list[int]:
        lead = self.selected[0]
        content = RecordDict({HL_CONFIG: self.run_settings, STEP: step_config,
                              METRICS: MetricRecord({"observation": observation.tolist()}
                                                    | self._order_entry(lead))})
        self._attach_policy_if_stale(content, lead)
        message = Message(content, dst_node_id=self.node_ids[lead],
                          message_type=QUERY_CHOOSE)
        (reply,) = self._checked(grid.send_and_receive(
            [message], timeout=self.reply_timeout), expected=1)
        self.node_policy_versions[self.node_ids[lead]] = int(
            reply.content[METRICS]["policy-version"])
        return [int(n) for n in reply.content[METRICS]["next-nodes"]]
