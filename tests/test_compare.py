"""`sim.py compare` and `sim.py eval` end to end through Flower's simulation
engine on digits (4 nodes, 2 evaluation seeds, a 2-episode HL training).

The baselines are checked on the nodes they actually visited (steps logged
by the server from the replies), not on their code.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from hl_flower.config import ConfigError, saved_config
from hl_flower.distance import reference_distance
from hl_flower.methods import default_methods
from hl_flower.report import report_csv

ONE_STARTER_METHODS = default_methods(several_starters=False)  # no BestNode

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]
NODES = 4
TINY = ["--dataset", "digits", "--nodes", str(NODES), "--main-samples", "140",
        "--other-samples", "100", "--learning-rate", "0.005", "--replay-batch", "8",
        "--dqn-fit-batch", "4", "--epsilon-decay", "0.5"]
PNG = b"\x89PNG\r\n\x1a\n"


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sim.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def holders_by_seed(folder: Path, method: str, stem: str = "compare"
                    ) -> dict[str, list[str]]:
    paths: dict[str, list[str]] = defaultdict(list)
    for row in read_csv(folder / f"{stem}_steps.csv"):
        if row["method"] == method:
            paths[row["seed"]].append(row["holders"])
    return dict(paths)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    done = sim("compare", *TINY, "--episodes", "2", "--seeds", "2",
               "--out", str(out), "--name", "cmp")
    assert done.returncode == 0, done.stderr[-3000:]
    (out / "cmp" / "stdout.txt").write_text(done.stdout)
    return out / "cmp"


def test_table_and_plots_hold_one_row_per_method(compared: Path) -> None:
    summary = read_csv(compared / "compare.csv")
    assert [row["method"] for row in summary] == list(ONE_STARTER_METHODS)
    assert all(row["runs"] == "2" for row in summary)
    runs = read_csv(compared / "compare_runs.csv")
    assert len(runs) == 2 * len(ONE_STARTER_METHODS)
    assert {r["seed"] for r in runs} == {"1", "2"}  # after the training seed 0
    table = (compared / "compare.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == list(ONE_STARTER_METHODS)
    assert "Paper ratios" in table and "FedAvg's communication cost is blank" in table
    for name in ("compare_accuracy_vs_cost.png", "compare_accuracy_vs_bytes.png",
                 "compare_steps.png", "training.png", "partitions.png"):
        assert (compared / name).read_bytes()[:8] == PNG, name
    assert "| HL-greedy |" in (compared / "stdout.txt").read_text()  # table printed


def test_every_method_trains_the_model(compared: Path) -> None:
    for run in read_csv(compared / "compare_runs.csv"):
        assert float(run["accuracy"]) > 0.5, run
        steps = int(run["steps"])
        assert steps == 36 or run["reached_goal"] == "True"


def test_round_robin_cycles_from_the_starter(compared: Path) -> None:
    for path in holders_by_seed(compared, "RoundRobin").values():
        assert path == [str(i % NODES) for i in range(len(path))]


def test_nearest_unvisited_never_revisits_within_a_pass(compared: Path) -> None:
    distance = reference_distance(NODES)
    for path in holders_by_seed(compared, "NearestUnvisited").values():
        nodes = [int(h) for h in path]
        visited = {nodes[0]}
        for holder, following in zip(nodes, nodes[1:], strict=False):
            if len(visited) == NODES:  # pass complete: a new one starts here
                visited = {holder}
            unvisited = [n for n in range(NODES) if n not in visited]
            assert following in unvisited
            assert following == min(unvisited, key=lambda n: (distance[holder, n], n))
            visited.add(following)


def test_standalone_never_moves(compared: Path) -> None:
    for path in holders_by_seed(compared, "Standalone").values():
        assert set(path) == {"0"}
    for run in read_csv(compared / "compare_runs.csv"):
        if run["method"] == "Standalone":
            assert float(run["communication_cost"]) == 0.0


def test_random_hop_stays_within_the_nodes_and_moves(compared: Path) -> None:
    visited = {h for path in holders_by_seed(compared, "RandomHop").values()
               for h in path}
    assert visited <= {str(n) for n in range(NODES)}
    assert len(visited) > 1


def test_fedavg_trains_every_node_and_sends_the_model_both_ways(compared: Path) -> None:
    steps = [r for r in read_csv(compared / "compare_steps.csv") if r["method"] == "FedAvg"]
    assert steps and all(r["holders"] == "0 1 2 3" for r in steps)
    model_bytes = _model_bytes(compared)
    previous = 0
    for row in steps:
        previous = 0 if row["step"] == "1" else previous  # a new seed's episode
        assert int(row["cumulative_bytes"]) - previous == 2 * NODES * model_bytes
        previous = int(row["cumulative_bytes"])
    for run in read_csv(compared / "compare_runs.csv"):
        if run["method"] == "FedAvg":
            assert run["communication_cost"] == "nan"
            assert int(run["model_transfers"]) == 2 * NODES * int(run["steps"])


def _model_bytes(folder: Path) -> int:
    """Serialised model size: a Standalone step moves it exactly twice."""
    first = [r for r in read_csv(folder / "compare_steps.csv")
             if r["method"] == "Standalone" and r["step"] == "1"][0]
    return int(first["cumulative_bytes"]) // 2


def test_hl_greedy_is_deterministic_and_eval_repeats_it(compared: Path,
                                                        tmp_path: Path) -> None:
    done = sim("eval", "--policy", str(compared), "--seeds", "1",
               "--out", str(tmp_path), "--name", "ev")
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = tmp_path / "ev"
    runs = read_csv(evaluated / "eval_runs.csv")
    assert [r["method"] for r in runs] == ["HL-greedy"] and runs[0]["seed"] == "1"
    assert (holders_by_seed(evaluated, "HL-greedy", "eval")["1"]
            == holders_by_seed(compared, "HL-greedy")["1"])
    assert (evaluated / "eval.md").read_text().count("| HL-greedy |") == 1
    assert not (evaluated / "steps.csv").exists()  # no training happened
    partitions = (evaluated / "partitions.csv").read_text()
    assert partitions == (compared / "partitions.csv").read_text()  # the nodes trained on


def test_policy_for_other_node_count_is_refused(compared: Path, tmp_path: Path) -> None:
    done = sim("eval", "--policy", str(compared), "--nodes", "5",
               "--out", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "4 nodes" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_report_files_and_settings_are_found_by_one_lookup(compared: Path,
                                                           tmp_path: Path) -> None:
    assert report_csv(compared, "runs") == compared / "compare_runs.csv"
    assert saved_config(compared).num_nodes == NODES
    (tmp_path / "eval_steps.csv").write_text("method\n")
    assert report_csv(tmp_path, "steps") == tmp_path / "eval_steps.csv"
    with pytest.raises(FileNotFoundError, match="no compare_runs.csv or eval_runs.csv"):
        report_csv(tmp_path, "runs")
    with pytest.raises(ConfigError, match="config.json is missing"):
        saved_config(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a settings file"):
        saved_config(tmp_path)


def test_benchmarks_read_a_compare_folder_and_refuse_others(compared: Path,
                                                            tmp_path: Path) -> None:
    def benchmark(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, f"benchmarks/{name}.py", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    returns = benchmark("rule_returns", str(compared))
    assert returns.returncode == 0, returns.stderr
    rows = {line.split("|")[1].strip() for line in returns.stdout.splitlines()[2:]}
    assert rows == set(ONE_STARTER_METHODS) - {"FedAvg"}  # FedAvg has no hops, so no HL reward
    merged = benchmark("merge_compare", f"{compared}:HL-tiny")
    assert merged.returncode == 0, merged.stderr
    assert "| HL-tiny |" in merged.stdout and "| Standalone |" in merged.stdout
    for name in ("rule_returns", "merge_compare"):
        refused = benchmark(name, str(tmp_path))
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, name
        assert refused.stderr.startswith(f"error: {tmp_path}"), refused.stderr
