"""Nodes that crash or send bad replies do not stop or corrupt a run.

One real simulation (Flower's engine, in this process) serves 6 nodes whose
ClientApp is ``hl_flower.drills``: partition 1 crashes in server rounds 1-3
only, 2 always crashes, 3 always sends NaN weights, 4 names a next node that
does not exist (only a problem when the node decides, i.e. under HL), 5 is
honest, and 0 too. Four runs share it: RoundRobin, FedAvg, HL training, and
HL with a failure budget it must exceed.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from hl_flower.compare import CurveRecorder
from hl_flower.config import HLConfig
from hl_flower.distance import reference_distance
from hl_flower.drills import app as drill_app
from hl_flower.drills import parse_drills
from hl_flower.evaluator import TestSetEvaluator, model_factory
from hl_flower.server_app import run_hl
from hl_flower.simulation import simulate
from strategies import FedAvgBaseline, RoundRobin, StepResult

DRILLS = "1:crash:1-3,2:crash,3:nan,4:choice"
CONFIG = HLConfig(dataset="digits", num_nodes=6, main_samples=140, other_samples=100,
                  learning_rate=0.01, max_steps=12, goal=0.99, episodes=2,
                  failure_cooldown=2, replay_batch=4, dqn_fit_batch=2,
                  epsilon_decay=0.5, dqn_hidden_1=32, dqn_hidden_2=16)


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("failures")
    seen: dict = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        steps: list[StepResult] = []
        rule = RoundRobin(CONFIG, reference_distance(CONFIG.num_nodes))
        rule.start(grid, model_factory(CONFIG), TestSetEvaluator(CONFIG), episodes=1,
                   on_step=steps.append)
        seen["round_robin"] = steps
        rounds: list[StepResult] = []
        FedAvgBaseline(CONFIG.replace(max_steps=4)).start(
            grid, model_factory(CONFIG), TestSetEvaluator(CONFIG), episodes=1,
            on_step=rounds.append)
        seen["fedavg"] = rounds
        (out / "hl").mkdir()
        seen["hl"] = run_hl(grid, CONFIG, out / "hl")
        (out / "budget").mkdir()
        seen["budget"] = run_hl(grid, CONFIG.replace(max_failures=2), out / "budget")

    os.environ["HL_DRILL"] = DRILLS  # read by the drill ClientApp in each actor
    try:
        simulate(server_app, CONFIG.num_nodes, client_app=drill_app)
    finally:
        del os.environ["HL_DRILL"]
    assert {"round_robin", "fedavg", "hl", "budget"} <= seen.keys(), "the ServerApp did not finish"
    seen["out"] = out
    return seen


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_drills_parse_and_refuse_nonsense() -> None:
    assert parse_drills(DRILLS)[1] == ("crash", 1, 3)
    assert parse_drills("2:nan")[2][0] == "nan"
    with pytest.raises(ValueError, match="HL_DRILL"):
        parse_drills("2:explode")


@pytest.mark.slow
def test_round_robin_reroutes_and_loses_no_step(drilled: dict) -> None:
    steps: list[StepResult] = drilled["round_robin"]
    assert [s.step for s in steps] == list(range(1, CONFIG.max_steps + 1))
    holders = [s.holders[0] for s in steps]
    assert not {2, 3} & set(holders)  # never adopted from a bad node
    second = steps[1]  # 0 -> 1 (crashes) -> 2 (crashes) -> 3 (NaN) -> 4
    assert [f.split(":")[0] for f in second.failures] == ["1", "2", "3"]
    assert "error reply" in second.failures[0] and "NaN" in second.failures[2]
    assert holders[1] == 4
    for before, after in zip(holders, holders[1:], strict=False):
        assert after in {(before + 1) % 6, (before + 2) % 6, (before + 3) % 6,
                         (before + 4) % 6}  # the cycle, skipping failed nodes
    # Partition 1 failed only in rounds 1-3: after its cool-down it trains again.
    assert 1 in holders[3:]
    assert all(math.isfinite(s.accuracy) for s in steps)
    assert steps[-1].accuracy > steps[0].accuracy


@pytest.mark.slow
def test_fedavg_averages_only_the_usable_replies(drilled: dict) -> None:
    rounds: list[StepResult] = drilled["fedavg"]
    assert len(rounds) == 4
    for fedavg_round in rounds:
        assert 2 not in fedavg_round.holders and 3 not in fedavg_round.holders
        assert len(fedavg_round.failures) >= 2  # 2 crashes, 3 sends NaN
        assert math.isfinite(fedavg_round.accuracy)
    assert 1 not in rounds[0].holders and 1 in rounds[3].holders  # back in round 4
    assert rounds[-1].accuracy > rounds[0].accuracy


@pytest.mark.slow
def test_hl_trains_around_bad_nodes_and_records_them(drilled: dict) -> None:
    folder = drilled["out"] / "hl"
    rows = read_csv(folder / "steps.csv")
    assert rows, "no steps logged"
    for episode in ("0", "1"):
        numbers = [int(r["step"]) for r in rows if r["episode"] == episode]
        assert numbers == list(range(1, len(numbers) + 1))
    assert not {"2", "3", "4"} & {r["holder"] for r in rows}
    logged = [f for r in rows for f in r["failures"].split("; ") if f]
    assert logged and {f.split(":")[0] for f in logged} <= {"1", "2", "3", "4"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["stopped"] is None
    assert summary["failures_total"] == len(logged)
    assert sum(summary["failures_by_node"].values()) == len(logged)
    accuracies = [float(r["accuracy"]) for r in rows]
    assert all(math.isfinite(a) for a in accuracies)
    assert max(accuracies) > 0.5


@pytest.mark.slow
def test_failure_budget_stops_the_run_with_a_reason(drilled: dict) -> None:
    summary = drilled["budget"]
    assert "--max-failures 2" in summary["stopped"]
    folder = drilled["out"] / "budget"
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["stopped"] == summary["stopped"]
    assert (folder / "config.json").is_file()


def test_curve_recorder_adds_up_hop_costs() -> None:
    recorder = CurveRecorder("RoundRobin", 1)
    for step, hop in ((1, 0.0), (2, 0.25), (3, 0.5)):
        recorder(StepResult(0, step, [step], [], 0.5, -1.0, hop, 10, 2, False, 0.1,
                            0.1, 0.0, 0.1, 0.3, False))
    assert [p.cumulative_cost for p in recorder.points] == [0.0, 0.25, 0.75]
    assert recorder.points[-1].cumulative_bytes == 30
