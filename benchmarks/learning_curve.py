"""Learning curves of HL training runs: steps and cost per episode, smoothed.

    python benchmarks/learning_curve.py runs/ref-s0 runs/ref-s1 runs/ref-s2 \\
        --label reference --out docs/img/learning-reference.png

Each group of run folders (one ``--label`` per group, groups separated by
``--``) is drawn as the mean over its runs of a moving average of
``episodes.csv``, with the runs' spread shaded. Prints, per group, the mean
steps and cost of the first and last ``--window`` episodes and the training
wall time. Reads only CSV files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_episodes(folder: Path) -> dict[str, np.ndarray]:
    """Columns of a run's ``episodes.csv`` as arrays (steps, cost, wall time)."""
    path = folder / "episodes.csv"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist; pass HL training run folders")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {"steps": np.array([float(r["steps"]) for r in rows]),
            "cost": np.array([float(r["communication_cost"]) for r in rows]),
            "wall": np.array([float(r["wall_time"]) for r in rows])}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def split_groups(argv: list[str]) -> list[list[str]]:
    """Arguments split at ``--`` into one list per group."""
    groups, current = [], []
    for arg in argv:
        if arg == "--":
            groups.append(current)
            current = []
        else:
            current.append(arg)
    return [*groups, current]


def parse_group(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--window", type=int, default=10)
    return parser.parse_args(args)


def main(argv: list[str]) -> int:
    groups = [parse_group(group) for group in split_groups(argv)]
    out = next((g.out for g in groups if g.out), None)
    if out is None:
        raise SystemExit("error: pass --out <file>.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for group in groups:
        runs = [read_episodes(folder) for folder in group.runs]
        length = min(len(r["steps"]) for r in runs)
        for ax, column in zip(axes, ("steps", "cost"), strict=True):
            curves = np.array([smooth(r[column][:length], group.window) for r in runs])
            mean = curves.mean(axis=0)
            episodes = np.arange(1, length + 1)
            ax.plot(episodes, mean, label=f"{group.label} ({len(runs)} runs)")
            ax.fill_between(episodes, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
        first = np.mean([r["steps"][:group.window] for r in runs])
        last = np.mean([r["steps"][length - group.window:length] for r in runs])
        first_cost = np.mean([r["cost"][:group.window] for r in runs])
        last_cost = np.mean([r["cost"][length - group.window:length] for r in runs])
        minutes = np.mean([r["wall"][:length].sum() for r in runs]) / 60
        print(f"{group.label}: {len(runs)} runs x {length} episodes; steps "
              f"{first:.1f} (first {group.window}) -> {last:.1f} (last {group.window}); "
              f"cost {first_cost:.3f} -> {last_cost:.3f}; "
              f"{minutes:.1f} min of episodes per run")
    axes[0].set(xlabel="training episode", ylabel="steps to the goal (smoothed)")
    axes[1].set(xlabel="training episode", ylabel="communication cost (smoothed)")
    axes[0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
