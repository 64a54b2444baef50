"""``--tensorboard``: training curves as TensorBoard event files in
``<run>/tensorboard/`` (hl_flower.tensorboard_curves), read back here with
TensorFlow's own event reader."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hl_flower.best_policy import Validation
from hl_flower.compare import CurvePoint, MethodRun
from hl_flower.config import CONFIG_FILE, ConfigError, HLConfig, to_flat
from hl_flower.runlog import create_run_folder, write_json
from hl_flower.tensorboard_curves import (
    EPISODE_TAGS,
    TrainingCurves,
    event_files,
    read_scalars,
    tensorboard_folder,
    write_method_curves,
)
from strategies import EpisodeResult, StepResult

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--nodes", "4", "--main-samples", "60",
        "--other-samples", "60", "--episodes", "2", "--max-steps", "4"]
METHOD_FIGURES = ("steps", "reached_goal", "accuracy", "communication_cost", "bytes_sent",
                  "model_transfers", "wall_time")
VALIDATION_TAGS = {"validation/steps", "validation/accuracy",
                   "validation/communication_cost", "validation/reached_goal"}


def same_points(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """The same x, and the same values to float32 precision and the CSVs'
    6 decimals."""
    assert [x for x, _ in actual] == [x for x, _ in expected]
    assert [v for _, v in actual] == pytest.approx([v for _, v in expected],
                                                   rel=1e-6, abs=1e-6)


def step(episode: int, number: int, accuracy: float, done: bool = False) -> StepResult:
    return StepResult(episode, number, [number % 4], [] if done else [(number + 1) % 4],
                      accuracy, -1.0, 0.5, 1000, 2, False, 0.3, 0.1, 0.01, 0.02, 0.2, done)


def episode(number: int, steps: int, accuracy: float, loss: float | None) -> EpisodeResult:
    return EpisodeResult(number, steps, accuracy, 0.25 * steps, -2.0 * steps,
                         0.5 ** number, accuracy >= 0.8, 4000, loss, 1.5,
                         starter=(3 * number) % 4)


def play(curves: TrainingCurves, number: int, accuracies: list[float],
         loss: float | None) -> None:
    """Feed one fake episode as run_hl feeds the curves."""
    for i, accuracy in enumerate(accuracies, start=1):
        curves.on_step(step(number, i, accuracy, done=i == len(accuracies)))
    curves.on_episode(episode(number, len(accuracies), accuracies[-1], loss))


def test_fake_episodes_and_a_validation_read_back(tmp_path: Path) -> None:
    with TrainingCurves(tmp_path) as curves:
        play(curves, 0, [0.2, 0.5, 0.7], None)  # the DQN did not train yet: no loss
        play(curves, 1, [0.4, 0.9], 0.125)
        curves.on_validation(Validation(2, 3.5, 0.75, 1.25, 0.5, "0 1 | 0 2"))
        # a step the run stopped in (NaN accuracy) and its unfinished episode: no point
        curves.on_step(step(2, 1, math.nan))
    scalars = read_scalars(tensorboard_folder(tmp_path))
    assert set(scalars) == set(EPISODE_TAGS) | VALIDATION_TAGS | {"step/accuracy"}
    same_points(scalars["step/accuracy"], [(1, 0.2), (2, 0.5), (3, 0.7), (4, 0.4), (5, 0.9)])
    assert scalars["episode/steps"] == [(1, 3.0), (2, 2.0)]
    assert scalars["episode/return"] == [(1, -6.0), (2, -4.0)]
    assert scalars["episode/communication_cost"] == [(1, 0.75), (2, 0.5)]
    assert scalars["episode/epsilon"] == [(1, 1.0), (2, 0.5)]
    same_points(scalars["episode/accuracy"], [(1, 0.7), (2, 0.9)])
    assert scalars["episode/dqn_loss"] == [(2, 0.125)]
    assert scalars["episode/starter"] == [(1, 0.0), (2, 3.0)]
    assert scalars["validation/steps"] == [(2, 3.5)]
    assert scalars["validation/accuracy"] == [(2, 0.75)]
    assert scalars["validation/communication_cost"] == [(2, 1.25)]
    assert scalars["validation/reached_goal"] == [(2, 0.5)]


def test_the_scalars_carry_the_scalar_plugins_metadata(tmp_path: Path) -> None:
    import tensorflow as tf

    with TrainingCurves(tmp_path) as curves:
        play(curves, 0, [0.5], 0.1)
    (path,) = event_files(tensorboard_folder(tmp_path))
    values = [value for record in tf.data.TFRecordDataset(str(path))
              for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value]
    assert len(values) == 1 + len(EPISODE_TAGS)
    assert {value.metadata.plugin_data.plugin_name for value in values} == {"scalars"}


def resumed(tmp_path: Path, steps: list[StepResult], episodes: list[EpisodeResult],
            validations: list[Validation]) -> dict[str, list[tuple[int, float]]]:
    """Resume from these records, play one more episode, and read back."""
    with TrainingCurves(tmp_path, steps, episodes, validations) as curves:
        play(curves, len(episodes), [0.6], None)
    return read_scalars(tensorboard_folder(tmp_path))


def first_run_records() -> tuple[list[StepResult], list[EpisodeResult], list[Validation]]:
    steps = [step(0, 1, 0.3), step(0, 2, 0.8, done=True), step(1, 1, 0.85, done=True)]
    episodes = [episode(0, 2, 0.8, None), episode(1, 1, 0.85, 0.5)]
    return steps, episodes, [Validation(2, 1.0, 0.85, 0.0, 1.0, "0")]


def test_a_resumed_run_appends_and_numbers_on(tmp_path: Path) -> None:
    steps, episodes, validations = first_run_records()
    with TrainingCurves(tmp_path) as curves:
        for number in (0, 1):
            for result in steps:
                if result.episode == number:
                    curves.on_step(result)
            curves.on_episode(episodes[number])
        curves.on_validation(validations[0])
        curves.on_step(step(2, 1, 0.5))  # killed here: episode 2 never finished
    scalars = resumed(tmp_path, steps, episodes, validations)
    assert len(event_files(tensorboard_folder(tmp_path))) == 2  # appended, not replaced
    same_points(scalars["step/accuracy"], [(1, 0.3), (2, 0.8), (3, 0.85), (4, 0.6)])
    assert [x for x, _ in scalars["episode/steps"]] == [1, 2, 3]
    assert scalars["validation/steps"] == [(2, 1.0)]


def test_a_resume_writes_what_ran_without_the_curves(tmp_path: Path) -> None:
    scalars = resumed(tmp_path, *first_run_records())  # no event file before
    same_points(scalars["step/accuracy"], [(1, 0.3), (2, 0.8), (3, 0.85), (4, 0.6)])
    assert scalars["episode/dqn_loss"] == [(2, 0.5)]
    same_points(scalars["validation/accuracy"], [(2, 0.85)])


def test_points_the_csvs_no_longer_hold_are_written_anew(tmp_path: Path) -> None:
    steps, episodes, validations = first_run_records()
    resumed(tmp_path, steps, episodes, validations)  # 3 episodes in the event files
    # the run goes back to 1 episode done (its newest checkpoint was damaged)
    scalars = resumed(tmp_path, steps[:2], episodes[:1], [])
    assert len(event_files(tensorboard_folder(tmp_path))) == 1
    same_points(scalars["step/accuracy"], [(1, 0.3), (2, 0.8), (3, 0.6)])
    assert [x for x, _ in scalars["episode/steps"]] == [1, 2]
    assert "validation/steps" not in scalars


def test_an_event_file_cut_by_a_kill_reads_up_to_the_cut(tmp_path: Path) -> None:
    with TrainingCurves(tmp_path) as curves:
        play(curves, 0, [0.2, 0.5], None)
    (path,) = event_files(tensorboard_folder(tmp_path))
    path.write_bytes(path.read_bytes()[:-7])  # the last record torn
    scalars = read_scalars(tensorboard_folder(tmp_path))
    assert len(scalars["step/accuracy"]) == 2 and "episode/accuracy" in scalars
    assert "episode/starter" not in scalars  # the last point written (no loss yet)


def test_compare_writes_a_folder_per_method(tmp_path: Path) -> None:
    runs = [MethodRun("Standalone", seed, 2, True, 0.85, 0.0, 2000, 4, 1.0, "0 0", starter=0)
            for seed in (1, 2)]
    runs.append(MethodRun("FedAvg", 1, 1, False, 0.5, math.nan, 8000, 8, 2.0, ""))
    curves = [CurvePoint("Standalone", seed, step, "0", 0.4 * step + 0.05, 0.0, 1000 * step)
              for seed in (1, 2) for step in (1, 2)]
    curves.append(CurvePoint("FedAvg", 1, 1, "0 1 2 3", 0.5, math.nan, 8000))
    write_method_curves(tmp_path, runs, curves)
    folder = tensorboard_folder(tmp_path)
    assert event_files(folder) == []  # no training: nothing at the top
    standalone = read_scalars(folder / "Standalone")
    assert set(standalone) == {f"method/{name}" for name in (*METHOD_FIGURES, "starter")} | {
        f"seed_{seed}/{name}" for seed in (1, 2)
        for name in ("accuracy", "cumulative_cost", "cumulative_bytes")}
    assert standalone["method/steps"] == [(1, 2.0), (2, 2.0)]
    assert standalone["method/reached_goal"] == [(1, 1.0), (2, 1.0)]
    same_points(standalone["seed_2/accuracy"], [(1, 0.45), (2, 0.85)])
    assert standalone["seed_1/cumulative_bytes"] == [(1, 1000.0), (2, 2000.0)]
    fedavg = read_scalars(folder / "FedAvg")
    assert "method/communication_cost" not in fedavg  # NaN: no hops
    assert "method/starter" not in fedavg  # no holder: no starter
    assert "seed_1/cumulative_cost" not in fedavg
    assert fedavg["method/bytes_sent"] == [(1, 8000.0)]


def test_the_flag_alone_turns_it_on() -> None:
    from sim import build_parser, config_from_args

    for args, expected in (([], False), (["--tensorboard"], True),
                           (["--tensorboard", "false"], False),
                           (["--tensorboard", "true"], True)):
        assert config_from_args(build_parser().parse_args(args)).tensorboard is expected


def test_a_resume_may_turn_the_curves_on_and_nothing_else(tmp_path: Path) -> None:
    from sim import build_parser, config_from_args

    run = create_run_folder(tmp_path / "run", overwrite=False, kind="train")
    write_json(run / CONFIG_FILE, to_flat(HLConfig(dataset="digits", num_nodes=4)))
    resume = ["--resume", str(run), "--episodes", "20"]
    config = config_from_args(build_parser().parse_args([*resume, "--tensorboard"]))
    assert (config.tensorboard, config.episodes, config.num_nodes) == (True, 20, 4)
    with pytest.raises(ConfigError, match="drop --nodes .only --episodes and "
                                          "--tensorboard may change"):
        config_from_args(build_parser().parse_args([*resume, "--nodes", "5"]))


# --- a real run through sim.py ------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def sim(*args: str) -> None:
    """Run ``python sim.py *args``; it must succeed."""
    done = subprocess.run([sys.executable, "sim.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def run_sim(out: Path, name: str, *extra: str) -> Path:
    """Train on TINY into ``out/name`` and return the run folder."""
    sim(*TINY, "--out", str(out), "--name", name, *extra)
    return out / name


LEARNS = ["--validate-every", "1", "--validation-seeds", "1", "--replay-batch", "4",
          "--dqn-fit-batch", "2"]  # a validation after each episode; the DQN trains


def assert_curves_match_csvs(run: Path, episodes: int) -> None:
    """Every curve holds its CSV's figures, one point per row, and the run
    did ``episodes`` episodes (each followed by a validation)."""
    scalars = read_scalars(tensorboard_folder(run))
    steps, rows = read_csv(run / "steps.csv"), read_csv(run / "episodes.csv")
    assert len(rows) == episodes
    same_points(scalars["step/accuracy"],
                [(i, float(row["accuracy"])) for i, row in enumerate(steps, start=1)])
    for tag, column in EPISODE_TAGS.items():  # the DQN's loss where it trained
        same_points(scalars[tag], [(int(row["episode"]) + 1, float(row[column]))
                                   for row in rows if row[column]])
    assert scalars["episode/dqn_loss"]  # the DQN trained after an episode
    validations = read_csv(run / "validation.csv")
    assert len(validations) == episodes
    for tag in VALIDATION_TAGS:
        column = tag.removeprefix("validation/")
        same_points(scalars[tag], [(int(row["episodes_done"]), float(row[column]))
                                   for row in validations])


@pytest.mark.slow
def test_sim_writes_the_curves_of_its_csvs(tmp_path: Path) -> None:
    assert_curves_match_csvs(run_sim(tmp_path, "tb", "--tensorboard", *LEARNS), 2)


@pytest.mark.slow
def test_no_curves_without_the_flag_until_a_resume_turns_it_on(tmp_path: Path) -> None:
    run = run_sim(tmp_path, "plain", *LEARNS)
    assert (run / "episodes.csv").is_file()
    assert not tensorboard_folder(run).exists()
    sim("--resume", str(run), "--episodes", "3", "--tensorboard")
    assert_curves_match_csvs(run, 3)  # the 2 episodes before the resume too


@pytest.mark.slow
def test_sim_compare_writes_a_folder_per_method(tmp_path: Path) -> None:
    sim("compare", *TINY, "--methods", "Standalone,FedAvg", "--seeds", "2", "--tensorboard",
        "--out", str(tmp_path), "--name", "cmp")
    folder = tensorboard_folder(tmp_path / "cmp")
    assert sorted(p.name for p in folder.iterdir()) == ["FedAvg", "Standalone"]
    runs = read_csv(tmp_path / "cmp" / "compare_runs.csv")
    for method in ("FedAvg", "Standalone"):
        scalars = read_scalars(folder / method)
        same_points(scalars["method/steps"], [(int(r["seed"]), float(r["steps"]))
                                              for r in runs if r["method"] == method])
        assert {f"seed_{r['seed']}/accuracy" for r in runs} <= set(scalars)
