"""What runs on the server: relay the model, evaluate it, train the DQN.

``app`` is the ServerApp that ``flwr run`` loads (settings from the run
config in ``pyproject.toml``); ``sim.py`` builds its own with
:func:`make_server_app` so it can show progress and choose the run folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from logging import INFO, WARNING
from pathlib import Path

from flwr.app import Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import RunNotRunningException

from strategies import (
    EpisodeResult,
    HomogeneousLearning,
    MeteredGrid,
    NodeFailure,
    StepResult,
    TravellingModel,
)

from . import (
    task,
    tf_setup,  # noqa: F401  (quiet TF before import)
)
from .best_policy import (
    BestPolicy,
    Validation,
    describe_validation,
    next_stop,
    validation_seeds,
)
from .checkpoint import load_latest, save_checkpoint
from .config import (
    CONFIG_FILE,
    SWITCH_FORMS,
    SWITCH_WORDS,
    ConfigError,
    HLConfig,
    from_flat,
    in_run_config_words,
    to_flat,
)
from .data import partition_class_counts
from .distance import distance_matrix
from .dqn import DQNAgent
from .evaluator import TestSetEvaluator, model_factory
from .flower_exit import first_on_flower_exit
from .inputs import INPUT_ERRORS, RunConfigError, check_inputs, quiet_input_errors
from .plots import plot_last_episode, plot_partitions, plot_training
from .prompt_delivery import tune_grid
from .runlog import (
    PARTITIONS_FILE,
    PARTITIONS_PLOT,
    RunFolderExists,
    RunRecorder,
    create_run_folder,
    logging_into,
    write_json,
    write_partition_table,
)
from .tensorboard_curves import TrainingCurves

# summary.json's "stopped" when Flower ended the ServerApp
ENDED_BY_FLOWER = "ended by Flower (flwr stop, or a signal to the ServerApp)"


def run_hl(grid: Grid, config: HLConfig, folder: Path,
           on_step: Callable[[StepResult], None] | None = None,
           on_episode: Callable[[EpisodeResult], None] | None = None,
           resume: bool = False,
           on_validation: Callable[[Validation, bool], None] | None = None) -> dict:
    """Train HL for ``config.episodes`` episodes, logging into ``folder``;
    with ``resume``, continue from the folder's last good checkpoint. With
    ``config.validate_every``, validate the greedy policy on the way and keep
    the best one (:mod:`hl_flower.best_policy`); ``on_validation`` sees each
    validation and whether it was the best so far."""
    with logging_into(folder):
        return _run_hl(grid, config, folder, on_step, on_episode, resume, on_validation)


def _run_hl(grid: Grid, config: HLConfig, folder: Path,
            on_step: Callable[[StepResult], None] | None,
            on_episode: Callable[[EpisodeResult], None] | None,
            resume: bool,
            on_validation: Callable[[Validation, bool], None] | None) -> dict:
    started = time.perf_counter()
    start_run_folder(folder, config)
    agent = DQNAgent(config, seed=config.seed)
    strategy = HomogeneousLearning.from_config(config, distance_matrix(config), agent=agent)
    recorder = RunRecorder(folder)
    first_episode = 0
    if resume:
        checkpoint, _ = load_latest(folder, agent)  # sim.py already showed warnings
        if checkpoint:
            first_episode = checkpoint.episodes_done
            strategy.policy_updates = checkpoint.policy_updates
            strategy.refresh_policy_version()  # the loaded weights, not the fresh ones
        recorder.resume(first_episode)
    best = BestPolicy(folder, config, first_episode)
    # The curves of the episodes and validations the run goes on from, then its own.
    curves = TrainingCurves(folder, recorder.steps, recorder.episodes,
                            best.history) if config.tensorboard else None

    def step_done(result: StepResult) -> None:
        recorder.on_step(result)
        if curves:
            curves.on_step(result)
        if on_step:
            on_step(result)

    def episode_done(result: EpisodeResult) -> None:
        recorder.on_episode(result)
        agent.save(folder)
        save_checkpoint(folder, agent, result.episode + 1, strategy.policy_updates)
        if curves:  # after the checkpoint: the curves never hold an episode a resume replays
            curves.on_episode(result)
        if on_episode:
            on_episode(result)

    def summary_of(stopped: str | None) -> dict:
        return recorder.summary() | {"wall_time": time.perf_counter() - started,
                                     "policy_updates": strategy.policy_updates,
                                     "resumed_from_episode": first_episode if resume else None,
                                     "stopped": stopped,
                                     "best_validation": (dataclasses.asdict(best.best)
                                                         if best.best else None)}

    ended_by_flower: list[bool] = []

    def write_ended_by_flower() -> None:  # the summary only, no plots: the process ends
        if not ended_by_flower:
            ended_by_flower.append(True)
            write_json(folder / "summary.json", summary_of(ENDED_BY_FLOWER))

    evaluate = TestSetEvaluator(config)
    new_model = model_factory(config)
    stopped = None
    done = first_episode
    try:
        with first_on_flower_exit(write_ended_by_flower):
            while True:
                if best.needs(done):
                    validation = validate_greedy(grid, config, agent, done, evaluate)
                    improved = best.record(validation, agent)
                    if curves:
                        curves.on_validation(validation)
                    if on_validation:
                        on_validation(validation, improved)
                if done >= config.episodes:
                    break
                stop = next_stop(config, done)
                strategy.start(grid, new_model, evaluate, episodes=stop - done,
                               on_step=step_done, on_episode=episode_done, first_episode=done)
                done = stop
    except NodeFailure as failure:  # logged so far stays; the summary says why
        stopped = str(failure)
    except (SystemExit, RunNotRunningException):
        # Flower ends a stopped ServerApp this way (and on SIGINT/SIGTERM),
        # usually after first_on_flower_exit has written the summary.
        write_ended_by_flower()
        raise
    finally:
        if curves:
            curves.close()
    summary = summary_of(stopped)
    write_json(folder / "summary.json", summary)
    plot_last_episode(recorder.steps, config.goal, folder / "last_episode_accuracy.png")
    plot_training(recorder.episodes, folder / "training.png")
    return summary


def start_run_folder(folder: Path, config: HLConfig) -> None:
    """What a run folder holds before its first episode: ``config.json`` and,
    unless the task has its own ``load_partition`` (whose data only the
    nodes load), ``partitions.csv`` with its plot ``partitions.png``.

    The counts come from the task's training set, which this process loads
    once (``sim.py`` has already loaded and checked it; a drawn partition is
    drawn once per process). Raises TaskError or DataError, as the nodes
    would, when the training set cannot be loaded or partitioned.
    """
    write_json(folder / CONFIG_FILE, to_flat(config))
    if task.has_own_partitions(config):
        return
    counts = partition_class_counts(task.training_set(config), config.num_nodes,
                                    config.main_samples, config.other_samples,
                                    config.partition, config.partition_seed)
    write_partition_table(folder / PARTITIONS_FILE, counts)
    plot_partitions(counts, f"--partition {config.partition}: {config.num_nodes} nodes, "
                    f"{int(counts.sum())} samples", folder / PARTITIONS_PLOT)


def greedy_policy(config: HLConfig, agent: DQNAgent) -> HomogeneousLearning:
    """HL playing ``agent``'s policy as it is: epsilon 0, nothing learned."""
    return HomogeneousLearning.from_config(config, distance_matrix(config), agent=agent,
                                           learn=False, epsilon=0.0)


