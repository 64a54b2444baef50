"""The long-lived ClientApp worker (deploy.clientapp_worker) with real
SuperLink, SuperNode and worker processes on 127.0.0.1: a worker killed
mid-task is replaced and its step is routed elsewhere, a run of other code
gets a fresh worker, and command-line mistakes are one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from deployment_helpers import (
    NODES,
    ROOT,
    RUN_TIMEOUT,
    START_TIMEOUT,
    check_finished_run,
    deployment,
    flwr_run,
    holds_a_task,
    read_csv,
    run_until_a_hop,
    start_supernodes,
    wait_until,
)

from deploy.cli import flower_executable
from deploy.local import (
    CONNECTED,
    PROJECT,
    LocalFederation,
    LocalProcess,
    environment,
    free_port,
    supernode_command,
)
from hl_flower.server_app import ENDED_BY_FLOWER

# A task lost with its worker becomes an error reply only when the task's
# heartbeat lapses at the SuperNode (up to ~60 s): that wait comes on top.
LOST_TASK_TIMEOUT = RUN_TIMEOUT + 120.0
NOT_TAKEN = "worker: the reply was not taken"
LOADED = re.compile(r"worker: loaded (\S+) (\S+) \(FAB ([0-9a-f]{12})\)")


def worker_child(worker: LocalProcess) -> psutil.Process:
    """The worker process that the supervisor ``worker`` runs (one at a time)."""
    found: list[psutil.Process] = []

    def one_child() -> bool:
        found[:] = psutil.Process(worker.pid).children()
        return len(found) == 1

    wait_until(one_child, 30, f"{worker.name}'s supervisor running one worker")
    return found[0]


@deployment
def test_a_worker_killed_mid_task_is_restarted_and_its_step_goes_elsewhere(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """SIGKILL the worker (not its supervisor, not the SuperNode) of the node
    the holder just chose, while it trains: the supervisor starts another, the
    SuperNode answers the lost task with an error once its heartbeat lapses,
    and the run records a failure for that node and finishes every step."""
    steps_total = 6
    # 60 local epochs: a step trains for a second or more, time to kill mid-task.
    hop = run_until_a_hop(federation(), tmp_path, steps_total,
                          **{"reply-timeout": 120.0, "local-epochs": 60})
    local, nodes, run, run_dir, victim = hop.local, hop.nodes, hop.run, hop.run_dir, hop.victim
    killed_after = hop.steps_before
    supernode, worker = nodes[victim], local.workers[nodes[victim].name]
    doomed = worker_child(worker)
    wait_until(lambda: holds_a_task(supernode), RUN_TIMEOUT, f"{supernode.name} receiving")
    idle_cpu = sum(doomed.cpu_times()[:2])
    wait_until(lambda: sum(doomed.cpu_times()[:2]) > idle_cpu + 0.3, RUN_TIMEOUT,
               f"{doomed.pid} training")  # it has taken the task (a time alone may not do)
    doomed.kill()
    wait_until(lambda: f"worker {doomed.pid} died (signal 9)" in worker.log(), 30,
               "the supervisor noticing")
    assert worker.running() and supernode.running()
    assert worker_child(worker).pid != doomed.pid

    assert run.wait_for_exit(LOST_TASK_TIMEOUT) == 0, run.tail(40)
    steps = read_csv(run_dir / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, steps_total + 1)), run.tail(40)
    failed = [i for i, r in enumerate(steps) if r["failures"].startswith(f"{victim}:")]
    assert failed and failed[0] == killed_after, [r["failures"] for r in steps]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] is None and summary["failures_by_node"][str(victim)] >= 1


def flwr_stop_the_run(cli_home: Path) -> None:
    """``flwr stop`` the one run ``flwr ls`` shows on the connection in ``cli_home``."""
    def flwr(*args: str) -> str:
        done = subprocess.run([flower_executable("flwr"), *args], capture_output=True,
                              text=True, env=environment(cli_home), timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    (run,) = json.loads(flwr("ls", "--format", "json"))["runs"]
    flwr("stop", str(run["run-id"]))


@deployment
def test_a_run_stopped_mid_task_leaves_its_worker_serving(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """``flwr stop`` while a node trains: the stopped run's summary says
    Flower ended it, the SuperNode drops the reply once the worker hands it
    in, and every worker serves the next run in the same process: no
    traceback, no restart.

    Who gets there first is timing. The SuperNode drops the reply as soon as
    the worker has announced it; when that happens before the worker has
    pushed all of its parts (usual on an idle machine), the worker's push
    fails and it says so in one warning; when the worker is quicker, it has
    nothing to say. Either way it must serve on. A
    SuperNode takes the next run's message only after the stopped one's
    reply was dealt with, so the next run finishing means every worker is
    past the stopped task."""
    hop = run_until_a_hop(federation(), tmp_path, 6,
                          **{"reply-timeout": 120.0, "local-epochs": 60})
    # Under load the run may be a step further than the hop it was seen at.
    wait_until(lambda: any(holds_a_task(node) for node in hop.nodes), RUN_TIMEOUT,
               "a SuperNode receiving")
    workers = list(hop.local.workers.values())
    serving = {worker.name: worker_child(worker).pid for worker in workers}
    time.sleep(0.5)  # the worker has taken the task and trains
    flwr_stop_the_run(tmp_path / "cli")
    hop.run.wait_for_exit(RUN_TIMEOUT)  # flwr run --stream returns once the run ended
    wait_until(lambda: (hop.run_dir / "summary.json").exists(), 30, "the stopped run's summary")
    summary = json.loads((hop.run_dir / "summary.json").read_text())
    assert summary["stopped"] == ENDED_BY_FLOWER
    assert summary["steps_total"] == len(read_csv(hop.run_dir / "steps.csv")) >= hop.steps_before

    tiny = {"episodes": 1, "max-steps": 2}
    after = flwr_run(hop.local, tmp_path / "cli", tmp_path / "run-after", **tiny)
    check_finished_run(tmp_path / "run-after", 1, after, hop.local)
    for worker in workers:
        log = worker.log()
        assert "Traceback" not in log and "died" not in log, log
        assert worker_child(worker).pid == serving[worker.name]
        assert len(LOADED.findall(log)) == 1, log  # no fresh worker either
    assert sum(w.log().count(NOT_TAKEN) for w in workers) <= 1


def copy_of_the_app(folder: Path) -> Path:
    """This project without its runs and git history, with one harmless
    change that gives it another FAB hash (same app name and version)."""
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(
        ".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"))
    with (folder / "hl_flower" / "client_app.py").open("a") as source:
        source.write("# a copy with other code, for tests/test_clientapp_worker.py\n")
    return folder


@deployment
def test_a_run_of_other_code_gets_a_fresh_worker(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """Two runs of different FABs on the same SuperNodes: both finish, and a
    worker that served both loaded each FAB once, in a fresh process (exec:
    same pid, so the supervisor saw no death)."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    start_supernodes(local)
    tiny = {"episodes": 1, "max-steps": 2}
    cli_home = tmp_path / "cli"
    first = flwr_run(local, cli_home, tmp_path / "run-1", **tiny)
    check_finished_run(tmp_path / "run-1", 1, first, local)
    worker = local.workers["supernode-0"]  # the starter: it trains in every run
    pid = worker_child(worker).pid
    second = flwr_run(local, cli_home, tmp_path / "run-2", copy_of_the_app(tmp_path / "app"),
                      **tiny)
    check_finished_run(tmp_path / "run-2", 1, second, local)

    log = worker.log()
    loaded = LOADED.findall(log)
    assert len(loaded) == 2, log
    (app_1, version_1, fab_1), (app_2, version_2, fab_2) = loaded
    assert (app_1, version_1) == (app_2, version_2) and fab_1 != fab_2
    assert f"a run with other code (FAB {fab_2}); starting a fresh worker" in log
    assert log.index("starting a fresh worker") < log.rindex("worker: loaded")
    assert "died" not in log and worker_child(worker).pid == pid



