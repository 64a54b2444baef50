"""Every HL setting in one place, with the paper's reference values.

The same settings travel three ways: as command-line flags of ``sim.py``
(``--main-samples``), as Flower run-config keys in ``pyproject.toml``
(``main-samples``) and inside each train message's ``ConfigRecord``. One
dataclass serves all three; :func:`to_flat` / :func:`from_flat` convert it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"  # a run folder's or policy's settings, written by to_flat


MAX_SEED = 2**32 - 1  # numpy's RandomState and Keras' set_random_seed refuse more
PATH_AVERAGE_SLOW = 0.999  # a larger decay (half-life over 693 steps) draws a warning


class ConfigError(ValueError):
    """A setting is out of range; the message names it and the fix."""


@dataclass(frozen=True)
class HLConfig:
    """All settings of an HL run. Defaults are the paper's reference values."""

    # --- task, data and nodes ---
    task: str = ""  # module name or .py path of a task; "" = the reference CNN on --dataset
    dataset: str = "mnist-5k"  # reference task: mnist-5k | digits | mnist | idx:<folder>
    partition: str = "reference"  # reference, disjoint, iid, dirichlet:a, pathological:k, shard:s
    num_nodes: int = 10  # N
    main_samples: int = 400  # samples of the node's own class n % C
    other_samples: int = 100  # samples from the other classes
    # --- node model and local training ---
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3  # Adam, node model
    # --- episode ---
    goal: float = 0.80  # test accuracy that ends the episode
    max_steps: int = 36  # reference: ends once the step counter exceeds 35
    episodes: int = 120
    starter: str = "0"  # node that trains at step 1: an id, random or a list (0,3,7)
    k: int = 1  # nodes per step; k > 1 averages the top-k nodes' models
    reward_base: float = 32.0  # r = reward_base^(acc - goal) - hop - 1
    reward: str = "reference"  # reference (above) | gain: w * (acc - previous acc) - hop - 1
    gain_weight: float = 10.0  # w of the gain reward
    # --- DQN ---
    epsilon_start: float = 1.0
    epsilon_decay: float = 0.02  # eps *= exp(-epsilon_decay) after each episode
    dqn_hidden_1: int = 500
    dqn_hidden_2: int = 200
    dqn_learning_rate: float = 1e-3
    discount: float = 0.9  # gamma
    replay_size: int = 50_000
    replay_batch: int = 128  # sampled after each episode once stored
    dqn_fit_batch: int = 16
    normalize_targets: bool = True  # reference quirk: targets /= ||targets||_2
    pca_components: int = 10  # observation = N x pca_components
    # --- DQN options beyond the reference (defaults = the reference design) ---
    observation: str = "reference"  # reference (PCA of node weights) | progress
    actions: str = "absolute"  # Q-value n = node n | relative: n-th nearest (0 = stay)
    dqn_updates: str = "episode"  # train the DQN once per episode | every step
    target_sync: int = 0  # DQN updates between target-network copies; 0 = none
    double_dqn: bool = False  # online net picks the next action, target net values it
    dqn_loss: str = "mse"  # mse | huber
    reward_scale: float = 1.0  # rewards are multiplied by this before they are stored
    n_step: int = 1  # rewards summed per stored transition before bootstrapping
    truncation: str = "terminal"  # a step-cap transition: terminal | bootstrap from s'
    node_policy_budget_mb: float = 256.0  # nodes keep a policy copy while N copies fit
    # --- validation during training (keeps the best greedy policy) ---
    validate_every: int = 0  # episodes between greedy validations; 0 = never
    validation_seeds: int = 2  # validation episodes, on seeds 301, 302, ...
    validation_first_seed: int = 301  # seed of the first validation episode
    # --- the BestNode baseline (an oracle: j picked on training seeds) ---
    best_node: int = 0  # node j the model moves to after step 1 and stays at
    # --- Flower's strategies as compare baselines (defaults: Flower 1.42's) ---
    fedavg_fraction: float = 1.0  # fraction_train: share of the nodes sampled per round
    # mu of the node epoch's (mu/2)||w - w_received||^2 (Li et al., MLSys 2020) for
    # FedProx, HL and the hop baselines (FedAvg, FedAvgM, FedAdam, FedYogi: none)
    proximal_mu: float = 0.0
    # decay of the server's EMA of the models along an episode's path, which HL and
    # the hop baselines adopt (0 = off; Flower's strategies ignore it)
    path_average: float = 0.0
    server_learning_rate: float = 0.0  # FedAvgM's, FedAdam's/FedYogi's eta; 0 = Flower's
    server_momentum: float = 0.0  # FedAvgM
    # FedAdam's, FedYogi's beta_1, beta_2, tau ("server_": a task's own Adam may
    # name beta_1 and beta_2, and every setting a task function names reaches it)
    server_beta_1: float = 0.9  # decay of the update's first moment
    server_beta_2: float = 0.99  # decay of its second moment
    server_tau: float = 1e-3  # adaptivity (added to sqrt(v))
    # --- communication ---
    distance_file: str = ""  # CSV or .npy; empty = reference matrix
    distance_seed: int = 0  # reference: np.random.seed(0)
    partition_seed: int = 0  # draws iid/dirichlet/pathological/shard partitions
    # --- run ---
    seed: int = 0  # drives data order, model init, exploration, replay
    reply_timeout: float = 600.0  # seconds to wait for a node's reply
    failure_cooldown: int = 5  # steps a failed node is skipped before a retry
    max_failures: int = 50  # failed or rejected replies before the run stops
    tensorboard: bool = False  # also write training curves to <run>/tensorboard/

    def __post_init__(self) -> None:
        """Words are taken in any case and kept in lower case (see
        :data:`WORD_SETTINGS`), whichever way the settings came."""
        for name in WORD_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, _lower_word(value))

    def validate(self) -> HLConfig:
        """Raise :class:`ConfigError` naming the first bad setting."""
        positive = ("num_nodes", "main_samples", "local_epochs", "batch_size",
                    "max_steps", "episodes", "k", "dqn_hidden_1", "dqn_hidden_2",
                    "replay_size", "replay_batch", "dqn_fit_batch",
                    "pca_components", "failure_cooldown", "max_failures", "n_step",
                    "validation_seeds")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{flag_name(name)} must be at least 1, "
                                  f"got {getattr(self, name)}")
        if self.num_nodes < 2:
            raise ConfigError(f"--nodes must be at least 2, got {self.num_nodes}")
        if self.other_samples < 0:
            raise ConfigError("--other-samples must be 0 or more, "
                              f"got {self.other_samples}")
        if self.k > self.num_nodes:
            raise ConfigError(f"--k {self.k} is more than --nodes "
                              f"{self.num_nodes}; use --k {self.num_nodes} or less")
        if not 0.0 < self.goal <= 1.0 or math.isnan(self.goal):
            raise ConfigError(f"--goal must be in (0, 1], got {self.goal}")
        self.starter_nodes  # noqa: B018  (raises ConfigError for a bad --starter)
        if not 0 <= self.best_node < self.num_nodes:
            raise ConfigError(f"--best-node {self.best_node} is not a node; use "
                              f"0..{self.num_nodes - 1} (benchmarks/standalone_nodes.py "
                              "prints the best one)")
        parse_partition(self.partition)
        for name in ("learning_rate", "dqn_learning_rate", "reply_timeout",
                     "reward_base", "gain_weight", "node_policy_budget_mb"):
            value = getattr(self, name)
            if not value > 0 or math.isinf(value):
                raise ConfigError(f"--{flag_name(name)} must be a positive number, "
                                  f"got {value}")
        if not 0.0 <= self.epsilon_start <= 1.0:
            raise ConfigError("--epsilon-start must be in [0, 1], "
                              f"got {self.epsilon_start}")
        if not self.epsilon_decay >= 0:
            raise ConfigError("--epsilon-decay must be 0 or more, "
                              f"got {self.epsilon_decay}")
        if not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f"--discount must be in [0, 1], got {self.discount}")
        # numpy's legacy seeding (Keras, the matrix) refuses more; one range for all
        for name in ("seed", "distance_seed", "partition_seed", "validation_first_seed"):
            if not 0 <= getattr(self, name) <= MAX_SEED:
                raise ConfigError(f"--{flag_name(name)} must be in 0..{MAX_SEED} "
                                  f"(2**32 - 1), got {getattr(self, name)}")
        last_validation = self.validation_first_seed + self.validation_seeds - 1
        if self.validate_every and last_validation > MAX_SEED:
            raise ConfigError(f"--validation-first-seed {self.validation_first_seed} "
                              f"--validation-seeds {self.validation_seeds} would validate "
                              f"on seeds up to {last_validation}, past {MAX_SEED} "
                              f"(2**32 - 1); use --validation-first-seed "
                              f"{MAX_SEED - self.validation_seeds + 1} or less")
        if self.replay_batch > self.replay_size:
            raise ConfigError(f"--replay-batch {self.replay_batch} is more than "
                              f"--replay-size {self.replay_size}, so the DQN would "
                              f"never train; use --replay-batch {self.replay_size} or less")
        self._validate_dqn_options()
        self._validate_flower_strategies()
        return self

    def _validate_dqn_options(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown --{flag_name(name)} {getattr(self, name)!r}; "
                                  f"use {' or '.join(allowed)}")
        if self.actions == "relative" and self.observation != "progress":
            raise ConfigError("--actions relative needs --observation progress (its "
                              "node features are ordered the same way)")
        if self.validate_every < 0:
            raise ConfigError("--validate-every must be 0 (never) or more, "
                              f"got {self.validate_every}")
        if self.target_sync < 0:
            raise ConfigError(f"--target-sync must be 0 (no target network) or more, "
                              f"got {self.target_sync}")
        if self.double_dqn and self.target_sync == 0:
            raise ConfigError("--double-dqn needs a target network (--target-sync 1 or "
                              "more; the random-starter preset sets --double-dqn true "
                              "--target-sync 50); give --target-sync N, or "
                              "--double-dqn false")
        if not self.reward_scale > 0 or math.isinf(self.reward_scale):
            raise ConfigError(f"--reward-scale must be a positive number, "
                              f"got {self.reward_scale}")

    def _validate_flower_strategies(self) -> None:
        """The ranges of Reddi et al. (ICLR 2021, Algorithm 2: beta in [0, 1),
        tau > 0), Hsu et al. (2019: momentum in [0, 1)) and Li et al. (MLSys
        2020: mu >= 0), and the path average's decay in [0, 1) (1 would
        never move from the first model)."""
        if not 0.0 < self.fedavg_fraction <= 1.0:
            raise ConfigError(f"--fedavg-fraction must be in (0, 1], got "
                              f"{self.fedavg_fraction}")
        if not 0.0 <= self.proximal_mu < math.inf:
            raise ConfigError(f"--proximal-mu must be 0 (no proximal term) or a positive "
                              f"number such as 0.01, got {self.proximal_mu}")
        if not 0.0 <= self.path_average < 1.0:
            raise ConfigError(f"--path-average must be in [0, 1) (0 = off; for example "
                              f"0.5), got {self.path_average}")
        if not 0.0 <= self.server_learning_rate < math.inf:
            raise ConfigError("--server-learning-rate must be 0 (Flower's default for "
                              "each strategy) or a positive number, got "
                              f"{self.server_learning_rate}")
        for name in ("server_momentum", "server_beta_1", "server_beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{flag_name(name)} must be in [0, 1) (for example 0.9), "
                                  f"got {getattr(self, name)}")
        if not 0.0 < self.server_tau < math.inf:
            raise ConfigError(f"--server-tau must be a positive number (Flower's default: "
                              f"0.001), got {self.server_tau}")

    def cautions(self, trains_dqn: bool = True, resuming: bool = False) -> list[str]:
        """Settings that are valid but probably not meant, one line each
        (sim.py prints them as warnings; the run goes on). ``trains_dqn``:
        whether the run trains a DQN (not when it plays a given policy, where
        --n-step and --replay-batch do nothing); ``resuming``: a --resume,
        which may change --episodes but not --replay-batch."""
        found = []
        decay = self.path_average
        if decay > PATH_AVERAGE_SLOW:
            found.append(f"--path-average {decay}: the average's half-life is "
                         f"{math.log(0.5) / math.log(decay):.0f} steps (ln 0.5 / ln d) "
                         f"against at most {self.max_steps} per episode, so it will barely "
                         "follow the training; 0.5 to 0.9 halve in 1 to 7 steps")
        if trains_dqn and self.n_step > self.max_steps:
            found.append(f"--n-step {self.n_step} is more than --max-steps "
                         f"{self.max_steps}: every return sums the rewards to its "
                         f"episode's end, as --n-step {self.max_steps} would")
        most_transitions = self.episodes * self.max_steps  # one per step
        if trains_dqn and most_transitions < self.replay_batch:
            plural = "" if self.episodes == 1 else "s"
            enough = math.ceil(self.replay_batch / self.max_steps)
            found.append(f"{self.episodes} episode{plural} of at most {self.max_steps} steps "
                         f"store at most {most_transitions} transitions, fewer than "
                         f"--replay-batch {self.replay_batch}, so the DQN will never train "
                         f"(it fits once its replay holds that many); give --episodes "
                         f"{enough} or more (more if episodes reach the goal early"
                         + ("; a resumed run keeps its --replay-batch)" if resuming else
                            f"), or --replay-batch {most_transitions} or less"))
        return found

    def replace(self, **changes: Any) -> HLConfig:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    @property
    def policy_parameters(self) -> int:
        """Weights of the DQN: 10N -> hidden 1 -> hidden 2 -> N, with biases."""
        sizes = [self.observation_size, self.dqn_hidden_1, self.dqn_hidden_2,
                 self.num_nodes]
        return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))

    @property
    def starter_nodes(self) -> tuple[int, ...]:
        """The nodes an episode may start at (see :mod:`hl_flower.starters`)."""
        from .starters import starter_nodes

        return starter_nodes(self.starter, self.num_nodes)

    @property
    def nodes_keep_policy(self) -> bool:
        """Whether every node keeping a float32 copy of the policy between its
        visits fits ``node_policy_budget_mb`` (else it travels each decision)."""
        return self.num_nodes * self.policy_parameters * 4 <= self.node_policy_budget_mb * 1e6

    @property
    def observation_size(self) -> int:
        """Length of the DQN input vector: N x pca_components (reference) or
        the progress features (see :mod:`hl_flower.progress_observation`)."""
        return observation_size(self.observation, self.num_nodes, self.pca_components)


