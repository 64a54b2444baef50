"""HL settings (hl_flower.config): reference defaults, flat round trip, validation, presets."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hl_flower.config import ConfigError, HLConfig, from_flat, preset, to_flat

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_defaults_are_the_reference_settings() -> None:
    c = HLConfig()
    assert c.dataset == "mnist-5k"
    assert c.partition == "reference"
    assert c.num_nodes == 10
    assert (c.main_samples, c.other_samples) == (400, 100)
    assert c.local_epochs == 1
    assert c.batch_size == 32
    assert c.learning_rate == 1e-3
    assert c.goal == 0.8
    assert c.max_steps == 36
    assert c.episodes == 120
    assert c.starter == "0" and c.starter_nodes == (0,)
    assert c.k == 1
    assert c.reward_base == 32.0
    assert c.epsilon_start == 1.0
    assert c.epsilon_decay == 0.02
    assert (c.dqn_hidden_1, c.dqn_hidden_2) == (500, 200)
    assert c.dqn_learning_rate == 1e-3
    assert c.replay_size == 50_000
    assert c.replay_batch == 128
    assert c.dqn_fit_batch == 16
    assert c.discount == 0.9
    assert c.normalize_targets is True
    assert c.pca_components == 10
    assert c.distance_file == ""
    assert c.distance_seed == 0


def test_defaults_validate() -> None:
    assert HLConfig().validate() == HLConfig()


def test_observation_size_is_nodes_times_components() -> None:
    assert HLConfig().observation_size == 100
    assert HLConfig(num_nodes=4, pca_components=3).observation_size == 12


def test_config_is_immutable_and_replace_copies() -> None:
    c = HLConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_nodes = 3  # type: ignore[misc]
    changed = c.replace(num_nodes=4)
    assert changed.num_nodes == 4
    assert c.num_nodes == 10


def test_to_flat_uses_kebab_case_keys_for_every_field() -> None:
    flat = to_flat(HLConfig())
    assert len(flat) == len(dataclasses.fields(HLConfig))
    assert flat["num-nodes"] == 10
    assert flat["main-samples"] == 400
    assert flat["normalize-targets"] is True
    assert all("_" not in key for key in flat)


def test_flat_round_trip_restores_the_config() -> None:
    config = HLConfig(dataset="digits", partition="disjoint", num_nodes=4, main_samples=50,
                      other_samples=0, goal=0.5, k=2, normalize_targets=False,
                      distance_file="/tmp/d.csv", reply_timeout=12.5)
    assert from_flat(to_flat(config)) == config
    assert from_flat(to_flat(HLConfig())) == HLConfig()


def test_from_flat_applies_changes_on_the_base() -> None:
    base = HLConfig(episodes=8)
    config = from_flat({"num-nodes": 4, "goal": 0.5}, base=base)
    assert (config.num_nodes, config.goal, config.episodes) == (4, 0.5, 8)


def test_from_flat_converts_strings_to_field_types() -> None:
    config = from_flat({"num-nodes": "4", "goal": "0.5", "normalize-targets": "false",
                        "learning-rate": 1})
    assert config.num_nodes == 4 and isinstance(config.num_nodes, int)
    assert config.goal == 0.5 and isinstance(config.goal, float)
    assert config.normalize_targets is False
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)


def test_from_flat_accepts_integral_float_for_int() -> None:
    assert from_flat({"episodes": 5.0}).episodes == 5


def test_from_flat_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'nodez'"):
        from_flat({"nodez": 4})


def test_from_flat_rejects_snake_case_key() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        from_flat({"num_nodes": 4})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num-nodes", "ten"),
        ("num-nodes", 2.5),
        ("episodes", float("nan")),
        ("goal", "high"),
        ("goal", None),
        ("normalize-targets", "maybe"),
        ("k", [1]),
    ],
)
def test_from_flat_rejects_badly_typed_values(key: str, value: object) -> None:
    flag = r"--nodes \(run-config key num-nodes\)" if key == "num-nodes" else f"--{key}"
    with pytest.raises(ConfigError, match=f"^{flag} must be "):
        from_flat({key: value})


def test_words_take_any_case_and_are_stored_in_lower_case() -> None:
    config = from_flat({"truncation": "BOOTSTRAP", "starter": " Random ", "dqn-loss": "Huber",
                        "partition": "Dirichlet:0.5", "dataset": "IDX:/Data/Fashion"})
    assert (config.truncation, config.starter, config.dqn_loss) == ("bootstrap", "random",
                                                                     "huber")
    assert config.partition == "dirichlet:0.5"
    assert config.dataset == "idx:/Data/Fashion"  # the folder as given
    assert HLConfig(observation="PROGRESS").observation == "progress"  # the Python API too
    assert to_flat(config)["truncation"] == "bootstrap"  # what config.json gets


@pytest.mark.parametrize(("word", "value"), [
    ("true", True), ("TRUE", True), ("yes", True), ("On", True), ("1", True),
    ("false", False), ("No", False), ("OFF", False), ("0", False)])
def test_switches_take_true_false_yes_no_on_off_and_1_0_in_any_case(word: str,
                                                                     value: bool) -> None:
    assert from_flat({"tensorboard": word}).tensorboard is value


def test_a_bad_switch_names_every_form() -> None:
    with pytest.raises(ConfigError, match=r"^--tensorboard must be true or false \(or "
                                          r"yes/no, on/off, 1/0\), got 'maybe'$"):
        from_flat({"tensorboard": "maybe"})


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"num_nodes": 1}, "--nodes"),
        ({"k": 0}, "--k"),
        ({"k": 11}, "--k"),
        ({"goal": 0.0}, "--goal"),
        ({"goal": 1.01}, "--goal"),
        ({"goal": float("nan")}, "--goal"),
        ({"episodes": 0}, "--episodes"),
        ({"starter": 10}, "--starter"),
        ({"starter": -1}, "--starter"),
        ({"partition": "random"}, "--partition"),
        ({"other_samples": -1}, "--other-samples"),
        ({"main_samples": 0}, "--main-samples"),
        ({"max_steps": 0}, "--max-steps"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"dqn_learning_rate": float("inf")}, "--dqn-learning-rate"),
        ({"epsilon_start": 1.5}, "--epsilon-start"),
        ({"epsilon_decay": -0.1}, "--epsilon-decay"),
        ({"discount": 1.1}, "--discount"),
        ({"replay_batch": 0}, "--replay-batch"),
        ({"validate_every": 5, "validation_first_seed": 2**32 - 1},
         "--validation-first-seed 4294967295 --validation-seeds 2 would validate on "
         "seeds up to 4294967296, past"),
    ],
)
def test_validate_rejects_bad_setting(changes: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        HLConfig(**changes).validate()


def test_validate_names_the_nodes_flag_for_zero_nodes() -> None:
    with pytest.raises(ConfigError, match="--nodes must be"):
        HLConfig(num_nodes=0).validate()


@pytest.mark.parametrize(
    "changes",
    [
        {"num_nodes": 2},
        {"k": 10},
        {"goal": 1.0},
        {"starter": 9},
        {"partition": "disjoint"},
        {"other_samples": 0},
        {"epsilon_decay": 0.0},
        {"discount": 0.0},
        {"path_average": 0.0},
        {"path_average": 0.999},
        {"validate_every": 5, "validation_first_seed": 2**32 - 2},  # 2**32 - 1 last
        {"validation_first_seed": 2**32 - 1},  # never validated: no range to play
    ],
)
def test_validate_accepts_boundary_values(changes: dict) -> None:
    config = HLConfig(**changes)
    assert config.validate() is config


@pytest.mark.parametrize(("decay", "half_life"), [(0.9991, "770"), (0.9999999, "6931471")])
def test_a_path_average_over_0_999_draws_one_caution_with_its_half_life(
        decay: float, half_life: str) -> None:
    (caution,) = HLConfig(path_average=decay).validate().cautions()
    assert caution.startswith(f"--path-average {decay}: the average's half-life is "
                              f"{half_life} steps")
    assert "barely follow the training" in caution and "\n" not in caution


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_a_usual_path_average_draws_no_caution(decay: float) -> None:
    assert HLConfig(path_average=decay).cautions() == []


def test_an_n_step_past_the_step_cap_draws_one_caution() -> None:
    (caution,) = HLConfig(n_step=40, max_steps=36).validate().cautions()
    assert caution == ("--n-step 40 is more than --max-steps 36: every return sums the "
                       "rewards to its episode's end, as --n-step 36 would")
    assert HLConfig(n_step=36, max_steps=36).cautions() == []
    # playing a given policy (eval, compare --policy) stores no returns
    assert HLConfig(n_step=40, max_steps=36).cautions(trains_dqn=False) == []


def test_too_few_steps_to_fill_one_replay_batch_draws_one_caution_when_training() -> None:
    config = preset("random-starter").replace(episodes=3).validate()  # 108 < 128
    (caution,) = config.cautions()
    assert caution.startswith("3 episodes of at most 36 steps store at most 108 "
                              "transitions, fewer than --replay-batch 128, so the DQN "
                              "will never train")
    assert caution.endswith("give --episodes 4 or more (more if episodes reach the goal early), "
                            "or --replay-batch 108 or less")
    assert config.cautions(trains_dqn=False) == []  # playing a given policy
    (resumed,) = config.cautions(resuming=True)  # --resume refuses a new --replay-batch
    assert resumed.endswith("give --episodes 4 or more (more if episodes reach the goal "
                            "early; a resumed run keeps its --replay-batch)")
    (one,) = config.replace(episodes=1).cautions()
    assert one.startswith("1 episode of at most 36 steps store at most 36 transitions")
    assert config.replace(episodes=4).cautions() == []  # 144 may fill it
    assert config.replace(replay_batch=108).cautions() == []


def test_paper_preset_equals_defaults() -> None:
    assert preset("paper") == HLConfig()


def test_quick_preset_keeps_the_reference_environment() -> None:
    quick = preset("quick").validate()
    reference = HLConfig()
    assert quick.episodes < reference.episodes
    environment = ("dataset", "partition", "num_nodes", "main_samples", "other_samples",
                   "local_epochs", "batch_size", "goal", "max_steps", "starter", "k",
                   "reward_base", "dqn_hidden_1", "dqn_hidden_2", "discount",
                   "normalize_targets", "pca_components", "distance_file", "distance_seed")
    for name in environment:
        assert getattr(quick, name) == getattr(reference, name), name


def test_unknown_preset_raises() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset("nope")


def test_pyproject_run_config_matches_defaults() -> None:
    run_config = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    assert run_config.pop("run-dir") == "" and run_config.pop("overwrite") is False
    assert run_config == to_flat(HLConfig())
    assert from_flat(run_config) == HLConfig()


# --- property-based: validation never crashes and never lets a bad run through

NUMBERS = st.one_of(st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["3", "0.5", "x", "", "true", "nan"]))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # a loaded machine
@given(values=st.fixed_dictionaries({}, optional={
    key: NUMBERS for key in ("num-nodes", "k", "goal", "starter", "episodes",
                             "max-steps", "learning-rate", "discount",
                             "epsilon-start", "epsilon-decay", "max-failures",
                             "reply-timeout", "main-samples", "other-samples")}))
def test_validation_accepts_only_runnable_settings(values: dict) -> None:
    try:
        config = from_flat(values).validate()
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)  # one line for the user
        return
    assert config.num_nodes >= 2 and 1 <= config.k <= config.num_nodes
    assert 0 < config.goal <= 1
    assert all(0 <= node < config.num_nodes for node in config.starter_nodes)
    assert config.episodes >= 1 and config.max_steps >= 1 and config.max_failures >= 1
    assert config.learning_rate > 0 and math.isfinite(config.learning_rate)
    assert 0 <= config.discount <= 1 and 0 <= config.epsilon_start <= 1
    assert config.epsilon_decay >= 0 and config.reply_timeout > 0
    assert config.main_samples >= 1 and config.other_samples >= 0


def test_policy_size_and_when_nodes_keep_a_copy() -> None:
    ten = HLConfig()
    # 100 -> 500 -> 200 -> 10 with biases
    assert ten.policy_parameters == 100 * 500 + 500 + 500 * 200 + 200 + 200 * 10 + 10
    assert ten.nodes_keep_policy  # 10 x 0.6 MB
    thousand = HLConfig(num_nodes=1000)
    assert thousand.policy_parameters * 4 > 20e6  # the input grows with 10 N
    assert not thousand.nodes_keep_policy  # 1,000 copies would need ~21 GB
    assert HLConfig(num_nodes=1000, node_policy_budget_mb=30_000).nodes_keep_policy


def test_every_setting_has_help_with_the_default_it_will_use() -> None:
    import subprocess
    import sys

    from hl_flower.settings_help import SETTING_HELP

    assert set(SETTING_HELP) == {f.name for f in dataclasses.fields(HLConfig)}
    shown = subprocess.run([sys.executable, "sim.py", "--help"], capture_output=True,
                           text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    flat = " ".join(shown.split())
    assert ("--episodes INT training episodes (each from a fresh model) "
            "(default: 12; paper: 120)") in flat


def test_a_boolean_is_refused_for_a_number_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"--nodes \(run-config key num-nodes\) must be a "
                                          r"number, got the boolean true"):
        from_flat({"num-nodes": True})
