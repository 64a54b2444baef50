"""HL on Flower's Deployment Engine: real SuperLink and SuperNode processes.

Everything listens on 127.0.0.1 at ports chosen at run time; every process is
stopped at the end, also when a test fails (the ``federation`` fixture of
conftest.py), and each wait has a timeout (tests/deployment_helpers.py). The
runs are short (digits, 4 nodes, a few steps).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from deployment_helpers import (
    DEPLOYMENT,
    NODES,
    ROOT,
    RUN_TIMEOUT,
    START_TIMEOUT,
    check_finished_run,
    flwr_run,
    holds_a_task,
    read_csv,
    run_until_a_hop,
    start_supernodes,
    wait_until,
)

from deploy.local import CONNECTED, LocalFederation, environment, free_ports_in_a_row

pytestmark = DEPLOYMENT


def test_insecure_superlink_and_four_supernodes(federation: Callable[..., LocalFederation],
                                                tmp_path: Path) -> None:
    """``flwr run`` trains HL across four real SuperNodes, two episodes, on a
    partition that Flower Datasets' IidPartitioner draws (on every node). A
    fifth SuperNode that claims partition 1 again gets one warning and the
    run goes on with one node per partition."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    nodes = start_supernodes(local)
    twin = local.start_supernode(1, NODES, name="supernode-1-twin")
    twin.wait_for_log(CONNECTED, START_TIMEOUT)
    run_dir = tmp_path / "run"
    run = flwr_run(local, tmp_path / "cli", run_dir, episodes=2, partition="'iid'")
    steps = check_finished_run(run_dir, 2, run, local)
    assert (run_dir / "run.log").read_text().count("both serve partition 1") == 1
    partitions = read_csv(run_dir / "partitions.csv")  # the ServerApp's record of it
    assert [int(row["samples"]) for row in partitions] == [360, 360, 359, 359]
    # Every SuperNode answered the server's identify query, so all four took part.
    for node in nodes:
        assert "Received successfully" in node.log(), node.tail()
    # The DQN trained after the first episode; its new version reached the second's nodes.
    assert any(r["policy_sent"] == "True" for r in steps if r["episode"] == "1")


def make_secrets(folder: Path) -> tuple[Path, Path, Path]:
    """Certificates, four registered-to-be keys and one stranger's key, via the scripts."""
    certificates, keys, stranger = folder / "certificates", folder / "keys", folder / "stranger"
    for args in (["make_certs", "--out", str(certificates)],
                 ["supernode_keys", "create", "--nodes", str(NODES), "--out", str(keys)],
                 ["supernode_keys", "create", "--nodes", "1", "--out", str(stranger)]):
        script = subprocess.run([sys.executable, "-m", f"deploy.{args[0]}", *args[1:]],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert script.returncode == 0, script.stderr
    return certificates, keys, stranger


def test_tls_and_supernode_authentication(federation: Callable[..., LocalFederation],
                                          tmp_path: Path) -> None:
    """Registered SuperNodes run HL over TLS; an unregistered key is refused."""
    certificates, keys, stranger = make_secrets(tmp_path / "secrets")
    local = federation(certificates=certificates, supernode_auth=True)
    local.start_superlink(START_TIMEOUT)
    cli_home = tmp_path / "cli"
    local.connection(cli_home)
    register = subprocess.run(
        [sys.executable, "-m", "deploy.supernode_keys", "register", "--keys", str(keys)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=environment(cli_home))
    assert register.returncode == 0, register.stderr
    assert register.stdout.count("registered") == NODES

    intruder = local.start_supernode(1, NODES, private_key=stranger / "supernode-0",
                                     name="intruder")
    # The registered SuperNodes, through the helper script of the docs.
    helper = local.start("start-supernodes", [
        sys.executable, "-m", "deploy.start_supernodes", "--nodes", str(NODES),
        "--superlink", local.address, "--root-certificates", str(certificates / "ca.crt"),
        "--keys", str(keys), "--first-port", str(free_ports_in_a_row(NODES)),
        "--folder", str(tmp_path / "supernodes"), "--timeout", str(START_TIMEOUT)],
        cli_home, cwd=ROOT)
    helper.wait_for_log(f"{NODES} SuperNodes connected", START_TIMEOUT)
    assert intruder.wait_for_exit(START_TIMEOUT) != 0
    assert "Failed to activate SuperNode" in intruder.log(), intruder.tail()
    assert "No SuperNode found with the given public key" in local.superlink.log()

    run_dir = tmp_path / "run"
    run = flwr_run(local, cli_home, run_dir, episodes=1, **{"max-steps": 2})
    check_finished_run(run_dir, 1, run, local)
    # The refused node never got a message, so never the model (nor the app).
    assert CONNECTED not in intruder.log() and "Received" not in intruder.log()
    assert not (local.folder / "intruder-home" / "apps").exists()
    # Ctrl-C stops the helper and every SuperNode it started.
    helper.popen.send_signal(signal.SIGINT)
    assert helper.wait_for_exit(60) == 0 and "stopping the SuperNodes" in helper.log()
    assert helper.family() == []


def test_a_supernode_killed_mid_run_is_routed_around(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """SIGKILL the SuperNode the holder just chose (and its worker): the run
    goes on without it. The reply timeout, 30 s, is what the killed node
    costs the run; with Flower's own processes a loaded 2-core machine
    needed more than that for the first message to four SuperNodes (each
    started a ClientApp process and imported TensorFlow), so this test once
    ran at 90 s; with the workers 30 s holds."""
    steps_total = 6
    # 60 local epochs: the chosen node trains for a second or more, so it is
    # killed while it holds the model, not after it answered.
    hop = run_until_a_hop(federation(), tmp_path, steps_total,
                          **{"reply-timeout": 30.0, "local-epochs": 60})
    local, run, run_dir, victim = hop.local, hop.run, hop.run_dir, hop.victim
    killed_after = hop.steps_before
    wait_until(lambda: holds_a_task(hop.nodes[victim]), RUN_TIMEOUT,
               f"{hop.nodes[victim].name} receiving")
    local.kill_node(hop.nodes[victim].name)  # the SuperNode and its worker
    run.wait_for_exit(RUN_TIMEOUT)
    steps = read_csv(run_dir / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, steps_total + 1)), run.tail(40)
    failed = [i for i, r in enumerate(steps) if r["failures"].startswith(f"{victim}:")]
    assert failed and failed[0] == killed_after  # the very next step found it dead
    assert all(int(r["holder"]) != victim for r in steps[killed_after:])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped"] is None and summary["failures_by_node"][str(victim)] >= 1


def test_a_stray_supernode_and_a_missing_partition_end_the_run_in_one_line(
        federation: Callable[..., LocalFederation], tmp_path: Path) -> None:
    """Three SuperNodes for partitions 0-2 of 4 and a stray one without
    ``--node-config``: the stray is ignored with a warning, and after the
    grace period the run ends with one line naming the missing partition and
    the fix, no traceback, and no run folder that would block the retry."""
    local = federation()
    local.start_superlink(START_TIMEOUT)
    nodes = [local.start_supernode(i, NODES) for i in range(NODES - 1)]
    nodes.append(local.start_supernode(None, NODES, name="stray-supernode"))
    for node in nodes:
        node.wait_for_log(CONNECTED, START_TIMEOUT)
    run = flwr_run(local, tmp_path / "cli", tmp_path / "run")
    output = run.log()
    assert "no node serves partition(s) [3] of 4" in output, run.tail(40)
    assert "this SuperNode has no partition" in output
    assert "num-partitions=4" in output  # the fix for deployment
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()  # the nodes are checked before it is made
