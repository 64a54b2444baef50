"""Where episodes start (``--starter`` random or a list) and the BestNode
oracle: the draws are reproducible and balanced, recorded, shared by every
method of a compare, and the nodes that trained are the ones drawn (read back
from the server's steps, not from the code)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_compare import read_csv, sim

from hl_flower.best_policy import validation_seeds
from hl_flower.config import ConfigError, HLConfig, preset
from hl_flower.distance import reference_distance
from hl_flower.methods import default_methods
from hl_flower.progress_bar import ConsoleProgress
from hl_flower.starters import starter_nodes, starter_of
from strategies import BestNode, EpisodeResult, Standalone
from tests.sim_runner import refused

ROOT = Path(__file__).resolve().parents[1]
NODES = 4
TINY = ["--dataset", "digits", "--nodes", str(NODES), "--main-samples", "140",
        "--other-samples", "100", "--learning-rate", "0.005", "--max-steps", "4"]


# --- parsing and drawing ----------------------------------------------------

@pytest.mark.parametrize(("text", "nodes"), [
    ("0", (0,)), (3, (3,)), ("random", tuple(range(10))), (" Random ", tuple(range(10))),
    ("0,3,7", (0, 3, 7)), ("7, 3", (7, 3)), ("9", (9,))])
def test_starter_forms(text: str | int, nodes: tuple[int, ...]) -> None:
    assert starter_nodes(text, 10) == nodes


@pytest.mark.parametrize(("text", "says"), [
    ("10", "node 10 is not a node"), ("-1", "not a node id"), ("x", "not a node id"),
    ("1,1", "twice"), ("", "not a node id"), ("1,", "not a node id"),
    ("2.0", "not a node id"), ("\u0663", "not a node id")])
def test_bad_starters_are_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        starter_nodes(text, 10)
    assert "\n" not in str(err.value) and "--starter" in str(err.value)


def test_the_same_seed_and_episode_give_the_same_starter() -> None:
    nodes = tuple(range(10))
    first = [starter_of(nodes, seed, episode) for seed in range(5) for episode in range(30)]
    again = [starter_of(nodes, seed, episode) for seed in range(5) for episode in range(30)]
    assert first == again
    assert len(set(first)) == 10  # it does move


def test_twenty_evaluation_seeds_start_twice_at_every_node() -> None:
    """compare --seed 300 --seeds 20 plays seeds 301..320, episode 0 each."""
    counts = Counter(starter_of(tuple(range(10)), seed, 0) for seed in range(301, 321))
    assert counts == dict.fromkeys(range(10), 2)


def test_every_block_of_training_episodes_starts_once_at_every_node() -> None:
    for seed in (0, 1, 7):
        episodes = range(10 - seed % 10 + 1, 10 - seed % 10 + 31)  # draws 10..39
        starts = [starter_of(tuple(range(10)), seed, e) for e in episodes]
        for block in range(3):
            assert sorted(starts[10 * block:10 * block + 10]) == list(range(10))


def test_a_list_draws_only_from_the_list() -> None:
    drawn = {starter_of((0, 3, 7), seed, 0) for seed in range(30)}
    assert drawn == {0, 3, 7}
    assert {starter_of((5,), seed, episode) for seed in range(9) for episode in range(9)} == {5}


def test_config_and_flags_check_the_starter() -> None:
    assert HLConfig(starter="random", num_nodes=4).validate().starter_nodes == (0, 1, 2, 3)
    done = refused("--starter", "0,9", "--nodes", "4")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--starter 0,9: node 9 is not a node of --nodes 4" in done.stderr
    done = refused("--best-node", "4", "--nodes", "4")
    assert done.returncode == 2 and "--best-node 4 is not a node" in done.stderr


@pytest.mark.parametrize(("starter", "tail"), [("random", "  from 7"), ("3,7", "  from 7"),
                                              ("7", "")])
def test_the_episode_line_names_the_starter_only_when_it_is_drawn(
        capsys: pytest.CaptureFixture[str], starter: str, tail: str) -> None:
    result = EpisodeResult(2, 26, 0.81, 0.9, -17.6, 0.6, True, 4000, None, 3.0, starter=7)
    ConsoleProgress(HLConfig(starter=starter, episodes=40)).on_episode(result)
    assert capsys.readouterr().out == ("episode   3/40  steps 26  acc 0.810  cost 0.900  "
                                       f"reward -17.600  eps 0.600{tail}\n")


# --- strategies ---------------------------------------------------------------

def test_each_episode_begins_at_its_drawn_starter() -> None:
    rule = Standalone(num_nodes=NODES, distance=reference_distance(NODES),
                      starter=range(NODES), seed=5)
    for episode in range(8):
        rule.begin_episode(episode)
        assert rule.selected == [starter_of(tuple(range(NODES)), 5, episode)]
        assert rule.episode_starter() == rule.selected[0]


def test_best_node_moves_once_and_stays() -> None:
    rule = BestNode(num_nodes=NODES, distance=reference_distance(NODES), starter=3,
                    best_node=1)
    rule.begin_episode(0)
    assert rule.next_node(3, list(range(NODES))) == 1
    assert rule.next_node(1, list(range(NODES))) == 1
    assert rule.next_node(1, [0, 2, 3]) in (0, 2, 3)  # node 1 down: the nearest
    assert rule.next_node(2, [0, 2, 3]) == 2  # while it is down, stay
    with pytest.raises(ValueError, match="best_node"):
        BestNode(num_nodes=NODES, distance=reference_distance(NODES), best_node=NODES)


def test_best_node_takes_its_node_from_the_settings() -> None:
    config = HLConfig(num_nodes=NODES, best_node=2, starter="random").validate()
    rule = BestNode.from_config(config, reference_distance(NODES))
    assert rule.best_node == 2 and rule.starters == (0, 1, 2, 3)


# --- benchmarks/standalone_nodes.py, which picks --best-node -----------------

def standalone_nodes(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/standalone_nodes.py", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "says"), [
    (["--", "--starter", "3"], "error: --starter after -- would override what the script "
                               "gives sim.py; drop it: each node starts in turn"),
    (["--", "--start=3"], "error: --starter after --"),  # as sim.py reads it
    (["--", "--methods", "RandomHop"], "error: --methods after --"),
    (["--", "--best-node", "2"], "error: --best-node after --"),
    (["--seeds", "2", "--", "--seeds", "3"], "error: --seeds after -- would override what "
                                             "the script gives sim.py; give it before --"),
    (["--", "--goal", "2"], "error: --goal must be in (0, 1], got 2.0"),  # sim.py's line
    (["--", "--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
    (["--starter", "3"], "error: unrecognized arguments: --starter (see python "
                         "benchmarks/standalone_nodes.py --help)"),  # before --
    (["--seeds", "0"], "error: --nodes must be at least 2 and --seeds at least 1"),
])
def test_standalone_nodes_refuses_bad_flags_for_sim_before_its_table(args: list[str],
                                                                     says: str) -> None:
    assert_one_line_refusal(standalone_nodes(*args), says)


def assert_one_line_refusal(done: subprocess.CompletedProcess, says: str) -> None:
    """Exit code 2, nothing on stdout, one line on stderr starting with ``says``."""
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no table header, no training
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), done.stderr


# --- benchmarks/learning_digits.py, the learning checks -----------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--training-seeds", "0"], "error: --seeds, --episodes and --training-seeds must be "
                                "at least 1"),
    (["--", "--seed", "5"], "error: --seed after -- would override what the script gives "
                            "sim.py; use the script's --seed"),
    (["--random-starter", "--", "--starter", "3"], "error: --starter after -- would "
                                                   "override"),
    (["--", "--preset", "paper"], "error: --preset after --"),
    (["--", "--methods", "RandomHop"], "error: --methods after --"),
    (["--", "--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
    (["--", "--goal", "2"], "error: --goal must be in (0, 1], got 2.0"),  # sim.py's line
])
def test_learning_digits_refuses_bad_flags_before_training(args: list[str],
                                                            says: str) -> None:
    assert_one_line_refusal(
        subprocess.run([sys.executable, "benchmarks/learning_digits.py", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300), says)


# --- real runs through Flower's simulation engine ----------------------------

@pytest.mark.slow
def test_compare_starts_every_method_at_the_same_drawn_node(tmp_path: Path) -> None:
    done = sim("compare", *TINY, "--starter", "random", "--best-node", "2",
               "--methods", "RandomHop,Standalone,BestNode,FedAvg", "--seed", "12",
               "--seeds", "4", "--out", str(tmp_path), "--name", "c")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = read_csv(tmp_path / "c" / "compare_runs.csv")
    expected = {str(seed): str(starter_of(tuple(range(NODES)), seed, 0))
                for seed in range(13, 17)}
    assert sorted(set(expected.values())) == ["0", "1", "2", "3"]  # 4 seeds, 4 nodes
    for run in runs:
        path = run["path"].split()
        if run["method"] == "FedAvg":
            assert run["starter"] == ""
            continue
        assert run["starter"] == expected[run["seed"]] == path[0], run
        if run["method"] == "Standalone":
            assert set(path) == {path[0]}
        if run["method"] == "BestNode":
            assert path[1:] == ["2"] * (len(path) - 1)


@pytest.mark.slow
def test_training_records_and_uses_the_drawn_starters(tmp_path: Path) -> None:
    done = sim(*TINY, "--starter", "1,3", "--episodes", "4", "--seed", "7",
               "--replay-batch", "4", "--dqn-fit-batch", "4", "--out", str(tmp_path),
               "--name", "t")
    assert done.returncode == 0, done.stderr[-3000:]
    episodes = read_csv(tmp_path / "t" / "episodes.csv")
    steps = read_csv(tmp_path / "t" / "steps.csv")
    drawn = [str(starter_of((1, 3), 7, e)) for e in range(4)]
    assert [row["starter"] for row in episodes] == drawn
    assert sorted(drawn) == ["1", "1", "3", "3"]
    first_holders = [row["holder"] for row in steps if row["step"] == "1"]
    assert first_holders == drawn
    assert np.all([row["path"].split()[0] == row["starter"] for row in episodes])


def test_the_random_starter_preset_validates_once_per_node_apart_from_evaluation() -> None:
    config = preset("random-starter").validate()
    nodes = config.starter_nodes
    assert nodes == tuple(range(10)) and config.observation == "progress"
    seeds = validation_seeds(config)
    assert sorted(starter_of(nodes, seed, 0) for seed in seeds) == list(nodes)
    assert not set(seeds) & set(range(301, 321))  # compare --seed 300 --seeds 20


def test_compare_runs_best_node_by_default_only_when_episodes_start_at_several_nodes() -> None:
    assert "BestNode" in default_methods(several_starters=True)
    assert "BestNode" not in default_methods(several_starters=False)
    assert default_methods(True)[0] == "HL-greedy" and default_methods(False)[-1] == "FedAvg"
