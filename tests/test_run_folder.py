"""A run folder is never harmed by a command not meant for it: --resume takes
only training runs, --overwrite replaces a run folder whole (never mixing two
runs) and leaves every other folder alone, and what the file system refuses
is one line with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sim_runner import Finished, refused

from hl_flower.runlog import RUN_FILE, RunFolderExists, create_run_folder, run_kind

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "policies" / "mnist5k-n10-improved"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_exit_2(done: Finished, expected: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert "Traceback" not in done.stderr


def test_resume_refuses_a_policy_folder_and_changes_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(SHIPPED, policy)
    before = snapshot(policy)
    one_line_exit_2(refused("--resume", str(policy)), "only training runs resume")
    assert snapshot(policy) == before


@pytest.mark.parametrize("kind", ["compare", "eval"])
def test_resume_refuses_compare_and_eval_folders(tmp_path: Path, kind: str) -> None:
    folder = create_run_folder(tmp_path / kind, overwrite=False, kind=kind)
    shutil.copy(SHIPPED / "config.json", folder / "config.json")
    (folder / "steps.csv").write_text("episode,step\n")  # compare trains HL here too
    before = snapshot(folder)
    one_line_exit_2(refused("--resume", str(folder)), f"a {kind} run")
    assert snapshot(folder) == before


def test_kinds_of_folders_written_before_run_json(tmp_path: Path) -> None:
    for name, files, kind in (("t", ["steps.csv"], "train"),
                              ("c", ["steps.csv", "compare_runs.csv"], "compare"),
                              ("e", ["eval_runs.csv"], "eval"),
                              ("p", ["config.json", "policy.json"], None)):
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("x\n")
        assert run_kind(tmp_path / name) == kind
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / RUN_FILE).write_text("[1, 2")
    assert run_kind(tmp_path / "bad") is None


def test_overwrite_replaces_a_run_folder_whole(tmp_path: Path) -> None:
    old = create_run_folder(tmp_path / "ow", overwrite=False)
    for name in ("steps.csv", "episodes.csv", "summary.json", "checkpoint-00003/memory.npz",
                 "best/policy.json"):
        (old / name).parent.mkdir(exist_ok=True)
        (old / name).write_text("old run\n")
    new = create_run_folder(tmp_path / "ow", overwrite=True, kind="compare")
    assert sorted(p.name for p in new.iterdir()) == [RUN_FILE]
    assert json.loads((new / RUN_FILE).read_text())["kind"] == "compare"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ow"]  # nothing left aside


def test_overwrite_leaves_other_folders_alone(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(SHIPPED, policy)
    before = snapshot(policy)
    with pytest.raises(RunFolderExists, match="not a run folder"):
        create_run_folder(policy, overwrite=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    with pytest.raises(RunFolderExists, match="not a run folder"):
        create_run_folder(mine, overwrite=True)
    assert snapshot(policy) == before and (mine / "notes.txt").read_text() == "mine\n"
    one_line_exit_2(refused("--out", str(tmp_path), "--name", "policy", "--overwrite"),
                    "not a run folder")
    assert snapshot(policy) == before


def test_a_file_where_the_folder_would_go_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file\n")
    one_line_exit_2(refused("--out", str(tmp_path), "--name", "taken"), "is a file")
    assert (tmp_path / "taken").read_text() == "a file\n"


def test_an_out_path_below_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file\n")
    one_line_exit_2(refused("--out", str(tmp_path / "plain" / "runs")),
                    "cannot write the run folder")


@pytest.mark.parametrize("name", ["../escape", "/elsewhere/run", "sub/run", ".", "..",
                                  "nul\0byte", "tab\tname"])
def test_a_name_that_is_not_one_folder_is_refused_and_nothing_is_written(
        tmp_path: Path, name: str) -> None:
    """A run writes only under --out: --name is one plain folder name."""
    out = tmp_path / "inside" / "runs"
    one_line_exit_2(refused("--out", str(out), "--name", name), "not a plain folder name")
    assert list(tmp_path.rglob("*")) == []  # neither --out nor anything beside it


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path: Path) -> None:
    one_line_exit_2(refused("--out", str(tmp_path), "--name", "n" * 300),
                    "File name too long")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_is_refused_before_tensorflow_loads(tmp_path: Path) -> None:
    """--out is tried (a probe folder, removed) before the slow checks."""
    (tmp_path / "plain").write_text("a file\n")
    probe = ("import sys, sim\n"
             "code = sim.main(['--out', sys.argv[1]])\n"
             "print(code, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "plain" / "runs")],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert done.stderr.startswith("error: cannot write the run folder under ")
    assert str(tmp_path / "plain" / "runs") in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
