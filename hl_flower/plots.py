"""PNG plots of a run: the last episode's accuracy, and training curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from strategies import EpisodeResult, StepResult


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
