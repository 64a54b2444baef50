"""Greedy validation during training (hl_flower.best_policy): schedule, ranking,
the validation log and the best policy kept in ``best/``, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hl_flower.best_policy import (
    BEST_FOLDER,
    VALIDATION_CSV,
    BestPolicy,
    Validation,
    next_stop,
    policy_folder,
    validation_due,
    validation_seeds,
)
from hl_flower.config import ConfigError, HLConfig, saved_config
from hl_flower.dqn import DQNAgent

CONFIG = HLConfig(num_nodes=3, pca_components=2, dqn_hidden_1=8, dqn_hidden_2=4,
                  episodes=7, validate_every=3, validation_seeds=2)


def scored(episodes_done: int, steps: float, accuracy: float = 0.8,
           cost: float = 0.1) -> Validation:
    return Validation(episodes_done, steps, accuracy, cost, 1.0, "0 0 | 0 1")


def agent_with(seed: int) -> DQNAgent:
    return DQNAgent(CONFIG, seed=seed)


def logged(folder: Path) -> list[dict[str, str]]:
    with (folder / VALIDATION_CSV).open() as handle:
        return list(csv.DictReader(handle))


def kept_weights(folder: Path) -> list[np.ndarray]:
    agent = agent_with(99)
    agent.load(folder / BEST_FOLDER)
    return agent.get_weights()


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_schedule_every_e_episodes_and_after_the_last() -> None:
    assert [d for d in range(8) if validation_due(CONFIG, d)] == [3, 6, 7]
    assert [next_stop(CONFIG, d) for d in (0, 2, 3, 6)] == [3, 3, 6, 7]
    never = CONFIG.replace(validate_every=0)
    assert not any(validation_due(never, d) for d in range(8))
    assert next_stop(never, 0) == 7  # one uninterrupted training


def test_validation_seeds_are_apart_from_training_and_evaluation_seeds() -> None:
    assert validation_seeds(CONFIG) == [301, 302]
    assert validation_seeds(CONFIG.replace(validation_seeds=4)) == [301, 302, 303, 304]


def test_rank_prefers_fewer_steps_then_accuracy_then_cost() -> None:
    ranked = sorted([scored(1, 12, 0.9), scored(2, 10, 0.8, 0.5), scored(3, 10, 0.8, 0.2),
                     scored(4, 10, 0.85, 0.9)], key=Validation.rank)
    assert [v.episodes_done for v in ranked] == [4, 3, 2, 1]


def test_validation_means_the_greedy_episodes() -> None:
    class Episode:
        def __init__(self, steps: int, accuracy: float, cost: float, path: list[int]):
            self.steps, self.accuracy, self.communication_cost = steps, accuracy, cost
            self.reached_goal, self.path = accuracy >= 0.8, path

    result = Validation.of(5, [Episode(4, 0.8, 0.2, [0, 0, 1, 1]),
                               Episode(2, 0.6, 0.0, [0, 0])])
    assert (result.episodes_done, result.steps, result.reached_goal) == (5, 3.0, 0.5)
    assert result.accuracy == pytest.approx(0.7)
    assert result.communication_cost == pytest.approx(0.1)
    assert result.paths == "0 0 1 1 | 0 0"


def test_only_a_better_policy_replaces_the_kept_one(tmp_path: Path) -> None:
    keeper = BestPolicy(tmp_path, CONFIG)
    first, worse, better = agent_with(1), agent_with(2), agent_with(3)
    assert keeper.record(scored(3, 12.0), first)
    assert not keeper.record(scored(6, 14.0), worse)
    assert same(kept_weights(tmp_path), first.get_weights())
    assert keeper.record(scored(7, 12.0, accuracy=0.9), better)  # tie on steps
    assert same(kept_weights(tmp_path), better.get_weights())
    assert [(r["episodes_done"], r["best"]) for r in logged(tmp_path)] == [
        ("3", "True"), ("6", "False"), ("7", "True")]
    kept = json.loads((tmp_path / BEST_FOLDER / "validation.json").read_text())
    assert kept["episodes_done"] == 7 and kept["accuracy"] == 0.9
    assert saved_config(tmp_path / BEST_FOLDER) == CONFIG  # a policy folder eval accepts
    assert policy_folder(tmp_path) == tmp_path / BEST_FOLDER
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind


def test_resume_keeps_the_log_up_to_the_checkpoint(tmp_path: Path) -> None:
    keeper = BestPolicy(tmp_path, CONFIG)
    keeper.record(scored(3, 12.0), agent_with(1))
    keeper.record(scored(6, 20.0), agent_with(2))
    resumed = BestPolicy(tmp_path, CONFIG, episodes_done=6)
    assert resumed.best == scored(3, 12.0)
    assert not resumed.needs(3) and not resumed.needs(6) and resumed.needs(7)
    early = BestPolicy(tmp_path, CONFIG, episodes_done=4)  # killed before its checkpoint
    assert [r["episodes_done"] for r in logged(tmp_path)] == ["3"]
    assert early.needs(6)


def test_a_kill_while_swapping_never_loses_the_kept_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = agent_with(1)
    BestPolicy(tmp_path, CONFIG).record(scored(3, 12.0), first)
    real_rename = Path.rename

    def killed_before_swapping_in(self: Path, target: Path) -> Path:
        if self.name == f".{BEST_FOLDER}.tmp":
            raise KeyboardInterrupt  # the kill lands between the two renames
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_before_swapping_in)
    with pytest.raises(KeyboardInterrupt):
        BestPolicy(tmp_path, CONFIG, episodes_done=3).record(scored(6, 10.0), agent_with(2))
    monkeypatch.undo()
    assert not (tmp_path / BEST_FOLDER).exists()  # the old policy is aside, the new one staged
    resumed = BestPolicy(tmp_path, CONFIG, episodes_done=3)
    assert resumed.best == scored(3, 12.0)
    assert same(kept_weights(tmp_path), first.get_weights())
    assert not list(tmp_path.glob(".*"))


def test_a_new_run_clears_what_an_overwritten_folder_held(tmp_path: Path) -> None:
    BestPolicy(tmp_path, CONFIG).record(scored(3, 12.0), agent_with(1))
    fresh = BestPolicy(tmp_path, CONFIG.replace(validate_every=0))
    assert fresh.best is None
    assert not (tmp_path / BEST_FOLDER).exists() and not (tmp_path / VALIDATION_CSV).exists()
    assert policy_folder(tmp_path) == tmp_path


@pytest.mark.parametrize(("changes", "message"), [
    ({"validate_every": -1}, "--validate-every must be 0 (never) or more, got -1"),
    ({"validation_seeds": 0}, "--validation-seeds must be at least 1, got 0"),
])
def test_bad_validation_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HLConfig(**changes).validate()