def validate_greedy(grid: Grid, config: HLConfig, agent: DQNAgent, episodes_done: int,
                    evaluate: TestSetEvaluator) -> Validation:
    """Play the agent's greedy policy once on every validation seed."""
    results: list[EpisodeResult] = []
    for seed in validation_seeds(config):
        seeded = dataclasses.replace(config, seed=seed)
        results.extend(greedy_policy(seeded, agent).start(
            grid, model_factory(seeded), evaluate, episodes=1))
    return Validation.of(episodes_done, results)


def make_server_app(config: HLConfig, folder: Path,
                    on_step: Callable[[StepResult], None] | None = None,
                    on_episode: Callable[[EpisodeResult], None] | None = None,
                    summary: dict | None = None, resume: bool = False,
                    on_validation: Callable[[Validation, bool], None] | None = None
                    ) -> ServerApp:
    """A ServerApp bound to these settings and run folder (used by sim.py);
    the run's summary lands in ``summary``."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        result = run_hl(grid, config, folder, on_step, on_episode, resume, on_validation)
        if summary is not None:
            summary.update(result)

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``flwr run`` entry point: settings from the run config; one log line
    per episode (shown by ``flwr run --stream``). Everything ``sim.py``
    checks is checked before the run folder is made; a mistake ends the run
    with one line (RunConfigError)."""
    config, folder = checked_run(dict(context.run_config),
                                 before_writing=lambda config: check_nodes(grid, config))

    def log_episode(result: EpisodeResult) -> None:
        log(INFO, "episode %d/%d: %d steps, accuracy %.3f, cost %.3f, %d failures",
            result.episode + 1, config.episodes, result.steps, result.accuracy,
            result.communication_cost, result.failures)

    summary = run_hl(grid, config, folder, on_episode=log_episode,
                     on_validation=lambda v, best: log(INFO, describe_validation(v, best)))
    if summary["stopped"]:  # Flower keeps the message as the run's status details
        raise NodeFailure(in_run_config_words(summary["stopped"]))


