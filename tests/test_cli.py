"""sim.py refuses bad input with one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sim_runner import refused, started

from hl_flower.config import HLConfig
from hl_flower.idx import write_idx_folder
from hl_flower.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def sim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A real ``python sim.py`` process."""
    return subprocess.run([sys.executable, str(ROOT / "sim.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_random_idx_folder(folder: Path, train_labels: int) -> None:
    """A small MNIST-format folder: 60 train and 20 test 28x28 images."""
    rng = np.random.default_rng(0)
    write_idx_folder(folder, rng.integers(0, 256, (60, 28, 28)),
                     rng.integers(0, 10, train_labels), rng.integers(0, 256, (20, 28, 28)),
                     rng.integers(0, 10, 20))


def write_bad_files(folder: Path) -> dict[str, Path]:
    files = {"asymmetric": folder / "asym.csv", "nan": folder / "nan.csv",
             "words": folder / "words.csv", "size": folder / "size.npy",
             "empty": folder / "empty", "corrupt": folder / "corrupt"}
    files["empty"].mkdir()
    files["corrupt"].mkdir()
    (files["corrupt"] / "policy.json").write_text('{"num_nodes": 10, "hidden": [500, 200]}')
    (files["corrupt"] / "policy.weights.h5").write_bytes(b"not an HDF5 file")
    files["square"], files["negative"] = folder / "square.csv", folder / "negative.csv"
    np.savetxt(files["square"], np.zeros((10, 9)), delimiter=",")
    negative = np.zeros((10, 10))
    negative[1, 2] = negative[2, 1] = -0.5
    np.savetxt(files["negative"], negative, delimiter=",")
    for name, labels in (("idx_truncated", 60), ("idx_counts", 59)):
        files[name] = folder / name
        write_random_idx_folder(files[name], train_labels=labels)
    train_images = files["idx_truncated"] / "train-images-idx3-ubyte"
    train_images.write_bytes(train_images.read_bytes()[:-100])
    asym = np.ones((10, 10))
    asym[0, 1] = 5
    np.savetxt(files["asymmetric"], asym, delimiter=",")
    nan = np.zeros((10, 10))
    nan[2, 3] = nan[3, 2] = np.nan
    np.savetxt(files["nan"], nan, delimiter=",")
    files["words"].write_text("a,b\nc,d\n")
    np.save(files["size"], np.zeros((4, 4)))
    return files


@pytest.mark.parametrize(("args", "expected"), [
    (["--nodes", "1"], "--nodes"),
    (["--k", "11"], "--k"),
    (["--goal", "1.5"], "--goal"),
    (["--episodes", "0"], "--episodes"),
    (["--episodes", "-3"], "--episodes"),
    (["--max-steps", "0"], "--max-steps"),
    (["--k", "0"], "--k"),
    (["--goal", "0"], "--goal"),
    (["--max-failures", "0"], "--max-failures"),
    (["--starter", "10"], "--starter"),
    (["--dataset", "digitz"],  # the built-in task's data errors name --dataset alone
     "error: unknown --dataset 'digitz'; use one of: mnist-5k, digits, mnist, idx:<folder>"),
    (["--dataset", "idx:/nonexistent/folder"], "error: --dataset idx:/nonexistent/folder: "),
    (["--preset", "nope"], "--preset"),
    (["--partition", "random"], "--partition"),
    (["--actions", "relative"], "--actions relative needs --observation progress"),
    (["--double-dqn", "true"], "--double-dqn needs a target network"),
    (["--dqn-loss", "l2"], "--dqn-loss"),
    (["--double-dqn", "maybe"], "double-dqn"),
    (["--tensorboard=maybe"],
     "error: --tensorboard must be true or false (or yes/no, on/off, 1/0), got 'maybe'"),
    (["--nodes", "ten"], "--nodes (run-config key num-nodes) must be a whole number, got 'ten'"),
    (["--goal", "high"], "--goal must be a number, got 'high'"),
    (["--dataset", "digits"], "--main-samples"),
    (["compare", "--dataset", "digits", "--nodes", "4"],
     "(139 to 146 samples per class, 10 classes, --partition reference); use "
     "--main-samples 142 or less"),
    (["--dataset", "digits", "--nodes", "20", "--main-samples", "100", "--other-samples",
      "100"], "use --main-samples 69 or less, or at most 10 --nodes"),
    (["--dataset", "digits", "--nodes", "4", "--main-samples", "100", "--other-samples",
      "900", "--partition", "disjoint"], "use --other-samples "),
    (["--dataset", "idx:/nonexistent/folder"], "does not exist"),
    (["--distance-file", "/nonexistent.csv"], "does not exist"),
    (["--distance-file", "{asymmetric}"], "not symmetric"),
    (["--distance-file", "{nan}"], "NaN"),
    (["--distance-file", "{words}"], "not a numeric matrix"),
    (["--distance-file", "{size}"], "4 x 4"),
    (["--distance-file", "{square}"], "square"),
    (["--distance-file", "{negative}"], "negative"),
    (["--dataset", "idx:{idx_truncated}"], "truncated"),
    (["--dataset", "idx:{idx_counts}"], "counts must agree"),
    (["eval"], "--policy"),
    (["eval", "--policy", "/nonexistent/run"], "not a folder"),
    (["eval", "--policy", "{empty}"], "holds no policy"),
    (["eval", "--policy", "{corrupt}"], "corrupt"),
    (["eval", "--policy", "policies/mnist5k-n10-improved", "--pca-components", "5"],
     "reads observations of size 100; this run's are 50 (10 nodes x --pca-components 5); "
     "run it with --pca-components 10"),
    # the policy's config.json brings --best-node 5: the node count is the cause
    (["compare", "--policy", "policies/mnist5k-n10-random-starter", "--nodes", "4"],
     "error: the policy in policies/mnist5k-n10-random-starter was trained for 10 nodes "
     "and cannot run with --nodes 4; run it with --nodes 10, or give a policy trained "
     "for 4 nodes"),
    (["eval", "--policy", "policies/mnist5k-n10-improved", "--nodes", "20"],
     "trained for 10 nodes and cannot run with --nodes 20"),
    (["eval", "--policy", "policies/mnist5k-n10-improved", "--dqn-hidden-2", "64"],
     "has hidden sizes [500, 200]; run it with --dqn-hidden-1 500 --dqn-hidden-2 200"),
    (["eval", "--policy", "policies/mnist5k-n10-random-starter", "--observation",
      "reference"], "run it with --observation progress --actions absolute"),
    (["compare", "--seeds", "0"], "--seeds"),
    (["compare", "--methods", "RandomHop,Oracle"], "unknown method 'Oracle'"),
    (["compare", "--fedavg-fraction", "0"], "--fedavg-fraction"),
    (["compare", "--k", "0"], "--k"),
    (["--seed", "-1"], "--seed must be in 0..4294967295 (2**32 - 1), got -1"),
    (["--distance-seed", "5000000000"], "--distance-seed must be in 0..4294967295"),
    (["compare", "--seed", "4294967295", "--seeds", "2"],
     "error: --seed 4294967295 --seeds 2 would play seeds up to 4294967297, past "
     "4294967295 (2**32 - 1; the evaluation seeds are --seed + 1 .. --seed + --seeds); "
     "use --seed 4294967293 or less"),
    (["eval", "--policy", "policies/mnist5k-n10-improved", "--seed", "4294967291"],
     "--seed 4294967291 --seeds 5 would play seeds up to 4294967296"),
    (["--replay-batch", "64", "--replay-size", "32"],
     "--replay-batch 64 is more than --replay-size 32, so the DQN would never train"),
    (["--client-app", "hl_flower.drills"], "is not <module>:<attribute>"),
    (["--client-app", "no_such_module:app"], "cannot import no_such_module"),
    (["--client-app", "hl_flower.drills:MODES"], "is tuple, not a flwr ClientApp"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                          expected: str) -> None:
    files = write_bad_files(tmp_path)
    args = [a.format(**files) for a in args]
    done = refused(*args, "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and expected in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_words_and_switches_take_any_case_and_are_stored_in_lower_case() -> None:
    import sim

    args = sim.build_parser("compare").parse_args([
        "--preset", "Improved", "--starter", "RANDOM", "--truncation", "BOOTSTRAP",
        "--tensorboard=yes", "--double-dqn", "On", "--target-sync", "5",
        "--methods", "randomhop, FEDAVG,hl-Greedy"])
    config = sim.config_from_args(args)
    assert args.preset == "improved" and config.episodes == 40
    assert (config.starter, config.truncation) == ("random", "bootstrap")
    assert config.tensorboard is True and config.double_dqn is True
    assert sim.check_compare_args(args, "compare", config) == ["HL-greedy", "RandomHop",
                                                               "FedAvg"]


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_a_policy_brings_its_settings_but_not_how_its_run_logged(tmp_path: Path,
                                                                 command: str) -> None:
    import sim

    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "policies" / "mnist5k-n10-random-starter", policy)
    saved = json.loads((policy / "config.json").read_text())
    (policy / "config.json").write_text(json.dumps(saved | {"tensorboard": True}))

    def config(*flags: str) -> HLConfig:
        return sim.config_from_args(sim.build_parser(command).parse_args(
            ["--policy", str(policy), *flags]))

    assert config().tensorboard is False  # the command line's (the preset's)
    assert (config().best_node, config().starter) == (5, "random")  # the policy's
    assert config("--tensorboard").tensorboard is True


DIGITS = ["--dataset", "digits", "--nodes", "4", "--main-samples", "140",
          "--other-samples", "100"]


def test_a_path_average_that_barely_moves_is_run_with_one_warning(tmp_path: Path) -> None:
    done = started(*DIGITS, "--path-average", "0.9999999", "--out", str(tmp_path),
                   "--name", "slow")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: --path-average 0.9999999: the average's half-life is 6931471 steps "
        "(ln 0.5 / ln d) against at most 36 per episode, so it will barely follow the "
        "training; 0.5 to 0.9 halve in 1 to 7 steps"]
    quiet = started(*DIGITS, "--path-average", "0.999", "--out", str(tmp_path),
                    "--name", "usual")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_show_settings_prints_flags_that_give_the_same_settings_back(tmp_path: Path) -> None:
    import sim

    shown = refused("--preset", "random-starter", "--episodes", "3", "--task", "",
                    "--show-settings", "--out", str(tmp_path))
    assert shown.returncode == 0 and shown.stderr == ""
    lines = shown.stdout.splitlines()
    assert "--starter random" in lines and "--n-step 3" in lines and "--episodes 3" in lines
    assert "--double-dqn true" in lines and "--nodes 10" in lines
    flags = [word for line in lines for word in shlex.split(line)]
    again = sim.config_from_args(sim.build_parser().parse_args(["--preset", "paper", *flags]))
    assert again == sim.config_from_args(sim.build_parser().parse_args(
        ["--preset", "random-starter", "--episodes", "3"]))
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert refused("--goal", "2", "--show-settings").returncode == 2  # still checked


@pytest.mark.parametrize("bad", [("compare", "--methods", "Bogus"), ("compare", "--seeds", "0"),
                                 ("compare", "--seed", "4294967295"), ("--name", "a/b")])
def test_show_settings_refuses_what_the_run_would_refuse(tmp_path: Path,
                                                         bad: tuple[str, ...]) -> None:
    shown = refused(*bad, "--show-settings", "--out", str(tmp_path / "runs"))
    assert shown.returncode == 2 and shown.stdout == ""
    assert len(shown.stderr.splitlines()) == 1 and shown.stderr.startswith("error: ")
    assert not (tmp_path / "runs").exists()


def test_show_settings_words_split_at_spaces_give_the_same_settings(tmp_path: Path) -> None:
    """``python sim.py $(python sim.py --show-settings)``: the shell splits at
    white space and keeps quotes, so an empty text must not be ``''``."""
    import sim

    given = ["--distance-file=-d.csv"]  # argparse takes "-d.csv" alone for a flag
    shown = refused(*given, "--show-settings").stdout
    assert "--task=" in shown.splitlines() and "--distance-file=-d.csv" in shown.splitlines()
    again = sim.config_from_args(sim.build_parser().parse_args(shown.split()))
    assert again == sim.config_from_args(sim.build_parser().parse_args(given))
    flags = [word for line in shown.splitlines() for word in shlex.split(line)]
    assert refused(*flags, "--show-settings").stdout == shown


def test_a_run_whose_dqn_never_trained_says_so_at_the_end() -> None:
    import sim

    config = HLConfig(replay_batch=128)
    untrained = [SimpleNamespace(dqn_loss=None, steps=36)] * 2
    assert sim.untrained_note(untrained, config) == (
        "\nnote: the DQN never trained: its replay held fewer than --replay-batch 128 "
        "transitions (one per step), so the saved policy is the untrained network; "
        "train more --episodes (--resume continues) or give a smaller --replay-batch")
    trained_last = [*untrained, SimpleNamespace(dqn_loss=0.5, steps=20)]
    assert sim.untrained_note(trained_last, config) == ""
    assert sim.untrained_note([], config) == ""  # stopped before an episode ended


def test_too_few_steps_for_one_replay_batch_is_run_with_one_warning(tmp_path: Path) -> None:
    done = started(*DIGITS, "--episodes", "2", "--replay-batch", "100",
                   "--out", str(tmp_path))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "warning: 2 episodes of at most 36 steps store at most 72 transitions, fewer "
        "than --replay-batch 100, so the DQN will never train (it fits once its replay "
        "holds that many); give --episodes 3 or more (more if episodes reach the goal "
        "early), or --replay-batch 72 or less"]


@pytest.mark.parametrize("columns", ["60", "80", "120"])
def test_help_wraps_at_spaces_never_inside_a_word(monkeypatch: pytest.MonkeyPatch,
                                                  columns: str) -> None:
    import sim

    monkeypatch.setenv("COLUMNS", columns)
    for command in sim.COMMANDS:
        text = sim.build_parser(command).format_help()
        assert not re.search(r"\w-\n", text), command  # no --target-/sync, HL-/greedy
        if command == "compare":  # every method whole, however the list wraps
            assert set(METHODS) <= {word.strip(",;()") for word in text.split()}


def test_existing_run_folder_is_refused_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    (folder / "steps.csv").write_text("precious\n")
    done = refused("--out", str(tmp_path / "runs"), "--name", "mine")
    assert done.returncode == 2
    assert "--overwrite" in done.stderr
    assert (folder / "steps.csv").read_text() == "precious\n"


@pytest.mark.parametrize(("args", "expected"), [
    (["--episodes", "many"], "--episodes"),  # argparse-level: a type error
    (["--goal", "1.5"], "--goal must be in (0, 1]"),  # a setting out of range
    (["--dataset", "digits"], "use --main-samples 139 or less"),  # data-dependent
])
def test_a_real_process_refuses_with_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                          expected: str) -> None:
    """The same refusals as above, from a real ``python sim.py`` process: what
    reaches the terminal is one line and exit code 2 (no traceback, no start-up
    noise from TensorFlow or Ray)."""
    done = sim(*args, "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert done.stdout == "" and not (tmp_path / "runs").exists()


def test_a_mistyped_dataset_is_refused_before_tensorflow_loads(tmp_path: Path) -> None:
    probe = ("import sys, sim\n"
             "code = sim.main(['--dataset', 'digitz', '--out', sys.argv[1]])\n"
             "print(code, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert done.stderr.strip().startswith("error: unknown --dataset 'digitz'")
    assert not any(tmp_path.iterdir())
