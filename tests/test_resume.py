"""A run killed with SIGKILL mid-episode resumes and continues exactly as a
run that was never interrupted (real sim.py subprocesses, real simulation)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sim_runner import refused

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--nodes", "4", "--main-samples", "140",
        "--other-samples", "100", "--learning-rate", "0.005", "--episodes", "4",
        "--replay-batch", "8", "--dqn-fit-batch", "4", "--epsilon-decay", "0.5"]


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sim.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def steps_of(folder: Path) -> list[tuple[str, ...]]:
    with (folder / "steps.csv").open() as handle:
        return [(r["episode"], r["step"], r["holder"], r["next_node"], r["accuracy"])
                for r in csv.DictReader(handle)]


def first_difference(folder: Path, reference: Path) -> str:
    """The first steps.csv row where two runs part, every column of both
    (train_loss tells a node's training apart from its choice)."""
    def rows(run: Path) -> list[dict[str, str]]:
        with (run / "steps.csv").open() as handle:
            return list(csv.DictReader(handle))
    ours, theirs = rows(folder), rows(reference)
    keys = ("episode", "step", "holder", "next_node", "accuracy")
    for mine, other in zip(ours, theirs, strict=False):  # one may be longer
        if [mine[k] for k in keys] != [other[k] for k in keys]:
            return f"first difference:\n{mine}\n{other}"
    return f"{len(ours)} rows against {len(theirs)}"


def assert_same_steps(folder: Path, reference: Path) -> None:
    assert steps_of(folder) == steps_of(reference), first_difference(folder, reference)


def start_sim(out: Path, name: str, until: Callable[[list[tuple[str, ...]]], bool],
              stdout: int | None = subprocess.DEVNULL,
              stderr: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    """Start sim.py on TINY in its own session and return once the steps it
    logged satisfy ``until`` (the run must still be going)."""
    folder = out / name
    process = subprocess.Popen([sys.executable, "sim.py", *TINY, "--out", str(out),
                                "--name", name], cwd=ROOT, stdout=stdout, stderr=stderr,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (folder / "steps.csv").exists() and until(steps_of(folder)):
            break
        time.sleep(0.2)
    if process.poll() is not None:
        process.communicate()
        pytest.fail("the run ended before it could be interrupted")
    return process


def kill_mid_episode(out: Path, name: str, episodes_done: int) -> None:
    """Start a run, SIGKILL it (and its Ray processes) inside the episode
    after ``episodes_done``."""
    process = start_sim(out, name, lambda steps: len(
        [r for r in steps if int(r[0]) == episodes_done]) >= 2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume")
    done = sim(*TINY, "--out", str(out), "--name", "whole")
    assert done.returncode == 0, done.stderr[-2000:]
    kill_mid_episode(out, "killed", episodes_done=2)
    return out


def test_killed_run_resumes_exactly_where_it_was(runs: Path) -> None:
    killed = runs / "killed"
    partial = steps_of(killed)
    assert {r[0] for r in partial} >= {"0", "1", "2"}  # killed inside episode 2
    done = sim("--resume", str(killed))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after episode 2" in done.stdout
    assert_same_steps(killed, runs / "whole")  # same nodes, same accuracy
    with (killed / "episodes.csv").open() as handle:
        assert [r["episode"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]
    assert sorted(p.name for p in killed.glob("checkpoint-*")) == [
        "checkpoint-00003", "checkpoint-00004"]


def test_a_damaged_checkpoint_falls_back_to_the_one_before(runs: Path) -> None:
    folder = runs / "killed"
    if not (folder / "checkpoint-00004").exists():
        pytest.skip("needs the resumed run")
    (folder / "checkpoint-00004" / "memory.npz").write_bytes(b"garbage")
    done = sim("--resume", str(folder), "--episodes", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: skipping a damaged checkpoint" in done.stderr
    assert "checksum" in done.stderr and "Traceback" not in done.stderr
    assert "resuming after episode 3" in done.stdout
    assert_same_steps(folder, runs / "whole")


def test_no_usable_checkpoint_is_one_line_and_changes_nothing(runs: Path) -> None:
    folder = runs / "killed"
    for checkpoint in folder.glob("checkpoint-*"):
        (checkpoint / "state.json").write_text("{not json")
    before = (folder / "steps.csv").read_bytes()
    done = refused("--resume", str(folder), "--episodes", "6")
    assert done.returncode == 2
    assert done.stderr.count("error:") == 1 and "no older checkpoint" in done.stderr
    assert "Traceback" not in done.stderr
    assert (folder / "steps.csv").read_bytes() == before


@pytest.mark.parametrize(("args", "expected"), [
    (["--resume", "/nonexistent/run"], "not a run folder"),
    (["--resume", "{whole}", "--nodes", "5"], "drop --nodes"),
    (["--resume", "{whole}"], "already finished 4 episodes"),
])
def test_bad_resume_requests_are_refused(runs: Path, args: list[str],
                                         expected: str) -> None:
    args = [a.format(whole=runs / "whole") for a in args]
    before = (runs / "whole" / "steps.csv").read_bytes()
    done = refused(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert (runs / "whole" / "steps.csv").read_bytes() == before


def session_processes(session: int) -> list[str]:
    """Commands of the processes still running in a session (Linux /proc);
    a zombie (exited, its parent yet to collect it) runs nothing."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] not in ("Z", "X"):  # session id, state
            alive.append(command.replace(b"\0", b" ").decode() or f"[{stat.parent.name}]")
    return alive


def processes_left(session: int, patience: float = 20.0) -> list[str]:
    """``session_processes`` once they are gone or ``patience`` seconds have
    passed (a loaded machine takes a moment to end them)."""
    deadline = time.monotonic() + patience
    while (alive := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_ends_cleanly_and_resume_completes_it(
        runs: Path, tmp_path: Path, signal_number: int) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or
    SIGTERM (to sim.py alone) during episode 1: the run ends within seconds
    rather than a reply timeout, with no traceback, every finished episode
    kept, the --resume command printed and no process left; the resumed run
    then equals one that was never interrupted."""
    process = start_sim(tmp_path, "stopped", lambda steps: any(r[0] == "1" for r in steps),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = tmp_path / "stopped"
    if signal_number == signal.SIGINT:
        os.killpg(process.pid, signal_number)
    else:
        process.send_signal(signal_number)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=120)
    waited = time.monotonic() - sent
    assert process.returncode == 130, stderr
    assert waited < 60, f"took {waited:.0f} s to stop"  # the reply timeout is 600 s
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert f"python sim.py --resume {folder}" in stderr
    assert processes_left(process.pid) == []  # Ray and every worker are gone
    with (folder / "episodes.csv").open() as handle:
        assert [r["episode"] for r in csv.DictReader(handle)][:1] == ["0"]
    done = sim("--resume", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_steps(folder, runs / "whole")


def test_a_second_ctrl_c_ends_at_once_with_every_process(tmp_path: Path) -> None:
    """Two Ctrl-Cs in a row: the run exits without waiting for the step, and
    Ray's processes (started by sim.py) do not outlive it."""
    import psutil

    process = start_sim(tmp_path, "twice", bool, stderr=subprocess.PIPE)
    started = psutil.Process(process.pid).children(recursive=True)
    assert started, "sim.py started no processes"
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(started, timeout=10)  # killed; a loaded machine lags

    def running(child: psutil.Process) -> bool:
        try:
            return child.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert [child.pid for child in alive if running(child)] == []
