"""The DQN agent that picks the next node (the paper's reference design).

An MLP maps the observation (N x 10 PCA coordinates, flattened) to one
Q-value per node. After every episode the server samples a minibatch from the
replay memory, writes the TD targets below and fits one epoch. Nodes only need
the forward pass, done in numpy from the weights they were sent.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import keras  # noqa: E402
import numpy as np

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .config import CHOICES, HLConfig
from .policy_file import POLICY_META, POLICY_WEIGHTS, check_policy_fits, policy_meta


@dataclass(frozen=True)
class Transition:
    """One decision: in ``state`` the agent sent the model to ``actions``.

    ``reward`` is the discounted sum of the ``steps`` rewards that followed
    (1 unless n-step returns merged several steps) and ``next_state`` the
    observation ``steps`` decisions later, so the TD target bootstraps with
    ``discount ** steps``. ``done``: the episode ended with ``next_state``
    (goal or step cap); ``truncated``: it ended only because of the step cap,
    a time limit rather than a terminal state (see :meth:`terminal`).
    """

    state: np.ndarray
    actions: tuple[int, ...]
    reward: float
    next_state: np.ndarray
    done: bool
    steps: int = 1
    truncated: bool = False

    def terminal(self, truncation: str) -> bool:
        """Whether the TD target stops at the reward (no bootstrap).

        An episode that reached the goal is terminal. One that ended only at
        the step cap is terminal with ``truncation="terminal"`` (the
        reference) and bootstraps from ``next_state`` with
        ``truncation="bootstrap"`` (Pardo et al., "Time Limits in
        Reinforcement Learning", ICML 2018: partial-episode bootstrapping).
        """
        return self.done and not (self.truncated and truncation == "bootstrap")


class NStepReturns:
    """Merges one-step transitions into n-step ones within an episode.

    :meth:`add` takes each decision's one-step transition as it happens and
    returns the transitions that are complete: the one made ``n`` decisions
    ago once n rewards have followed it, and every pending one when the
    episode ends (those sum fewer rewards and share the last one's next
    state, ``done`` and ``truncated``: at the goal they bootstrap from
    nothing; at the step cap with ``truncation="bootstrap"`` from the state
    at the cap, with ``discount ** steps``).
    """

    def __init__(self, n: int, discount: float) -> None:
        self.n = n
        self.discount = discount
        self.pending: deque[Transition] = deque()

    def add(self, transition: Transition) -> list[Transition]:
        """Queue ``transition``; return the merged transitions now complete."""
        self.pending.append(transition)
        complete = []
        if len(self.pending) == self.n:
            complete.append(self._merge_and_drop_first())
        while transition.done and self.pending:
            complete.append(self._merge_and_drop_first())
        return complete

    def reset(self) -> None:
        """Forget an unfinished episode."""
        self.pending.clear()

    def _merge_and_drop_first(self) -> Transition:
        first, last = self.pending[0], self.pending[-1]
        summed = sum(self.discount ** i * t.reward for i, t in enumerate(self.pending))
        merged = Transition(first.state, first.actions, summed, last.next_state,
                            last.done, steps=len(self.pending), truncated=last.truncated)
        self.pending.popleft()
        return merged


def epsilon_at(episode: int, start: float, decay: float) -> float:
    """Exploration rate during 0-based ``episode``: start * exp(-decay)^episode."""
    return start * math.exp(-decay * episode)


def build_q_network(config: HLConfig) -> keras.Model:
    """input 10*N -> Dense 500 relu -> Dense 200 relu -> Dense N linear; Adam,
    MSE (reference) or Huber loss."""
    model = keras.Sequential([
        keras.Input(shape=(config.observation_size,)),
        keras.layers.Dense(config.dqn_hidden_1, activation="relu"),
        keras.layers.Dense(config.dqn_hidden_2, activation="relu"),
        keras.layers.Dense(config.num_nodes, activation="linear"),
    ])
    loss = keras.losses.Huber() if config.dqn_loss == "huber" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(config.dqn_learning_rate), loss=loss)
    return model


def q_values(weights: list[np.ndarray], observations: np.ndarray) -> np.ndarray:
    """Forward pass of the Q-network in numpy (rows of ``observations``)."""
    hidden = np.asarray(observations, np.float32)
    layers = list(zip(weights[0::2], weights[1::2], strict=True))
    for i, (kernel, bias) in enumerate(layers):
        hidden = hidden @ kernel + bias
        if i < len(layers) - 1:
            hidden = np.maximum(hidden, 0.0)
    return hidden


def choose_nodes(q: np.ndarray, k: int, epsilon: float,
                 rng: np.random.Generator) -> list[int]:
    """Epsilon-greedy choice of ``k`` distinct nodes.

    With probability ``epsilon`` k nodes uniformly at random, otherwise the k
    nodes with the highest Q-values (best first).
    """
    if rng.random() < epsilon:
        return [int(n) for n in rng.choice(len(q), size=k, replace=False)]
    return [int(n) for n in np.argsort(-q, kind="stable")[:k]]


def next_state_values(online_next_q: np.ndarray, target_next_q: np.ndarray | None,
                      double: bool) -> np.ndarray:
    """Value of each next state for the TD target.

    No target network (reference): max_a Q_online(s', a).
    Target network: max_a Q_target(s', a).
    Double DQN: Q_target(s', argmax_a Q_online(s', a)), the online network
    choosing and the target network valuing, which curbs over-estimation.
    """
    if target_next_q is None:
        return online_next_q.max(axis=1)
    if not double:
        return target_next_q.max(axis=1)
    chosen = np.argmax(online_next_q, axis=1)
    return target_next_q[np.arange(len(chosen)), chosen]


def td_targets(current_q: np.ndarray, next_values: np.ndarray,
               actions: list[tuple[int, ...]], rewards: np.ndarray,
               dones: np.ndarray, discount: float | np.ndarray,
               normalize: bool) -> np.ndarray:
    """Targets for a minibatch: Q(s) with the taken actions' entries replaced.

    y[a] = r                    where ``dones`` (a terminal next state)
    y[a] = r + discount * V(s') otherwise, V from :func:`next_state_values`
    (``discount`` may be one per row: gamma ** steps for n-step returns).
    ``dones`` are :meth:`Transition.terminal`: the goal, and the step cap
    unless ``truncation="bootstrap"``. The reference then divides the whole
    matrix by its L2 norm. Shapes: ``current_q`` (B, N), ``next_values``,
    ``rewards``, ``dones`` and a per-row ``discount`` (B,); returns (B, N)
    float32.
    """
    targets = np.array(current_q, dtype=np.float64, copy=True)
    bootstrap = np.where(dones, 0.0, discount * np.asarray(next_values))
    for row, taken in enumerate(actions):
        targets[row, list(taken)] = rewards[row] + bootstrap[row]
    if normalize:
        norm = np.linalg.norm(targets)
        if norm > 0:
            targets = targets / norm
    return targets.astype(np.float32)


def policy_fingerprint(weights: list[np.ndarray]) -> int:
    """A 56-bit id of the weights' content, so a node can tell whether the
    policy it holds is the one the server means (any run, any process)."""
    digest = hashlib.blake2b(digest_size=7)
    for array in weights:
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return int.from_bytes(digest.digest(), "big") or 1  # 0 means "no policy"


class DQNAgent:
    """Q-network, replay memory, optional target network and the training step."""

    def __init__(self, config: HLConfig, seed: int) -> None:
        """Raises ValueError for an unknown ``config.truncation``."""
        if config.truncation not in CHOICES["truncation"]:
            raise ValueError(f"truncation must be one of {CHOICES['truncation']}, "
                             f"got {config.truncation!r}")
        self.config = config
        keras.utils.set_random_seed(seed)
        self.network = build_q_network(config)
        self.memory: deque[Transition] = deque(maxlen=config.replay_size)
        self.rng = np.random.default_rng([seed, 1])
        self.updates = 0  # minibatch fits done so far
        self.target_weights: list[np.ndarray] | None = (
            self.get_weights() if config.target_sync else None)

    def remember(self, transition: Transition) -> None:
        """Store one transition (oldest dropped beyond ``replay_size``)."""
        self.memory.append(transition)

    def get_weights(self) -> list[np.ndarray]:
        """Network weights, in the order :func:`q_values` expects."""
        return self.network.get_weights()

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Replace the network weights."""
        self.network.set_weights(weights)

    def train(self) -> float | None:
        """Fit one epoch on a random minibatch; None until enough is stored."""
        cfg = self.config
        if len(self.memory) < cfg.replay_batch:
            return None
        picks = self.rng.choice(len(self.memory), cfg.replay_batch, replace=False)
        states, targets = self.minibatch_targets([self.memory[i] for i in picks])
        history = self.network.fit(states, targets, epochs=1,
                                   batch_size=cfg.dqn_fit_batch,
                                   shuffle=False, verbose=0)
        self.updates += 1
        if cfg.target_sync and self.updates % cfg.target_sync == 0:
            self.target_weights = self.get_weights()
        return float(history.history["loss"][-1])

    def minibatch_targets(self, batch: list[Transition]) -> tuple[np.ndarray, np.ndarray]:
        """The states of ``batch`` and the TD targets the network is fitted to."""
        cfg = self.config
        states = np.stack([t.state for t in batch]).astype(np.float32)
        next_states = np.stack([t.next_state for t in batch]).astype(np.float32)
        weights = self.get_weights()
        target_next = (None if self.target_weights is None
                       else q_values(self.target_weights, next_states))
        targets = td_targets(
            q_values(weights, states),
            next_state_values(q_values(weights, next_states), target_next,
                              cfg.double_dqn),
            [t.actions for t in batch],
            np.array([t.reward for t in batch]),
            np.array([t.terminal(cfg.truncation) for t in batch]),
            cfg.discount ** np.array([t.steps for t in batch]), cfg.normalize_targets)
        return states, targets

    def save(self, folder: Path) -> None:
        """Write ``policy.weights.h5`` and ``policy.json`` (shape metadata)."""
        self.network.save_weights(folder / POLICY_WEIGHTS)
        (folder / POLICY_META).write_text(json.dumps(policy_meta(self.config), indent=2))

    def load(self, folder: Path) -> None:
        """Load weights saved by :meth:`save`, refusing another shape."""
        check_policy_fits(folder, self.config)
        weights_path = folder / POLICY_WEIGHTS
        try:
            with warnings.catch_warnings():  # the optimizer's slots are not needed
                warnings.filterwarnings("ignore", "Skipping variable loading")
                self.network.load_weights(weights_path)
        except Exception as err:  # noqa: BLE001 - h5py/keras raise many kinds
            raise ValueError(f"{weights_path} is corrupt or not a policy "
                             f"({type(err).__name__})") from None
        if self.target_weights is not None:
            self.target_weights = self.get_weights()
