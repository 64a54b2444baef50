"""What the tests of real SuperLink and SuperNode processes share (the
``federation`` fixture is in conftest.py): settings of a short HL run, and
helpers that start SuperNodes and ``flwr run`` and read what the run wrote.

Everything listens on 127.0.0.1 at ports chosen at run time, and each wait
has a timeout.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.cli import flower_executable
from deploy.local import CONNECTED, LocalFederation, LocalProcess

ROOT = Path(__file__).resolve().parents[1]
NODES = 4
START_TIMEOUT = 90.0  # SuperLink serving, SuperNodes connected
RUN_TIMEOUT = 300.0  # one `flwr run`, start to finish
# Settings on which the accuracy climbs past the goal in about three steps.
SHORT_RUN = {"dataset": "'digits'", "num-nodes": NODES, "main-samples": 100,
             "other-samples": 300, "learning-rate": 0.01, "max-steps": 5,
             "replay-batch": 2, "dqn-fit-batch": 2, "epsilon-decay": 0.5,
             "reply-timeout": 120.0}
DEPLOYMENT = [pytest.mark.slow,  # real SuperLink and SuperNode processes
              pytest.mark.skipif(sys.platform == "win32",
                                 reason="process groups and signals are POSIX")]


def deployment(test: Callable) -> Callable:
    """Mark one test as DEPLOYMENT does a module (``pytestmark = DEPLOYMENT``)."""
    for mark in DEPLOYMENT:
        test = mark(test)
    return test


def start_supernodes(local: LocalFederation, keys: Path | None = None) -> list[LocalProcess]:
    """Start one SuperNode per partition and wait until all are connected."""
    nodes = [local.start_supernode(i, NODES, private_key=keys / f"supernode-{i}"
                                   if keys else None) for i in range(NODES)]
    for node in nodes:
        node.wait_for_log(CONNECTED, START_TIMEOUT)
    return nodes


def start_flwr_run(local: LocalFederation, cli_home: Path, run_dir: Path,
                   app: Path = ROOT, **settings: object) -> LocalProcess:
    """Start ``flwr run`` of ``app`` (this project) on ``local`` with
    SHORT_RUN (+ ``settings``)."""
    local.connection(cli_home)
    config = SHORT_RUN | settings | {"run-dir": f"'{run_dir}'"}
    command = [flower_executable("flwr"), "run", str(app), "--stream", "--run-config",
               " ".join(f"{key}={value}" for key, value in config.items())]
    return local.start("flwr-run", command, cli_home)


def flwr_run(local: LocalFederation, cli_home: Path, run_dir: Path,
             app: Path = ROOT, **settings: object) -> LocalProcess:
    """``flwr run`` as above, waiting until it returns (the run has ended)."""
    run = start_flwr_run(local, cli_home, run_dir, app, **settings)
    run.wait_for_exit(RUN_TIMEOUT)
    return run


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def check_finished_run(run_dir: Path, episodes: int, run: LocalProcess,
                       local: LocalFederation) -> list[dict[str, str]]:
    """The run completed; every hop went to a node 0..N-1; accuracy rose."""
    assert (run_dir / "summary.json").exists(), (
        f"no summary.json\nflwr run:\n{run.tail(40)}\n"
        f"superlink:\n{local.superlink.tail(30) if local.superlink else ''}")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == episodes, (summary, run.tail(60))
    steps = read_csv(run_dir / "steps.csv")
    assert summary["steps_total"] == len(steps)
    for episode in range(episodes):
        rows = [r for r in steps if int(r["episode"]) == episode]
        assert rows[0]["holder"] == "0"  # the starter
        for before, after in zip(rows, rows[1:], strict=False):
            assert int(before["next_node"]) in range(NODES)
            assert before["next_node"] == after["holder"]
        assert {int(r["holder"]) for r in rows} <= set(range(NODES))
        assert rows[-1]["done"] == "True"
        accuracy = [float(r["accuracy"]) for r in rows]
        assert accuracy[-1] > accuracy[0] and accuracy[-1] > 0.5, accuracy
    return steps


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.05 s; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def holds_a_task(supernode: LocalProcess) -> bool:
    """Whether the SuperNode received a message that it has not answered yet
    (it handles one at a time, so its ClientApp task is open)."""
    log = supernode.log()
    return log.rfind("Received successfully") > log.rfind("Sending:")


def wait_for_rows(path: Path, accept: Callable[[list[dict[str, str]]], bool],
                  run: LocalProcess, timeout: float) -> list[dict[str, str]]:
    """Poll a CSV the run appends to until ``accept(rows)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = read_csv(path) if path.exists() else []
        if rows and accept(rows):
            return rows
        assert run.running(), f"the run ended early:\n{run.tail(40)}"
        time.sleep(0.2)
    raise AssertionError(f"{path} did not show the expected rows in {timeout:.0f} s")


@dataclass
class HopUnderWay:
    """A run on four SuperNodes the moment the holder chose another node."""

    local: LocalFederation
    nodes: list[LocalProcess]
    run: LocalProcess
    run_dir: Path
    victim: int  # the node the next step's message goes to
    steps_before: int  # steps.csv rows so far


def run_until_a_hop(local: LocalFederation, tmp_path: Path, steps_total: int,
                    **settings: object) -> HopUnderWay:
    """Start a SuperLink, four SuperNodes and a one-episode run of
    ``steps_total`` steps (goal out of reach, a failed node is not retried
    within the run), and wait until a holder sends the model elsewhere."""
    local.start_superlink(START_TIMEOUT)
    nodes = start_supernodes(local)
    run_dir = tmp_path / "run"
    run = start_flwr_run(local, tmp_path / "cli", run_dir, episodes=1, goal=0.99,
                         **{"max-steps": steps_total, "failure-cooldown": 100} | settings)
    rows = wait_for_rows(run_dir / "steps.csv",
                         lambda rows: rows[-1]["next_node"] not in ("", rows[-1]["holder"]),
                         run, RUN_TIMEOUT)
    return HopUnderWay(local, nodes, run, run_dir, int(rows[-1]["next_node"]), len(rows))
