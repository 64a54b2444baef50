"""What runs on the server: relay the model, evaluate it, train the DQN.

``app`` is the ServerApp that ``flwr run`` loads (settings from the run
config in ``pyproject.toml``); ``sim.py`` builds its own with
:func:`make_server_app` so it can show progress and choose the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from logging import INFO
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from strategies import EpisodeResult, HomogeneousLearning, NodeFailure, StepResult

from . import tf_setup  # noqa: F401  (quiet TF before import)
from .checkpoint import load_latest, save_checkpoint
from .config import CONFIG_FILE, HLConfig, from_flat, to_flat
from .data import load_test_set, one_hot
from .distance import distance_matrix
from .dqn import DQNAgent
from .model import fresh_weights, shared_trainer
from .plots import plot_last_episode, plot_training
from .runlog import RunRecorder, create_run_folder, write_json

EVALUATION_BATCH = 1000  # accuracy does not depend on it; larger is faster


class TestSetEvaluator:
    """Accuracy of a model on the global test set (one Keras model, reused)."""

    __test__ = False  # a name pytest would otherwise try to collect

    def __init__(self, config: HLConfig) -> None:
        dataset = load_test_set(config.dataset)
        self.trainer = shared_trainer(dataset.input_shape, dataset.num_classes,
                                      config.learning_rate)
        self.x = dataset.x_test
        self.y = one_hot(dataset.y_test, dataset.num_classes)

    def __call__(self, arrays: ArrayRecord) -> float:
        """Test accuracy of ``arrays``."""
        self.trainer.model.set_weights(arrays.to_numpy_ndarrays())
        return self.trainer.accuracy(self.x, self.y, EVALUATION_BATCH)


def model_factory(config: HLConfig) -> Callable[[int], ArrayRecord]:
    """Fresh seeded initial model for each episode."""
    dataset = load_test_set(config.dataset)
    model = shared_trainer(dataset.input_shape, dataset.num_classes,
                           config.learning_rate).model  # the evaluator's model

    def new_model(episode: int) -> ArrayRecord:
        seed = int(np.random.SeedSequence([config.seed, episode, 0]).generate_state(1)[0])
        return ArrayRecord(fresh_weights(model, seed))

    return new_model


def run_hl(grid: Grid, config: HLConfig, folder: Path,
           on_step: Callable[[StepResult], None] | None = None,
           on_episode: Callable[[EpisodeResult], None] | None = None,
           resume: bool = False) -> dict:
    """Train HL for ``config.episodes`` episodes, logging into ``folder``;
    with ``resume``, continue from the folder's last good checkpoint."""
    started = time.perf_counter()
    write_json(folder / CONFIG_FILE, to_flat(config))
    agent = DQNAgent(config, seed=config.seed)
    strategy = HomogeneousLearning(config, agent, distance_matrix(config))
    recorder = RunRecorder(folder)
    first_episode = 0
    if resume:
        checkpoint, _ = load_latest(folder, agent)  # sim.py already showed warnings
        if checkpoint:
            first_episode = checkpoint.episodes_done
            strategy.policy_updates = checkpoint.policy_updates
        recorder.resume(first_episode)

    def step_done(result: StepResult) -> None:
        recorder.on_step(result)
        if on_step:
            on_step(result)

    def episode_done(result: EpisodeResult) -> None:
        recorder.on_episode(result)
        agent.save(folder)
        save_checkpoint(folder, agent, result.episode + 1, strategy.policy_updates)
        if on_episode:
            on_episode(result)

    stopped = None
    try:
        strategy.start(grid, model_factory(config), TestSetEvaluator(config),
                       episodes=config.episodes - first_episode, on_step=step_done,
                       on_episode=episode_done, first_episode=first_episode)
    except NodeFailure as failure:  # logged so far stays; the summary says why
        stopped = str(failure)
    summary = recorder.summary() | {"wall_time": time.perf_counter() - started,
                                    "policy_updates": strategy.policy_updates,
                                    "resumed_from_episode": first_episode if resume else None,
                                    "stopped": stopped}
    write_json(folder / "summary.json", summary)
    plot_last_episode(recorder.steps, config.goal, folder / "last_episode_accuracy.png")
    plot_training(recorder.episodes, folder / "training.png")
    return summary


def make_server_app(config: HLConfig, folder: Path,
                    on_step: Callable[[StepResult], None] | None = None,
                    on_episode: Callable[[EpisodeResult], None] | None = None,
                    summary: dict | None = None, resume: bool = False) -> ServerApp:
    """A ServerApp bound to these settings and run folder (used by sim.py);
    the run's summary lands in ``summary``."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        result = run_hl(grid, config, folder, on_step, on_episode, resume)
        if summary is not None:
            summary.update(result)

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``flwr run`` entry point: settings from the run config; one log line
    per episode (shown by ``flwr run --stream``)."""
    settings = dict(context.run_config)
    run_dir = str(settings.pop("run-dir", "") or
                  f"runs/flwr-{time.strftime('%Y%m%d-%H%M%S')}")
    config = from_flat(settings).validate()

    def log_episode(result: EpisodeResult) -> None:
        log(INFO, "episode %d/%d: %d steps, accuracy %.3f, cost %.3f, %d failures",
            result.episode + 1, config.episodes, result.steps, result.accuracy,
            result.communication_cost, result.failures)

    summary = run_hl(grid, config, create_run_folder(Path(run_dir), overwrite=False),
                     on_episode=log_episode)
    if summary["stopped"]:
        raise NodeFailure(summary["stopped"])