def slowly_starting_copy(folder: Path, seconds: float) -> Path:
    """This project with one change: a worker started from it takes
    ``seconds`` longer to prepare (before TensorFlow loads), as a worker
    on a loaded machine or a slow device does."""
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(
        ".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"))
    quiet = folder / "hl_flower" / "quiet.py"
    quiet.write_text(quiet.read_text().replace(
        "    saved = os.dup(2)\n",
        f"    import time\n    time.sleep({seconds})  # tests/test_clientapp_worker.py\n"
        "    saved = os.dup(2)\n", 1))
    return folder


@deployment
def test_a_fresh_worker_slower_than_the_claim_lifetime_runs_its_handed_over_task(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """Flower drops a claimed task that sends no heartbeat for 30 s. A fresh
    worker (a run of other code) that takes 35 s to prepare still runs the
    task its predecessor claimed, in the same process: its heartbeat beats
    from the start."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    start_supernodes(local)
    old = local.workers["supernode-0"]  # the starter: it trains in every run
    old.stop()
    worker = local.start("slow-worker", old.command, tmp_path / "slow-home",
                         slowly_starting_copy(tmp_path / "slow", 35.0))
    tiny = {"episodes": 1, "max-steps": 2}
    cli_home = tmp_path / "cli"
    check_finished_run(tmp_path / "run-1", 1,
                       flwr_run(local, cli_home, tmp_path / "run-1", **tiny), local)
    pid = worker_child(worker).pid
    second = flwr_run(local, cli_home, tmp_path / "run-2", copy_of_the_app(tmp_path / "app"),
                      **tiny)
    check_finished_run(tmp_path / "run-2", 1, second, local)
    log = worker.log()
    assert "starting a fresh worker" in log and len(LOADED.findall(log)) == 2, log
    assert "died" not in log and "Traceback" not in log, log
    assert worker_child(worker).pid == pid

def secured_node(local: LocalFederation, partition: int, certificates: Path,
                 secret: Path) -> tuple[LocalProcess, int]:
    """A SuperNode whose Runtime API has TLS (make_certs' server certificate)
    and hands out tasks only to a worker with ``secret``; and its port."""
    port = free_port()
    command = supernode_command(local.address, partition, NODES, port) + [
        "--ssl-certfile", str(certificates / "server.pem"),
        "--ssl-keyfile", str(certificates / "server.key"),
        "--ssl-ca-certfile", str(certificates / "ca.crt"),
        "--superexec-auth-secret-file", str(secret)]
    name = f"secured-{partition}"
    node = LocalProcess(name, command, local.folder / f"{name}.log",
                        environment(local.folder / f"{name}-home"), PROJECT)
    local.others.append(node)
    return node, port


def start_worker(local: LocalFederation, name: str, port: int, certificates: Path,
                 secret: Path) -> LocalProcess:
    """A worker for the SuperNode on ``port``, over TLS, with ``secret``."""
    worker = LocalProcess(name, [
        sys.executable, "-m", "deploy.clientapp_worker", "--runtime-api-address",
        f"127.0.0.1:{port}", "--root-certificates", str(certificates / "ca.crt"),
        "--superexec-auth-secret-file", str(secret)],
        local.folder / f"{name}.log", environment(local.folder / f"{name}-home"), PROJECT)
    local.others.append(worker)
    return worker


@deployment
def test_workers_over_tls_with_the_runtime_api_secret(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """SuperNodes whose Runtime API has TLS and a SuperExec auth secret: a
    worker without TLS, and one with another secret, stop with one line
    (exit 2, no restarts); workers with the secret serve a whole run."""
    certificates = tmp_path / "certificates"
    made = subprocess.run([sys.executable, "-m", "deploy.make_certs", "--out",
                           str(certificates)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    secret, wrong = tmp_path / "secret", tmp_path / "wrong"
    secret.write_bytes(b"the SuperNodes' secret")
    wrong.write_bytes(b"another secret")
    local = federation()
    local.start_superlink(START_TIMEOUT)
    nodes = [secured_node(local, i, certificates, secret) for i in range(NODES)]
    for node, _ in nodes:
        node.wait_for_log(CONNECTED, START_TIMEOUT)

    plain = LocalProcess("plain", [
        sys.executable, "-m", "deploy.clientapp_worker", "--runtime-api-address",
        f"127.0.0.1:{nodes[0][1]}", "--insecure"], local.folder / "plain.log",
        environment(local.folder / "plain-home"), PROJECT)
    local.others.append(plain)
    assert plain.wait_for_exit(60) == 2, plain.tail()  # plain HTTP to a TLS Runtime API
    assert "--insecure or --root-certificates must match" in plain.log(), plain.tail()

    stranger = start_worker(local, "stranger", nodes[0][1], certificates, wrong)
    assert stranger.wait_for_exit(60) == 2, stranger.tail()
    refusal = [line for line in stranger.log().splitlines() if line.startswith("error:")]
    assert len(refusal) == 1 and "--superexec-auth-secret-file" in refusal[0], stranger.tail()
    assert "died" not in stranger.log() and "Traceback" not in stranger.log()

    for i, (_, port) in enumerate(nodes):
        start_worker(local, f"worker-{i}", port, certificates, secret)
    run = flwr_run(local, tmp_path / "cli", tmp_path / "run", episodes=1)
    check_finished_run(tmp_path / "run", 1, run, local)


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param([], "one of the arguments --insecure --root-certificates is required",
                 id="no-security"),
    pytest.param(["--root-certificates", "{missing}"],
                 "--root-certificates {missing} does not exist", id="missing-certificates"),
    pytest.param(["--insecure", "--poll-interval", "0"], "--poll-interval must be between",
                 id="poll-interval-0"),
    pytest.param(["--insecure", "--superexec-auth-secret-file", "{missing}"],
                 "--superexec-auth-secret-file {missing} does not exist",
                 id="missing-secret"),
    pytest.param(["--insecure", "--root-certificates", "{missing}"],
                 "not allowed with argument", id="insecure-and-certificates"),
    pytest.param(["--insecure", "--poll-interval", "often"], "invalid float value",
                 id="poll-interval-word"),
    pytest.param(["--root-certificates", "pyproject.toml"],
                 "--root-certificates pyproject.toml is not a PEM certificate",
                 id="not-a-certificate"),
])
def test_command_line_mistakes_are_one_line_and_exit_2(args: list[str], expected: str,
                                                      tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-file")
    args = [arg.format(missing=missing) for arg in args]
    done = subprocess.run([sys.executable, "-m", "deploy.clientapp_worker",
                           "--runtime-api-address", "127.0.0.1:9", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert expected.format(missing=missing) in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


@deployment
def test_a_supernode_stops_at_once_while_its_worker_waits_for_a_task(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """SIGTERM to a SuperNode whose worker's ask for a task is held open:
    the hold is released, so the SuperNode's server stops without waiting
    for it (Flower waits 3 s, then cancels it with a traceback in the log)."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    node = local.start_supernode(0, NODES)
    node.wait_for_log(CONNECTED, START_TIMEOUT)
    local.workers[node.name].wait_for_log("worker: serving", START_TIMEOUT)
    time.sleep(1)  # the worker's next ask is held
    node.stop(20)
    log = node.log()
    assert "SuperNode terminated gracefully" in log, log
    assert "did not stop within" not in log and "Traceback" not in log, log
