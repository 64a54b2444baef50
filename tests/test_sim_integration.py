"""sim.py end to end through Flower's real simulation engine (Ray), on digits.

Each run is a subprocess with tiny settings: 4 nodes, 3 episodes, a replay
batch small enough that the DQN trains (and the policy changes) between
episodes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmarks.kernel_determinism import busy_cores

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--nodes", "4", "--main-samples", "140",
        "--other-samples", "100", "--learning-rate", "0.005", "--episodes", "3",
        "--replay-batch", "8", "--dqn-fit-batch", "4", "--epsilon-decay", "0.5"]


def run_sim(out: Path, name: str, *extra: str, one_core: bool = False
            ) -> subprocess.CompletedProcess:
    """Run sim.py and return the finished process; with ``one_core`` it sees
    only CPU 0, as a smaller machine would."""
    return subprocess.run(
        [sys.executable, "sim.py", *TINY, "--out", str(out), "--name", name, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if one_core else None)


DQN_FILE = "dqn.weights.h5"  # in a checkpoint folder


def policy_arrays(folder: Path, name: str = "policy.weights.h5") -> list[np.ndarray]:
    """Every array of a saved DQN (a run's policy by default), in file order."""
    arrays: list[np.ndarray] = []
    with h5py.File(folder / name, "r") as handle:
        handle.visititems(lambda _, item: arrays.append(item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run a: seed 0, 3 episodes. Run b: seed 0, its first 2 episodes, on
    one core that a busy low-priority process also runs on, its Ray actor
    given one CPU. Run c: seed 1, 1 episode."""
    out = tmp_path_factory.mktemp("runs")
    folders = {}
    for name, seed, episodes in (("a", "0", "3"), ("b", "0", "2"), ("c", "1", "1")):
        if name == "b":
            with busy_cores(cores={0}, nice=19):
                done = run_sim(out, name, "--seed", seed, "--episodes", episodes,
                               "--cpus-per-client", "1", one_core=True)
        else:
            done = run_sim(out, name, "--seed", seed, "--episodes", episodes)
        assert done.returncode == 0, done.stderr[-3000:]
        folders[name] = out / name
        folders[name + "-stdout"] = done.stdout  # type: ignore[assignment]
    return folders


def test_run_folder_has_every_file(runs: dict[str, Path]) -> None:
    folder = runs["a"]
    for name in ("config.json", "steps.csv", "episodes.csv", "summary.json",
                 "policy.weights.h5", "policy.json", "last_episode_accuracy.png",
                 "training.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "run.log").is_file()  # Flower's log; empty when nothing went wrong
    config = json.loads((folder / "config.json").read_text())
    assert config["num-nodes"] == 4 and config["dataset"] == "digits"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["episodes"] == 3
    assert summary["steps_total"] == len(read_csv(folder / "steps.csv"))
    assert (folder / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_line_per_episode_on_stdout(runs: dict[str, Path]) -> None:
    lines = [line for line in str(runs["a-stdout"]).splitlines()
             if line.startswith("episode")]
    assert len(lines) == 3
    assert all("steps" in line and "cost" in line and "eps" in line for line in lines)


def test_model_goes_where_the_holder_chose(runs: dict[str, Path]) -> None:
    steps = read_csv(runs["a"] / "steps.csv")
    episodes = read_csv(runs["a"] / "episodes.csv")
    assert len(episodes) == 3
    for episode in range(3):
        rows = [r for r in steps if int(r["episode"]) == episode]
        assert rows[0]["holder"] == "0"  # the starter
        assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
        for before, after in zip(rows, rows[1:], strict=False):
            assert before["next_node"] == after["holder"]
            assert 0 <= int(after["holder"]) < 4
        assert rows[-1]["done"] == "True" and rows[-1]["next_node"] == ""
        assert int(episodes[episode]["steps"]) == len(rows)
        # The episode ends at the goal or the cap, never later.
        accuracy = [float(r["accuracy"]) for r in rows]
        assert all(a < 0.8 for a in accuracy[:-1])
        assert accuracy[-1] >= 0.8 or len(rows) == 36


def test_accuracy_rises_from_the_untrained_model(runs: dict[str, Path]) -> None:
    steps = read_csv(runs["a"] / "steps.csv")
    first = [r for r in steps if r["step"] == "1"]
    last_of_episode = {r["episode"]: float(r["accuracy"]) for r in steps}
    for row in first:
        assert float(row["accuracy"]) < 0.4
    assert min(last_of_episode.values()) > 0.6


def test_policy_is_sent_only_to_stale_nodes(runs: dict[str, Path]) -> None:
    steps = read_csv(runs["a"] / "steps.csv")
    episodes = read_csv(runs["a"] / "episodes.csv")
    assert any(e["dqn_loss"] for e in episodes)  # the DQN trained, so versions moved
    for episode in range(3):
        rows = [r for r in steps if int(r["episode"]) == episode]
        sent_to = [r["holder"] for r in rows if r["policy_sent"] == "True"]
        assert len(sent_to) == len(set(sent_to))  # once per node and version
        visited = {r["holder"] for r in rows}
        assert set(sent_to) <= visited
    without_policy = [int(r["bytes_sent"]) for r in steps if r["policy_sent"] == "False"]
    with_policy = [int(r["bytes_sent"]) for r in steps if r["policy_sent"] == "True"]
    assert with_policy and without_policy
    assert min(with_policy) > max(without_policy)


def test_same_seed_same_nodes_other_seed_differs(runs: dict[str, Path]) -> None:
    def path(name: str, episodes: int) -> list[tuple[str, str, str, str]]:
        return [(r["episode"], r["holder"], r["next_node"], r["accuracy"])
                for r in read_csv(runs[name] / "steps.csv") if int(r["episode"]) < episodes]

    assert path("a", 2) == path("b", 2)
    assert path("a", 1) != path("c", 1)


def test_same_seed_is_bit_identical_on_another_core_count_under_load(
        runs: dict[str, Path]) -> None:
    """Run b had one core shared with a busy process and one CPU for its
    actor; with TensorFlow's threads left free it trained other weights
    (measured), so in the episodes both ran every accuracy, loss and DQN
    weight (after two DQN trainings) must match to the bit."""
    def trace(name: str) -> list[tuple[str, ...]]:
        return [(r["episode"], r["holder"], r["next_node"], r["accuracy"], r["reward"],
                 r["train_loss"]) for r in read_csv(runs[name] / "steps.csv")
                if int(r["episode"]) < 2]

    assert trace("a") == trace("b")
    dqn_losses = [[e["dqn_loss"] for e in read_csv(runs[n] / "episodes.csv")][:2]
                  for n in ("a", "b")]
    assert dqn_losses[0] == dqn_losses[1] and any(dqn_losses[0])
    after_two = [runs[n] / "checkpoint-00002" for n in ("a", "b")]
    pairs = list(zip(policy_arrays(after_two[0], DQN_FILE),
                     policy_arrays(after_two[1], DQN_FILE), strict=True))
    assert pairs
    for mine, theirs in pairs:
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)


def test_k2_trains_two_nodes_and_the_lead_chooses(tmp_path: Path) -> None:
    """k > 1: two nodes train per step, the lead holder picks the next two."""
    done = run_sim(tmp_path, "k2", "--k", "2", "--episodes", "1", "--goal", "0.7")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(tmp_path / "k2" / "steps.csv")
    assert rows[0]["holders"].split()[0] == "0"
    for before, after in zip(rows, rows[1:], strict=False):
        chosen = before["next_node"].split()
        assert len(chosen) == 2 and len(set(chosen)) == 2
        assert after["holders"].split() == chosen
    assert float(rows[-1]["accuracy"]) > float(rows[0]["accuracy"])


def test_every_dqn_option_at_once(tmp_path: Path) -> None:
    """Every DQN option at once (progress observation, relative actions,
    per-step Double DQN with a target network, Huber loss, the gain reward):
    the model still goes where the holder chose, each step's reward is the
    weighted accuracy gain minus hop and step, the DQN trains during the
    episode, and the saved policy can only be replayed with the observation
    it was trained on."""
    done = run_sim(tmp_path, "imp", "--observation", "progress", "--actions", "relative",
                   "--dqn-updates", "step", "--target-sync", "3", "--double-dqn", "true",
                   "--dqn-loss", "huber", "--normalize-targets", "false",
                   "--reward-scale", "0.5", "--reward", "gain", "--gain-weight", "5",
                   "--episodes", "2", "--max-steps", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    steps = read_csv(tmp_path / "imp" / "steps.csv")
    for before, after in zip(steps, steps[1:], strict=False):
        if before["episode"] == after["episode"]:
            assert before["next_node"] == after["holder"]
    for index, row in enumerate(steps):
        previous = 0.0 if row["step"] == "1" else float(steps[index - 1]["accuracy"])
        gain = 5 * (float(row["accuracy"]) - previous)
        assert float(row["reward"]) == pytest.approx(gain - float(row["hop_cost"]) - 1, abs=1e-5)
    assert sum(r["policy_sent"] == "True" for r in steps) > 2  # new policy per step
    meta = json.loads((tmp_path / "imp" / "policy.json").read_text())
    assert (meta["observation"], meta["actions"]) == ("progress", "relative")
    refused = subprocess.run(
        [sys.executable, "sim.py", "eval", "--policy", str(tmp_path / "imp"),
         "--actions", "absolute", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2
    assert "--actions relative" in refused.stderr and "Traceback" not in refused.stderr


def test_validation_keeps_the_best_greedy_policy_without_changing_training(
        runs: dict[str, Path], tmp_path: Path) -> None:
    done = run_sim(tmp_path, "v", "--seed", "0", "--validate-every", "2",
                   "--validation-seeds", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "v"

    def moves(run: Path) -> list[tuple[str, str, str]]:
        return [(r["episode"], r["holder"], r["next_node"])
                for r in read_csv(run / "steps.csv")]

    ours, theirs = read_csv(folder / "steps.csv"), read_csv(runs["a"] / "steps.csv")
    parted = next((pair for pair in zip(ours, theirs, strict=False)
                   if pair[0]["next_node"] != pair[1]["next_node"]), None)
    assert moves(folder) == moves(runs["a"]), parted  # same seed, validation or not
    rows = read_csv(folder / "validation.csv")
    assert [r["episodes_done"] for r in rows] == ["2", "3"]  # every 2, and the last
    assert sum(line.startswith("validation after") for line in done.stdout.splitlines()) == 2
    ranks = [(float(r["steps"]), -float(r["accuracy"]), float(r["communication_cost"]))
             for r in rows]
    assert [r["best"] for r in rows] == [
        str(i == 0 or rank < min(ranks[:i])) for i, rank in enumerate(ranks)]
    kept = json.loads((folder / "best" / "validation.json").read_text())
    assert kept["episodes_done"] == int(rows[ranks.index(min(ranks))]["episodes_done"])
    assert json.loads((folder / "summary.json").read_text())["best_validation"] == kept

    replay = subprocess.run(  # the kept policy, on the validation seeds 301 and 302
        [sys.executable, "sim.py", "eval", "--policy", str(folder / "best"), "--seed",
         "300", "--seeds", "2", "--out", str(tmp_path), "--name", "ev"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    played = read_csv(tmp_path / "ev" / "eval_runs.csv")
    assert [r["seed"] for r in played] == ["301", "302"]
    assert " | ".join(r["path"] for r in played) == kept["paths"]
    assert sum(int(r["steps"]) for r in played) / 2 == kept["steps"]
