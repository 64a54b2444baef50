"""PNG plots of a run: the nodes' partitions, the last episode's accuracy,
and training curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from strategies import EpisodeResult, StepResult

    from .compare import CurvePoint, MethodRun


LEGEND_CLASSES = 20  # more classes than this: colours without a legend


def plot_partitions(counts: np.ndarray, title: str, path: Path) -> None:
    """Samples per node, one stacked bar per node, a colour per class.

    ``counts`` has shape (N, C): row n holds node n's samples of each class
    (``partitions.csv``). Each class is one filled step outline over all
    nodes (not N patches), so 1,000 nodes draw as fast as 10.
    """
    nodes, classes = counts.shape
    many = classes > LEGEND_CLASSES
    colours = plt.get_cmap("viridis" if many else "tab10" if classes <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.3 * nodes)), 4))
    edges = np.arange(nodes + 1) - 0.5
    top = np.cumsum(counts, axis=1)
    for label in range(classes):
        ax.stairs(top[:, label], edges, baseline=top[:, label] - counts[:, label],
                  fill=True, label=str(label),
                  color=colours(label / (classes - 1) if many else label))
    if nodes <= 40:
        ax.set_xticks(range(nodes))
        ax.vlines(edges[1:-1], 0, top[:, -1].max(), color="white", linewidth=2)
    ax.set(xlabel="node", ylabel="training samples", title=title, xlim=(edges[0], edges[-1]))
    if not many:
        ax.legend(title="class", fontsize=7, title_fontsize=8, ncols=1 + classes // 11,
                  loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_last_episode(steps: list[StepResult], goal: float, path: Path) -> None:
    """Test accuracy after each step of the last episode."""
    if not steps:
        return
    last = [s for s in steps if s.episode == steps[-1].episode]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s.step for s in last], [s.accuracy for s in last], marker="o")
    ax.axhline(goal, color="grey", linestyle="--", label=f"goal {goal:.2f}")
    ax.set(xlabel="step", ylabel="test accuracy",
           title=f"Episode {last[0].episode}: accuracy per step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training(episodes: list[EpisodeResult], path: Path) -> None:
    """Steps to the goal and communication cost per training episode."""
    if not episodes:
        return
    numbers = [e.episode for e in episodes]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    top.plot(numbers, [e.steps for e in episodes], marker=".")
    top.set(ylabel="steps", title="Steps and communication cost per episode")
    bottom.plot(numbers, [e.communication_cost for e in episodes], marker=".",
                color="tab:orange")
    bottom.set(xlabel="episode", ylabel="communication cost")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_against(curves: list[CurvePoint], x: str, xlabel: str, goal: float,
                          path: Path, scale: float = 1.0) -> None:
    """Test accuracy against a cumulative figure, one colour per method.

    Each seed's episode is one line; methods whose figure is undefined (NaN,
    e.g. FedAvg's distance cost) are left out and named in the title.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    skipped = []
    for index, method in enumerate(dict.fromkeys(p.method for p in curves)):
        mine = [p for p in curves if p.method == method]
        if all(math.isnan(getattr(p, x)) for p in mine):
            skipped.append(method)
            continue
        colour = f"C{index % 10}"
        for n, seed in enumerate(dict.fromkeys(p.seed for p in mine)):
            points = [p for p in mine if p.seed == seed]
            ax.plot([getattr(p, x) * scale for p in points],
                    [p.accuracy for p in points], color=colour, alpha=0.7,
                    linewidth=1.2, label=method if n == 0 else None)
    ax.axhline(goal, color="grey", linestyle="--", linewidth=1)
    title = f"Test accuracy against {xlabel}"
    if skipped:
        title += f"\n(not shown, undefined: {', '.join(skipped)})"
    ax.set(xlabel=xlabel, ylabel="test accuracy", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_steps_per_method(runs: list[MethodRun], max_steps: int, path: Path) -> None:
    """Steps to the goal per method: mean bar, one dot per seed."""
    methods = list(dict.fromkeys(r.method for r in runs))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(methods)), 4))
    for index, method in enumerate(methods):
        steps = [r.steps for r in runs if r.method == method]
        ax.bar(index, sum(steps) / len(steps), color=f"C{index % 10}", alpha=0.6)
        ax.scatter([index] * len(steps), steps, color="black", s=12, zorder=3)
    ax.axhline(max_steps, color="grey", linestyle="--", linewidth=1,
               label=f"step cap {max_steps}")
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set(ylabel="steps (rounds) to the goal", title="Steps to the goal per method")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(runs: list[MethodRun], curves: list[CurvePoint], goal: float,
                    max_steps: int, folder: Path, stem: str) -> None:
    """The comparison's three PNGs."""
    plot_accuracy_against(curves, "cumulative_cost", "communication cost", goal,
                          folder / f"{stem}_accuracy_vs_cost.png")
    plot_accuracy_against(curves, "cumulative_bytes", "MB on the wire", goal,
                          folder / f"{stem}_accuracy_vs_bytes.png", scale=1e-6)
    plot_steps_per_method(runs, max_steps, folder / f"{stem}_steps.png")