# Features of the ``progress`` observation: per node (holder, visits, steps
# since the last visit, distance from the holder) and per step (accuracy,
# step, size of the holder's update).
PROGRESS_PER_NODE = 4
PROGRESS_GLOBAL = 3


def observation_size(observation: str, num_nodes: int, pca_components: int) -> int:
    """Length of the DQN's input for the ``observation`` kind."""
    if observation == "progress":
        return PROGRESS_PER_NODE * num_nodes + PROGRESS_GLOBAL
    return num_nodes * pca_components

# Settings that take one of a few words.
CHOICES = {"reward": ("reference", "gain"), "observation": ("reference", "progress"),
           "actions": ("absolute", "relative"), "dqn_updates": ("episode", "step"),
           "dqn_loss": ("mse", "huber"), "truncation": ("terminal", "bootstrap")}
# Settings that are words (or start with one), matched in any case and kept in
# lower case; a dataset's idx:<folder> keeps its folder as given.
WORD_SETTINGS = (*CHOICES, "starter", "partition", "dataset")
# What a true/false setting takes, in any case.
SWITCH_WORDS = {"true": True, "yes": True, "on": True, "1": True,
                "false": False, "no": False, "off": False, "0": False}
SWITCH_FORMS = "true or false (or yes/no, on/off, 1/0)"


