"""The episode loop every strategy here shares: rounds until the goal or the cap.

An episode starts from a fresh model and plays Flower rounds until the test
accuracy reaches the goal or the step cap. What a round does (which nodes
train, how their models are combined, who gets the model next) is the
strategy's ``play_round``; the loop around it (evaluation, reward, hop cost,
traffic, timing, results) is written once here, so HL, the hop baselines and
FedAvg are measured the same way.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord
from flwr.common import log
from flwr.serverapp import Grid

from hl_flower.config import ConfigError, from_flat
from hl_flower.prompt_delivery import STOCK_NOTE, tune_grid
from hl_flower.reward import RewardFunction, paper_reward

from .errors import NodeFailure, RunInterrupted  # noqa: F401  (re-exported)
from .metered_grid import MeteredGrid, Traffic


@dataclass
class RoundOutcome:
    """What one round produced, before the server evaluates it."""

    arrays: ArrayRecord  # the model after the round
    holders: list[int]  # partitions that trained
    next_nodes: list[int]  # who trains next (empty for FedAvg: it samples)
    observation: np.ndarray | None  # the DQN's state (HL only)
    train_loss: float
    time_train: float  # on the node(s): local epoch
    time_observe: float  # on the node: observation and DQN choice
    failures: list[str] = field(default_factory=list)  # "node: why", retried


@dataclass
class StepResult:
    """What happened in one step (one Flower round)."""

    episode: int
    step: int
    holders: list[int]  # partitions that trained this step
    next_nodes: list[int]  # the choice for the next step (empty when done)
    accuracy: float
    reward: float
    hop_cost: float  # NaN where no hop is defined (FedAvg)
    bytes_sent: int  # array payloads, both directions, counted on the grid
    model_transfers: int  # messages carrying the model, both directions
    policy_sent: bool
    train_loss: float
    time_train: float  # on the node: local epoch
    time_observe: float  # on the node: observation and DQN choice
    time_evaluate: float  # on the server: test-set evaluation
    time_step: float  # whole round as the server saw it
    done: bool
    failures: list[str] = field(default_factory=list)  # "node: why", retried

    @property
    def completed(self) -> bool:
        """False for the step a run stopped in (its accuracy is NaN)."""
        return not math.isnan(self.accuracy)


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
    model_transfers: int = 0
    failures: int = 0
    starter: int | None = None  # the node that trained first (None: no holder)


def node_settings_record(settings: Mapping[str, Any] | None, **own: Any) -> ConfigRecord:
    """The run config the nodes read, as a ConfigRecord: ``settings`` (kebab-case
    run-config keys, e.g. ``learning-rate``) with the strategy's ``own`` values
    over them. Raises ValueError for a key or value the nodes would refuse."""
    values = dict(settings or {}) | {key.replace("_", "-"): v for key, v in own.items()}
    try:
        from_flat(values)
    except ConfigError as err:
        raise ValueError(f"node_settings: {err}") from None
    return ConfigRecord(values)


# Unique per episode in this server process: nodes keep per-episode state
# (Adam's moments) under it, so runs that reuse episode numbers never mix.
_EPISODE_KEYS = itertools.count(1)

StepCallback = Callable[[StepResult], None]
EpisodeCallback = Callable[[EpisodeResult], None]


class EpisodeLoop:
    """Mixin: episodes of rounds until the goal, for any ``play_round``.

    Subclasses call :meth:`set_episode_rules` in their constructor and
    implement ``play_round``; the hooks ``begin_episode``, ``after_step``,
    ``after_episode``, ``epsilon`` and ``hop_cost`` have neutral defaults.
    """

    num_nodes: int
    goal: float
    max_steps: int
    reward_fn: RewardFunction
    reply_timeout: float
    distance: np.ndarray | None
    round_failures: list[str]  # "node: why" of the round being played, as they happen

    def set_episode_rules(self, *, num_nodes: int, goal: float, max_steps: int,
                          reward: RewardFunction | None, reply_timeout: float,
                          distance: np.ndarray | None) -> None:
        """What every strategy here shares: N nodes, an episode that ends
        at test accuracy ``goal`` (0-1) or after ``max_steps`` rounds, the
        reward of a step (default: the paper's for ``goal``), seconds to wait
        for a reply, and the N x N hop distances (None: no hop cost).
        Raises ValueError for a setting out of range."""
        if num_nodes < 1 or max_steps < 1:
            raise ValueError(f"num_nodes and max_steps must be at least 1, got "
                             f"{num_nodes} and {max_steps}")
        if not 0.0 < goal <= 1.0:
            raise ValueError(f"goal must be a test accuracy in (0, 1], got {goal}")
        if not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be positive seconds, got {reply_timeout}")
        if distance is not None and np.shape(distance) != (num_nodes, num_nodes):
            raise ValueError(f"distance must be {num_nodes} x {num_nodes}, got "
                             f"shape {np.shape(distance)}")
        self.num_nodes, self.goal, self.max_steps = num_nodes, goal, max_steps
        self.reward_fn = reward or paper_reward(goal)
        self.reply_timeout = reply_timeout
        self.distance = distance
        self.round_failures = []

    # -- hooks ----------------------------------------------------------- #
    def prepare(self, grid: Grid) -> None:
        """Once before the first episode (e.g. learn which node is which)."""

    def begin_episode(self, episode: int) -> None:
        """Reset per-episode state."""

    def play_round(self, grid: Grid, server_round: int, arrays: ArrayRecord,
                   step_config: ConfigRecord) -> RoundOutcome:
        """Train for one step and say who trains next."""
        raise NotImplementedError

    def after_step(self, outcome: RoundOutcome, accuracy: float, reward: float,
                   done: bool) -> None:
        """See each step's outcome and score (HL stores transitions here)."""

    def after_episode(self) -> float | None:
        """Between episodes (HL trains the DQN here); returns a loss or None."""
        return None

    def epsilon(self, episode: int) -> float:
        """Exploration rate of the episode (0 for rules)."""
        return 0.0

    def step_settings(self, episode: int, step: int, epsilon: float) -> dict:
        """Extra entries for the round's step config."""
        return {}

    def hop_cost(self, previous: list[int] | None, holders: list[int]) -> float:
        """Distance the model travelled from the last lead holder to this one."""
        if self.distance is None:
            return math.nan
        if previous is None:
            return 0.0
        return float(self.distance[previous[0], holders[0]])

    def episode_starter(self) -> int | None:
        """The node that trains first in this episode (None: no single holder)."""
        return None

    def attempted_nodes(self) -> list[int]:
        """The nodes the current round was training on (for a round that
        never completes)."""
        return []

    def _unfinished_step(self, episode: int, step: int, used: Traffic,
                         seconds: float) -> StepResult:
        """The row of a step the run stopped in: who was tried, what failed,
        what travelled; no accuracy, reward or loss (NaN)."""
        nan = math.nan
        return StepResult(episode, step, self.attempted_nodes(), [], nan, nan, nan,
                          used.bytes, used.model_transfers, used.policy_transfers > 0,
                          nan, nan, nan, nan, seconds, False, list(self.round_failures))

    # -- the loop -------------------------------------------------------- #
    def start(  # type: ignore[override]  # episodes, not a fixed round count
        self, grid: Grid, new_model: Callable[[int], ArrayRecord],
        evaluate_fn: Callable[[ArrayRecord], float], episodes: int = 1,
        on_step: StepCallback | None = None, on_episode: EpisodeCallback | None = None,
        first_episode: int = 0,
    ) -> list[EpisodeResult]:
        """Run ``episodes`` episodes, each from ``new_model(episode)``.

        ``evaluate_fn`` returns the test accuracy of a model. ``on_step`` and
        ``on_episode`` see the results as they happen.
        """
        if not tune_grid(grid):
            log(WARNING, STOCK_NOTE)
        grid = MeteredGrid.wrap(grid)
        self.prepare(grid)
        results = []
        server_round = 0
        for episode in range(first_episode, first_episode + episodes):
            result, server_round = self.run_episode(
                grid, episode, new_model(episode), evaluate_fn, server_round, on_step)
            if on_episode:
                on_episode(result)
            results.append(result)
        return results

    def run_episode(self, grid: MeteredGrid, episode: int, arrays: ArrayRecord,
                    evaluate_fn: Callable[[ArrayRecord], float], server_round: int,
                    on_step: StepCallback | None = None) -> tuple[EpisodeResult, int]:
        """Play rounds from ``arrays`` until the goal or the step cap."""
        started = time.perf_counter()
        epsilon = self.epsilon(episode)
        episode_key = next(_EPISODE_KEYS)
        self.begin_episode(episode)
        previous: list[int] | None = None
        total_reward = cost = 0.0
        traffic = Traffic()
        failures = 0
        path: list[int] = []
        accuracy = 0.0
        for step in range(1, self.max_steps + 1):
            server_round += 1
            step_started, before = time.perf_counter(), grid.traffic
            step_config = ConfigRecord({
                "episode": episode, "episode-key": episode_key, "step": step,
                "epsilon": epsilon, "server-round": server_round, "decide": False,
                "policy-version": 0} | self.step_settings(episode, step, epsilon))
            self.round_failures = []
            try:
                outcome = self.play_round(grid, server_round, arrays, step_config)
            except NodeFailure as failure:
                if on_step and not isinstance(failure, RunInterrupted):
                    on_step(self._unfinished_step(episode, step, grid.traffic - before,
                                                  time.perf_counter() - step_started))
                raise
            arrays = outcome.arrays
            evaluated = time.perf_counter()
            accuracy, previous_accuracy = float(evaluate_fn(arrays)), accuracy
            time_evaluate = time.perf_counter() - evaluated
            hop = self.hop_cost(previous, outcome.holders)
            reward = self.reward_fn(accuracy, previous_accuracy, hop)
            done = accuracy >= self.goal or step >= self.max_steps
            self.after_step(outcome, accuracy, reward, done)
            used = grid.traffic - before
            traffic += used
            total_reward += reward
            cost += hop
            failures += len(outcome.failures)
            path.append(outcome.holders[0])
            if on_step:
                on_step(StepResult(
                    episode, step, outcome.holders, [] if done else outcome.next_nodes,
                    accuracy, reward, hop, used.bytes, used.model_transfers,
                    used.policy_transfers > 0, outcome.train_loss, outcome.time_train,
                    outcome.time_observe, time_evaluate,
                    time.perf_counter() - step_started, done, outcome.failures))
            if done:
                break
            previous = outcome.holders
        dqn_loss = self.after_episode()
        return EpisodeResult(
            episode, step, accuracy, cost, total_reward, epsilon, accuracy >= self.goal,
            traffic.bytes, dqn_loss, time.perf_counter() - started, path,
            traffic.model_transfers, failures, self.episode_starter()), server_round
