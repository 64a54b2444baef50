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
import subprocess
import sys
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
from hl_flower.progress_bar import describe_failure
from hl_flower.quiet import TerminalFilter
from hl_flower.runlog import process_died, resume_can_help
from hl_flower.server_app import run_hl
from hl_flower.simulation import simulate
from strategies import FlowerBaseline, RoundRobin, StepResult
from strategies.replies import raised_message

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
        rule = RoundRobin.from_config(CONFIG, reference_distance(CONFIG.num_nodes))
        rule.start(grid, model_factory(CONFIG), TestSetEvaluator(CONFIG), episodes=1,
                   on_step=steps.append)
        seen["round_robin"] = steps
        rounds: list[StepResult] = []
        FlowerBaseline.from_config(CONFIG.replace(max_steps=4)).start(
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
    # The step the run stopped in is logged too, with the failures in it.
    rows = read_csv(folder / "steps.csv")
    last = rows[-1]
    assert last["accuracy"] == "nan" and last["done"] == "False" and last["failures"]
    logged = [f for r in rows for f in r["failures"].split("; ") if f]
    assert len(logged) == 3  # one over the budget of 2
    assert saved["failures_total"] == 3 and saved["unfinished_steps"] == 1
    assert sum(saved["failures_by_cause"].values()) == 3
    assert saved["steps_total"] == len(rows) - 1
    # Every failed node's traceback is in the run's log.
    log = (folder / "run.log").read_text()
    assert log.count("failure drill: this node crashes") >= 2 and "Traceback" in log
    assert "\x1b[" not in log  # Ray's terminal colours are stripped


def test_resume_is_advised_only_where_the_nodes_did_not_answer() -> None:
    silent = {"failures_by_cause": {"no reply within 30 s": 4}}
    assert resume_can_help("5 node failures, more than --max-failures 4; last: "
                           "partition 1: no reply within 30 s", silent)
    assert resume_can_help("only 3 of 4 nodes connected; start them all", {})
    actor_killed = {"failures_by_cause": {  # the Ray worker process was killed
        "error reply (The actor is dead because its worker process has died. Worker "
        "exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a "
        "connection error c...)": 10}}
    assert resume_can_help("no node is available: every node failed within the last 5 "
                           "steps or left", actor_killed)
    assert process_died("no node is available", actor_killed)


def test_a_run_whose_ray_process_died_is_told_to_resume_and_what_if_it_dies_again(
        tmp_path: Path) -> None:
    import sim

    summary = {"failures_by_cause": {"error reply (The actor is dead because its worker "
                                     "process has died.)": 4}}
    advice = sim.stop_advice("train", "no node is available", tmp_path, summary)
    assert advice == (f"; the Ray process of the nodes died (killed, out of memory, or a "
                      f"crash in the ClientApp; Ray's reason is in {tmp_path / 'run.log'}):"
                      f" continue with --resume {tmp_path}, and if it dies again there, fix "
                      "that first")
    crashed = {"failures_by_cause": {"no reply within 30 s": 1,
                                     "error reply (the ClientApp raised: boom)": 3}}
    assert not resume_can_help("4 node failures, more than --max-failures 3", crashed)
    assert not process_died("4 node failures, more than --max-failures 3", crashed)
    assert not resume_can_help("no node serves partitions [3]", {})
    assert not resume_can_help("no node returned a usable model in round 2",
                               {"failures_by_cause": {"NaN values in layer 0": 4}})


def test_a_node_traceback_stays_off_the_terminal_without_verbose() -> None:
    import logging

    def record(level: int, path: str) -> logging.LogRecord:
        return logging.LogRecord("flwr", level, path, 1, "message", None, None)

    terminal = TerminalFilter()
    node_side = "/venv/site-packages/flwr/server/superlink/fleet/vce/vce_api.py"
    assert not terminal.filter(record(logging.ERROR, node_side))
    assert not terminal.filter(record(logging.WARNING, "/project/strategies/travelling.py"))
    assert terminal.filter(record(logging.ERROR, "/venv/site-packages/flwr/simulation/app.py"))


def test_what_rays_raylet_reports_goes_to_the_run_log_not_the_terminal(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    from ray._private import worker

    from hl_flower.quiet import keep_ray_errors_off_the_terminal

    monkeypatch.setattr(worker, "print_to_stdstream", worker.print_to_stdstream)  # restored
    assert keep_ray_errors_off_the_terminal()
    assert keep_ray_errors_off_the_terminal()  # a second call does not wrap it twice
    with caplog.at_level("INFO", logger="flwr"):
        worker.print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet",
                                   "is_err": False}, ignore_prefix=False)
        worker.print_to_stdstream({"lines": ["an actor's own line"], "pid": 1234,
                                   "is_err": False}, ignore_prefix=True)
    printed = capsys.readouterr()
    assert "A worker died" not in printed.out + printed.err
    assert "an actor's own line" in printed.out  # everything else as Ray prints it
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Ray: A worker died or was killed")]


def test_a_failed_node_is_one_plain_line() -> None:
    failed = StepResult(1, 4, [2], [], math.nan, math.nan, math.nan, 0, 0, False,
                        math.nan, math.nan, math.nan, math.nan, 0.5, False,
                        ["2: error reply (the ClientApp raised: boom)"])
    line = describe_failure(failed, failed.failures[0], Path("runs/x/run.log"))
    assert line == ("warning: episode 2, step 4: node 2 failed: error reply (the "
                    "ClientApp raised: boom) (the run stopped in this step; details "
                    "in runs/x/run.log)")
    assert raised_message("<class 'flwr.clientapp.client_app.ClientAppException'>:<'"
                          "ray::ClientAppActor.run()\n  File x\nException "
                          "ClientAppException occurred. Message: boom'>") == (
        "the ClientApp raised: boom")


def test_curve_recorder_adds_up_hop_costs() -> None:
    recorder = CurveRecorder("RoundRobin", 1)
    for step, hop in ((1, 0.0), (2, 0.25), (3, 0.5)):
        recorder(StepResult(0, step, [step], [], 0.5, -1.0, hop, 10, 2, False, 0.1,
                            0.1, 0.0, 0.1, 0.3, False))
    assert [p.cumulative_cost for p in recorder.points] == [0.0, 0.25, 0.75]
    assert recorder.points[-1].cumulative_bytes == 30


@pytest.mark.slow
def test_a_run_that_fails_names_each_failure_once_and_keeps_tracebacks_in_its_log(
        tmp_path: Path) -> None:
    """sim.py with every node crashing: one warning line per failed node,
    no traceback on the terminal (they are in run.log), exit code 1, and no
    --resume advice, since a resumed run would crash the same way."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "sim.py", "--dataset", "digits", "--nodes", "4",
         "--main-samples", "140", "--other-samples", "100", "--max-failures", "3",
         "--client-app", "hl_flower.drills:app", "--out", str(tmp_path), "--name", "all"],
        cwd=root, capture_output=True, text=True, timeout=600,
        env=os.environ | {"HL_DRILL": "0:crash,1:crash,2:crash,3:crash"})
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    warnings = [line for line in lines if line.startswith("warning: episode 1, step 1: node ")]
    assert len(warnings) == 4 and all("this node crashes" in w for w in warnings)
    assert len(lines) == 5 and lines[-1].startswith("error: the run stopped early: 4 node")
    assert "Traceback" not in done.stderr and "--resume" not in done.stderr
    assert "fix them first" in lines[-1]
    assert done.stderr.count("run.log") == 5
    assert (tmp_path / "all" / "run.log").read_text().count("Traceback") >= 4
