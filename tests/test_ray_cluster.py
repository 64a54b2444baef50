"""sim.py runs on an existing Ray cluster (`--ray-address`): a real local
head started with `ray start --head` on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local import free_port  # below the ephemeral range: no race

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


@pytest.fixture()
def ray_head(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A one-machine Ray cluster; yields its address and its own temporary
    folder (short, for Ray's socket paths; its own, so that simulations of
    other tests running beside it leave its ``session_latest`` alone)."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
         str(port), "--num-cpus", "2", "--include-dashboard=false",
         "--disable-usage-stats", "--temp-dir", str(temp), "--block"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "will now block forever" not in (tmp_path / "ray-head.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "ray-head.log").read_text()[-2000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp / "session_latest"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        log.close()
        # `ray stop` would also forget the cluster; killing the head does not.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
        shutil.rmtree(temp, ignore_errors=True)


def test_sim_runs_on_an_existing_ray_cluster(ray_head: tuple[str, Path],
                                             tmp_path: Path) -> None:
    address, latest = ray_head
    session = latest.resolve()
    drivers_before = set((session / "logs").glob("python-core-driver-*"))
    done = subprocess.run(
        [sys.executable, "sim.py", "--dataset", "digits", "--nodes", "4",
         "--main-samples", "140", "--other-samples", "100", "--learning-rate", "0.005",
         "--episodes", "1", "--max-steps", "4", "--ray-address", address,
         "--out", str(tmp_path), "--name", "cluster"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cluster" / "summary.json").is_file()
    # It joined the head's session instead of starting a Ray of its own.
    assert latest.resolve() == session
    assert set((session / "logs").glob("python-core-driver-*")) - drivers_before
