"""sim.py runs on an existing Ray cluster (`--ray-address`): a real local
head started with `ray start --head` on 127.0.0.1, stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
SESSION = Path("/tmp/ray/session_latest")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def ray_head(tmp_path: Path) -> Iterator[str]:
    """A one-machine Ray cluster; yields its address."""
    port = free_port()
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
         str(port), "--num-cpus", "2", "--include-dashboard=false",
         "--disable-usage-stats", "--block"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "will now block forever" not in (tmp_path / "ray-head.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "ray-head.log").read_text()[-2000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
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


def test_sim_runs_on_an_existing_ray_cluster(ray_head: str, tmp_path: Path) -> None:
    session = SESSION.resolve()
    drivers_before = set((session / "logs").glob("python-core-driver-*"))
    done = subprocess.run(
        [sys.executable, "sim.py", "--dataset", "digits", "--nodes", "4",
         "--main-samples", "140", "--other-samples", "100", "--learning-rate", "0.005",
         "--episodes", "1", "--max-steps", "4", "--ray-address", ray_head,
         "--out", str(tmp_path), "--name", "cluster"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cluster" / "summary.json").is_file()
    # It joined the head's session instead of starting a Ray of its own.
    assert SESSION.resolve() == session
    assert set((session / "logs").glob("python-core-driver-*")) - drivers_before