def checked_run(settings: dict, before_writing: Callable[[HLConfig], None] | None = None
                ) -> tuple[HLConfig, Path]:
    """The settings and the new run folder of a ``flwr run``, from its run
    config (HL's settings plus ``run-dir`` and ``overwrite``). Raises
    RunConfigError, with nothing written, for a mistake ``sim.py`` would
    refuse, in run-config words. ``before_writing(config)`` runs after the
    checks and before the folder is made; what it raises ends the run with
    nothing written (a NodeFailure reworded in run-config words too: Flower
    keeps its message as the run's status details, ``flwr ls``)."""
    quiet_input_errors()
    run_dir = str(settings.pop("run-dir", "") or
                  f"runs/flwr-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        overwrite = _overwrite(settings.pop("overwrite", False))
        config = from_flat(settings).validate()
        for advice in check_inputs(config):
            log(WARNING, "%s", in_run_config_words(advice))
        if before_writing:
            before_writing(config)
        folder = create_run_folder(Path(run_dir), overwrite=overwrite, kind="train")
    except RunFolderExists as err:
        raise RunConfigError(f"{err}".replace(
            "pick another --name or pass --overwrite",
            "give another run-dir, or overwrite=true in --run-config")) from None
    except INPUT_ERRORS as err:
        raise RunConfigError(in_run_config_words(str(err))) from None
    except NodeFailure as failure:  # from before_writing: Flower keeps it (flwr ls)
        raise NodeFailure(in_run_config_words(str(failure))) from None
    return config, folder


def check_nodes(grid: Grid, config: HLConfig) -> None:
    """Wait until one node serves each of the run's partitions (at most the
    strategies' connect grace, 30 s); NodeFailure naming what is missing and
    the fix otherwise. ``flwr run`` asks before its run folder exists, so a
    run that cannot start leaves nothing that would block its retry."""
    tune_grid(grid)
    TravellingModel.from_config(config, distance_matrix(config)).discover_nodes(
        MeteredGrid.wrap(grid))


def _overwrite(value: object) -> bool:
    """The run config's ``overwrite``: true or false (ConfigError otherwise)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in SWITCH_WORDS:
        return SWITCH_WORDS[value.strip().lower()]
    raise ConfigError(f"overwrite must be {SWITCH_FORMS}, got {value!r}")
