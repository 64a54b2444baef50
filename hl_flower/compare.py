"""Run HL's greedy policy and every baseline on the same nodes and seeds.

For each method and each evaluation seed one episode is played from the
same seeded initial model, on the same partitions, local epoch, test set,
goal, step cap and distance matrix. Everything runs through one Flower grid
(one simulation or one deployment), so all methods are measured the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from strategies import (
    FLOWER_STRATEGIES,
    HOP_BASELINES,
    EpisodeResult,
    FlowerBaseline,
    NodeFailure,
    StepResult,
)
from strategies.episodes import EpisodeCallback, EpisodeLoop, StepCallback

from .best_policy import Validation, policy_folder
from .config import HLConfig
from .distance import distance_matrix
from .dqn import DQNAgent
from .evaluator import TestSetEvaluator, model_factory
from .methods import HL_GREEDY
from .plots import plot_comparison
from .report import write_report
from .runlog import logging_into
from .server_app import greedy_policy, run_hl, start_run_folder
from .tensorboard_curves import write_method_curves


@dataclass(frozen=True)
class MethodRun:
    """One method's episode on one evaluation seed."""

    method: str
    seed: int
    steps: int
    reached_goal: bool
    accuracy: float
    communication_cost: float  # NaN for Flower's strategies (no hops)
    bytes_sent: int
    model_transfers: int
    wall_time: float
    path: str
    starter: int | None = None  # node of step 1 (None: Flower's strategies)


@dataclass(frozen=True)
class CurvePoint:
    """The state after one step of one method's episode (for the plots)."""

    method: str
    seed: int
    step: int
    holders: str
    accuracy: float
    cumulative_cost: float
    cumulative_bytes: int


def evaluation_seeds(config: HLConfig, count: int) -> list[int]:
    """``count`` seeds after the training seed, so none was trained on."""
    return [config.seed + 1 + i for i in range(count)]


def method_strategy(method: str, config: HLConfig, agent: DQNAgent | None) -> EpisodeLoop:
    """The strategy that plays ``method`` with ``config``."""
    if method == HL_GREEDY:
        if agent is None:
            raise ValueError("HL-greedy needs a trained policy")
        return greedy_policy(config, agent)
    if method in FLOWER_STRATEGIES:
        return FlowerBaseline.from_config(config, method)
    return HOP_BASELINES[method].from_config(config, distance_matrix(config))


class CurveRecorder:
    """Turns one episode's steps into cumulative cost and bytes."""

    def __init__(self, method: str, seed: int) -> None:
        self.method, self.seed = method, seed
        self.points: list[CurvePoint] = []
        self.cost = 0.0
        self.bytes = 0

    def __call__(self, step: StepResult) -> None:
        """Add one step."""
        self.cost += step.hop_cost
        self.bytes += step.bytes_sent
        self.points.append(CurvePoint(self.method, self.seed, step.step,
                                      " ".join(map(str, step.holders)), step.accuracy,
                                      self.cost, self.bytes))


def run_comparison(grid: Grid, config: HLConfig, agent: DQNAgent | None,
                   methods: list[str], seeds: list[int],
                   on_run: Callable[[MethodRun], None] | None = None,
                   ) -> tuple[list[MethodRun], list[CurvePoint]]:
    """One episode per method and seed; returns the runs and their curves."""
    evaluate = TestSetEvaluator(config)
    runs: list[MethodRun] = []
    curves: list[CurvePoint] = []
    for method in methods:
        for seed in seeds:
            seeded = dataclasses.replace(config, seed=seed)
            strategy = method_strategy(method, seeded, agent)
            recorder = CurveRecorder(method, seed)
            (episode,) = strategy.start(grid, model_factory(seeded), evaluate,
                                        episodes=1, on_step=recorder)
            run = method_run(method, seed, episode)
            runs.append(run)
            curves.extend(recorder.points)
            if on_run:
                on_run(run)
    return runs, curves


def method_run(method: str, seed: int, episode: EpisodeResult) -> MethodRun:
    """The figures of one episode."""
    return MethodRun(method, seed, episode.steps, episode.reached_goal,
                     episode.accuracy, episode.communication_cost, episode.bytes_sent,
                     episode.model_transfers, episode.wall_time,
                     " ".join(map(str, episode.path)), episode.starter)


def describe_run(run: MethodRun) -> str:
    """One console line for a finished run."""
    cost = "   -  " if np.isnan(run.communication_cost) else f"{run.communication_cost:.3f}"
    return (f"{run.method:<16} seed {run.seed:<3} steps {run.steps:2d}  "
            f"acc {run.accuracy:.3f}  cost {cost}  {run.bytes_sent / 1e6:7.2f} MB  "
            f"{run.wall_time:5.1f} s")


@dataclass
class ComparePlan:
    """What ``sim.py compare`` / ``eval`` runs inside the ServerApp."""

    config: HLConfig
    folder: Path
    methods: list[str]
    seeds: list[int]
    stem: str = "compare"  # file names: compare.csv, compare.md, ...
    agent: DQNAgent | None = None  # a loaded policy; None = train HL first
    table: str = ""  # the Markdown table, once written
    stopped: str | None = None  # why the run stopped early, if it did


def make_compare_app(plan: ComparePlan, on_step: StepCallback | None = None,
                     on_episode: EpisodeCallback | None = None,
                     on_run: Callable[[MethodRun], None] | None = None,
                     on_validation: Callable[[Validation, bool], None] | None = None
                     ) -> ServerApp:
    """A ServerApp that (trains HL if needed, then) runs the comparison."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        with logging_into(plan.folder):
            try:
                compare(grid)
            except NodeFailure as failure:
                plan.stopped = str(failure)

    def compare(grid: Grid) -> None:
        cfg = plan.config
        if plan.agent is None and HL_GREEDY in plan.methods:
            plan.stopped = run_hl(grid, cfg, plan.folder, on_step, on_episode,
                                  on_validation=on_validation)["stopped"]
            if plan.stopped:
                return
            plan.agent = DQNAgent(cfg, seed=cfg.seed)
            plan.agent.load(policy_folder(plan.folder))
        else:
            start_run_folder(plan.folder, cfg)
        runs, curves = run_comparison(grid, cfg, plan.agent, plan.methods, plan.seeds,
                                      on_run)
        title = (f"{cfg.task or cfg.dataset}, {cfg.num_nodes} nodes, goal {cfg.goal}, "
                 f"seeds {', '.join(map(str, plan.seeds))}")
        plan.table = write_report(plan.folder, plan.stem, runs, curves, title)
        plot_comparison(runs, curves, cfg.goal, cfg.max_steps, plan.folder, plan.stem)
        if cfg.tensorboard:
            write_method_curves(plan.folder, runs, curves)

    return server_app
