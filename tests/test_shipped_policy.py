"""The policy shipped in policies/: it loads from its own folder (safe
formats only) and does what docs/results.md says it does."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hl_flower.client_app import node_partition, node_trainer
from hl_flower.config import from_flat
from hl_flower.dqn import DQNAgent, q_values
from hl_flower.model import set_optimizer_state
from hl_flower.observation import flatten_weights, reference_observation
from hl_flower.reference_task import fresh_weights

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "mnist5k-n10-improved"


def test_folder_holds_weights_metadata_and_settings_only() -> None:
    assert sorted(p.name for p in SHIPPED.iterdir()) == [
        "config.json", "policy.json", "policy.weights.h5"]


def test_shipped_policy_keeps_the_model_at_the_starter() -> None:
    """After the starter's first real epoch, the greedy choice is the starter
    itself (the `Standalone` behaviour reported in docs/results.md)."""
    config = from_flat(json.loads((SHIPPED / "config.json").read_text())).validate()
    agent = DQNAgent(config, seed=0)
    agent.load(SHIPPED)
    (starter,) = config.starter_nodes
    trainer = node_trainer(config, node_partition(config, starter))
    for seed in (201, 202, 203):
        start = fresh_weights(trainer.model, seed)
        trainer.model.set_weights(start)
        set_optimizer_state(trainer.model, None)  # a fresh episode's Adam
        data = node_partition(config.replace(seed=seed), starter)
        trainer.fit_epochs(data.x, data.y, 1, config.batch_size,
                           np.random.default_rng(seed))
        observation = reference_observation(
            flatten_weights(start), {starter: flatten_weights(trainer.model.get_weights())},
            config.num_nodes, config.pca_components)
        q = q_values(agent.get_weights(), observation[None, :])[0]
        assert int(np.argmax(q)) == starter


RANDOM_STARTER = SHIPPED.parent / "mnist5k-n10-random-starter"


def test_random_starter_policy_folder_holds_safe_files_and_its_oracle() -> None:
    assert sorted(p.name for p in RANDOM_STARTER.iterdir()) == [
        "config.json", "policy.json", "policy.weights.h5"]
    config = from_flat(json.loads((RANDOM_STARTER / "config.json").read_text())).validate()
    assert config.starter == "random" and config.observation == "progress"
    assert config.best_node == 5  # benchmarks/standalone_nodes.py on training seeds


@pytest.mark.slow
def test_random_starter_policy_trains_at_node_6_then_finishes_at_node_0(
        tmp_path: Path) -> None:
    """What docs/results.md section 14 reports the shipped policy learned: a
    route through two nodes, not "go to one node and stay". From most
    starters it sends the model to node 6 (28.8 steps alone on training
    seeds), keeps it there for several steps, then moves it to node 0 and
    keeps it there until the goal. Seeds 201-210 start once at every node
    (7 of 10 follow that route here; a policy that stays at one node fails)."""
    done = subprocess.run(
        [sys.executable, "sim.py", "compare", "--policy", str(RANDOM_STARTER),
         "--methods", "HL-greedy", "--seed", "200", "--seeds", "10",
         "--out", str(tmp_path), "--name", "c"], cwd=SHIPPED.parents[1],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "c" / "compare_runs.csv").open() as handle:
        paths = [row["path"].split() for row in csv.DictReader(handle)]
    assert sorted(path[0] for path in paths) == [str(n) for n in range(10)]

    def six_then_zero(after_starter: list[str]) -> bool:
        at_six = after_starter.index("0") if "0" in after_starter else 0
        return (at_six >= 3 and set(after_starter[:at_six]) == {"6"}
                and set(after_starter[at_six:]) == {"0"})

    assert sum(six_then_zero(path[1:]) for path in paths) >= 6, paths