def _lower_word(text: str) -> str:
    """``text`` stripped, in lower case up to its first colon."""
    word, colon, rest = text.strip().partition(":")
    return word.lower() + colon + rest


SLICED_PARTITIONS = ("reference", "disjoint")  # sized by --main-samples/--other-samples
# Partitions that Flower Datasets' partitioners draw over the whole training
# set, with what their parameter means ("" = none).
DRAWN_PARTITIONS = {"iid": "", "dirichlet": "alpha", "pathological": "classes per node",
                    "shard": "shards per node"}
PARTITION_FORMS = ("reference, disjoint, iid, dirichlet:<alpha>, "
                   "pathological:<classes per node> or shard:<shards per node>")


@dataclass(frozen=True)
class PartitionSpec:
    """A parsed ``--partition``: its kind and, for ``dirichlet``, ``pathological``
    and ``shard``, its parameter (alpha > 0; classes or shards per node >= 1)."""

    kind: str
    parameter: float = 0.0

    @property
    def drawn(self) -> bool:
        """Whether a Flower Datasets partitioner draws it (sizes are its own,
        not ``--main-samples``/``--other-samples``)."""
        return self.kind in DRAWN_PARTITIONS


def parse_partition(text: str) -> PartitionSpec:
    """``--partition`` as a :class:`PartitionSpec`.

    Raises
    ------
    ConfigError
        An unknown kind, a parameter where none belongs or a missing or bad
        one (alpha not a positive finite number; classes or shards per node
        not a whole number >= 1); one line naming the fix.
    """
    kind, colon, value = text.strip().partition(":")
    meaning = DRAWN_PARTITIONS.get(kind)
    if kind not in SLICED_PARTITIONS and meaning is None:
        raise ConfigError(f"unknown --partition {text!r}; use {PARTITION_FORMS}")
    if not meaning:
        if colon:
            raise ConfigError(f"--partition {kind} takes no parameter, got {text!r}; "
                              f"use --partition {kind}")
        return PartitionSpec(kind)
    if kind == "dirichlet":
        return PartitionSpec(kind, _positive_alpha(text, value))
    return PartitionSpec(kind, _whole_count(text, kind, meaning, value))


