"""hl_flower.flower_exit against Flower's real exit machinery: a process
whose own exit handler outlasts Flower's 5 s force-exit timer (as a deployed
ServerApp's push of its output can on a loaded machine) still writes what
``first_on_flower_exit`` guards, and code that waits for SystemExit does
not run there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# argv: output file, "inside" (SIGTERM inside the block) or "after" (after it)
PROCESS = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from flwr.supercore.exit import register_signal_handlers
    from flwr.supercore.telemetry import EventType
    from hl_flower.flower_exit import first_on_flower_exit

    out, when = Path(sys.argv[1]), sys.argv[2]
    register_signal_handlers(EventType.FLWR_SERVERAPP_RUN_LEAVE, "stopped",
                             exit_handlers=[lambda: time.sleep(30)])

    def summary():
        out.write_text("summary")

    def broken():
        raise OSError("disk full")

    try:
        with first_on_flower_exit(summary), first_on_flower_exit(broken):
            if when == "inside":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(60)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    except SystemExit:
        out.write_text("after SystemExit")
""")


def run_process(tmp_path: Path, when: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "summary.txt"
    done = subprocess.run([sys.executable, "-c", PROCESS, str(out), when], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=os.environ | {"FLWR_TELEMETRY_ENABLED": "0"})
    return done, out


def test_the_function_runs_before_flowers_force_exit(tmp_path: Path) -> None:
    done, out = run_process(tmp_path, "inside")
    assert out.read_text() == "summary"  # not "after SystemExit": the process was ended first
    assert "disk full" in done.stderr  # the broken one was logged, the exit went on


def test_after_the_block_the_function_is_not_called(tmp_path: Path) -> None:
    done, out = run_process(tmp_path, "after")
    assert done.returncode == 0, done.stderr
    assert not out.exists()
