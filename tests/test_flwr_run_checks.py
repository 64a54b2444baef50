"""``flwr run`` is as safe as ``sim.py``: the ServerApp checks the run config,
the task, the data and the run folder before it writes anything, and a
mistake is one line (hl_flower.server_app.checked_run), also on a real
deployment."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from deployment_helpers import START_TIMEOUT, deployment, flwr_run, start_supernodes

from deploy.local import LocalFederation
from hl_flower.inputs import OneLineInputErrors, RunConfigError
from hl_flower.server_app import checked_run
from strategies import NodeFailure

SMALL = {"dataset": "digits", "num-nodes": 4, "main-samples": 40, "other-samples": 20}


def run_config(tmp_path: Path, **changes: object) -> dict:
    return SMALL | {"run-dir": str(tmp_path / "run")} | changes


@pytest.mark.parametrize(("changes", "expected"), [
    ({"goal": True}, "must be a number, got the boolean true"),
    ({"episodes": "many"}, "must be a whole number"),
    ({"goal": 1.5}, "goal must be in (0, 1]"),
    ({"num-nodes": 1}, "num-nodes must be at least 2, got 1"),
    ({"main-samples": 200}, "main-samples=142 or less"),
    ({"no-such-key": 1}, "unknown setting 'no-such-key'"),
    ({"dataset": "idx:/nowhere"}, "/nowhere"),
    ({"main-samples": 5000}, "do not fit this training set"),
    ({"distance-file": "/nowhere.csv"}, "distance-file=/nowhere.csv does not exist"),
    ({"task": "no_such_task_module"}, "no_such_task_module"),
    ({"overwrite": "maybe"}, "overwrite must be true or false"),
])
def test_a_bad_run_config_is_refused_before_anything_is_written(
        tmp_path: Path, changes: dict, expected: str) -> None:
    with pytest.raises(RunConfigError) as refused:
        checked_run(run_config(tmp_path, **changes))
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert "--" not in str(refused.value)  # run-config words, not sim.py's flags
    assert not (tmp_path / "run").exists()


def test_what_runs_before_writing_can_end_the_run_with_nothing_written(
        tmp_path: Path) -> None:
    """``flwr run`` checks its nodes there: a run that cannot start leaves
    no folder that would block its retry."""
    def no_nodes(config: object) -> None:
        raise NodeFailure("node 7 serves partition 2 of 4, but the run has 5 nodes; "
                          "to use such nodes give --nodes 4")

    with pytest.raises(NodeFailure, match="to use such nodes give num-nodes=4$"):
        checked_run(run_config(tmp_path), before_writing=no_nodes)  # as flwr ls shows it
    assert not (tmp_path / "run").exists()
    config, folder = checked_run(run_config(tmp_path), before_writing=lambda config: None)
    assert folder.is_dir() and config.num_nodes == 4


def test_an_existing_run_folder_is_kept_unless_overwrite_is_set(tmp_path: Path) -> None:
    config, folder = checked_run(run_config(tmp_path))
    (folder / "steps.csv").write_text("earlier run\n")
    with pytest.raises(RunConfigError, match="give another run-dir, or overwrite=true"):
        checked_run(run_config(tmp_path))
    assert (folder / "steps.csv").read_text() == "earlier run\n"
    _, again = checked_run(run_config(tmp_path, overwrite=True))
    assert again == folder and not (folder / "steps.csv").exists()
    (folder / "steps.csv").write_text("earlier run\n")
    _, again = checked_run(run_config(tmp_path, overwrite="Yes"))  # as every switch
    assert again == folder and not (folder / "steps.csv").exists()
    assert config.num_nodes == 4


@pytest.mark.parametrize(("error", "line"), [
    (RunConfigError("goal must be in (0, 1], got 1.5"), "goal must be in (0, 1], got 1.5"),
    (NodeFailure("node 7 serves partition 0 of 2, but the run has 10 nodes; to use such "
                 "nodes give --nodes 2, else in simulation give --federation-config "
                 "\"num-supernodes=10\""),
     "node 7 serves partition 0 of 2, but the run has 10 nodes; to use such nodes give "
     "num-nodes=2, else in simulation give --federation-config \"num-supernodes=10\""),
    (NodeFailure("4 node failures, more than --max-failures 3; last: partition 2"),
     "4 node failures, more than max-failures=3; last: partition 2")])
def test_flower_logs_a_users_mistake_as_one_line_in_run_config_words(
        error: Exception, line: str) -> None:
    try:
        raise error
    except type(error) as err:
        record = logging.LogRecord("flwr", logging.ERROR, __file__, 1,
                                   "%s raised an exception", ("ServerApp",),
                                   (type(err), err, err.__traceback__))
    OneLineInputErrors().filter(record)
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert text == f"ERROR flwr run: {line}"


def test_other_exceptions_keep_their_traceback() -> None:
    try:
        raise KeyError("a bug")
    except KeyError as err:
        record = logging.LogRecord("flwr", logging.ERROR, __file__, 1, "boom", (),
                                   (type(err), err, err.__traceback__))
    OneLineInputErrors().filter(record)
    assert "Traceback" in logging.Formatter().format(record)


@deployment
def test_a_bad_run_config_on_a_deployment_is_one_line_of_flwr_run(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """``flwr run`` on real SuperNodes served by ClientApp workers: the
    streamed output names the mistake in one line, without a traceback, and
    the run folder is not made."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    start_supernodes(local)
    run = flwr_run(local, tmp_path / "cli", tmp_path / "run", **{"learning-rate": -1})
    output = run.log()
    naming = [line for line in output.splitlines() if "learning-rate" in line]
    assert len(naming) == 1, output
    assert "learning-rate must be a positive number, got -1" in naming[0]
    assert "--learning-rate" not in naming[0]
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()