def _positive_alpha(text: str, value: str) -> float:
    try:
        alpha = float(value)
    except ValueError:
        alpha = math.nan
    if not 0 < alpha < math.inf:
        raise ConfigError(f"--partition {text}: alpha must be a positive number; use "
                          "for example dirichlet:0.5 (smaller alpha, more skewed nodes)")
    return alpha


def _whole_count(text: str, kind: str, meaning: str, value: str) -> int:
    if not value.strip().isdecimal() or int(value) < 1:
        raise ConfigError(f"--partition {text}: {meaning} must be a whole number, 1 or "
                          f"more; use for example {kind}:2")
    return int(value)


def flag_name(field_name: str) -> str:
    """Command-line flag of a field (``main_samples`` -> ``main-samples``)."""
    return FLAG_ALIASES.get(field_name, field_name).replace("_", "-")


def _key(field_name: str) -> str:
    """Kebab-case run-config key of a field (``num_nodes`` -> ``num-nodes``)."""
    return field_name.replace("_", "-")


# Flags whose command-line name differs from the field name.
FLAG_ALIASES = {"num_nodes": "nodes"}

# "--flag" and, when one follows, a value: a number, true/false, a quoted
# text, or a token with a path's or a partition's punctuation in it.
_FLAG_IN_TEXT = re.compile(r"--([a-z][a-z0-9-]*)"
                           r"(?: (-?[0-9.][\w.+-]*|true|false|'[^']*'|\S*[/:.]\S*))?")
_KEY_NOTE = re.compile(r" \(run-config key [a-z0-9-]+\)")


def in_run_config_words(message: str) -> str:
    """``message``, written for sim.py's flags, as a ``flwr run`` user
    reads it: each setting's ``--flag VALUE`` becomes ``key=VALUE`` and a
    lone ``--flag`` its run-config key (``--nodes 1`` -> ``num-nodes=1``).
    Flags that are not settings (``--federation-config``) stay."""
    keys = {flag_name(f.name): _key(f.name) for f in fields(HLConfig)}

    def run_config_words(match: re.Match) -> str:
        key = keys.get(match[1])
        if key is None:
            return match[0]
        return f"{key}={match[2]}" if match[2] else key

    return _FLAG_IN_TEXT.sub(run_config_words, _KEY_NOTE.sub("", message))


def to_flat(config: HLConfig) -> dict[str, Any]:
    """Kebab-case dict of every setting (Flower run config / ConfigRecord)."""
    return {_key(f.name): getattr(config, f.name) for f in fields(config)}


def from_flat(values: dict[str, Any], base: HLConfig | None = None) -> HLConfig:
    """Build a config from kebab-case keys; unknown keys are an error."""
    base = base or HLConfig()
    by_key = {_key(f.name): f for f in fields(HLConfig)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        field = by_key.get(key)
        if field is None:
            raise ConfigError(f"unknown setting {key!r}; known settings: "
                              + ", ".join(sorted(by_key)))
        changes[field.name] = _coerce(field.name, value, type(getattr(base, field.name)))
    return base.replace(**changes)


def saved_config(folder: Path) -> HLConfig:
    """The settings a run folder or policy was made with (its ``config.json``)."""
    saved = Path(folder) / CONFIG_FILE
    try:
        return from_flat(json.loads(saved.read_text()))
    except (OSError, json.JSONDecodeError, AttributeError):
        raise ConfigError(f"{saved} is missing or not a settings file; give a folder "
                          "written by sim.py (a run, compare or eval folder, or a "
                          "policy)") from None


# How a run logs, not what it runs: an eval or compare of a policy takes these
# from its own command line, not from the policy's config.json.
RUN_LOGGING = ("tensorboard",)


def policy_config(folder: Path, base: HLConfig) -> HLConfig:
    """The settings a policy was trained with (:func:`saved_config`), but
    :data:`RUN_LOGGING`'s, which are ``base``'s (the preset's)."""
    return saved_config(folder).replace(**{name: getattr(base, name)
                                           for name in RUN_LOGGING})


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Convert a flag's or run-config value to the field's type, or explain
    why not (naming the flag, and the run-config key where it differs)."""
    flag, key = flag_name(name), _key(name)
    where = f"--{flag}" + ("" if flag == key else f" (run-config key {key})")
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, got the boolean {str(value).lower()}")
    try:
        if kind is bool:
            return SWITCH_WORDS[value.strip().lower()] if isinstance(value, str) else bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError, KeyError):
        kind_name = {"int": "a whole number", "float": "a number", "bool": SWITCH_FORMS,
                     "str": "text"}.get(kind.__name__, kind.__name__)
        raise ConfigError(f"{where} must be {kind_name}, got {value!r}") from None


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a laptop CPU: the reference environment on mnist-5k with
    # fewer episodes, a faster epsilon decay (0.06 in episode 12) and a smaller
    # replay minibatch, so the DQN trains from episode 2 and its greedy
    # choices show up.
    "quick": {"episodes": 12, "epsilon-decay": 0.25, "replay-batch": 32},
    # Every reference setting of the paper (120 episodes: hours on a CPU).
    "paper": {},
    # The reference design with the options that measurably helped
    # (docs/results.md): TD targets not divided by the matrix norm, and the
    # greedy policy validated every 5 episodes on 3 seeds, the best one kept
    # in <run>/best. A third of the paper's episodes, with epsilon down to 0.02
    # by episode 40.
    "improved": {"normalize-targets": False, "episodes": 40, "epsilon-decay": 0.1,
                 "validate-every": 5, "validation-seeds": 3},
    # Episodes that start anywhere (docs/results.md section 14): `improved`
    # with a starter drawn per episode, the progress observation (which
    # names the holder), validation on 10 seeds from 401 (one episode
    # starting at each node, apart from the evaluation seeds 301-320), and
    # the DQN trained after every step on 3-step returns with a target
    # network (a copy every 50 updates) and Double DQN targets.
    "random-starter": {"normalize-targets": False, "episodes": 40, "epsilon-decay": 0.1,
                       "validate-every": 5, "validation-seeds": 10,
                       "validation-first-seed": 401, "starter": "random",
                       "observation": "progress", "dqn-updates": "step", "n-step": 3,
                       "target-sync": 50, "double-dqn": True},
}


def preset(name: str) -> HLConfig:
    """Config of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; use one of: "
                          + ", ".join(PRESETS))
    return from_flat(PRESETS[name])
