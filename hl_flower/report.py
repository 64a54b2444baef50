"""The comparison's files: per-run and per-method CSVs and a Markdown table.

``<stem>_runs.csv`` has one row per method and seed, ``<stem>_steps.csv``
one row per step (for the curves), ``<stem>.csv`` one row per method with
mean and standard deviation, and ``<stem>.md`` the table a reader wants,
ending with the paper's two ratios (HL against RandomHop).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .methods import FLOWER_STRATEGIES, HL_GREEDY, HOP_RULES

if TYPE_CHECKING:
    from .compare import CurvePoint, MethodRun

REPORT_STEMS = ("compare", "eval")  # the stems sim.py compare and sim.py eval write
# (column, title, scale, decimals) of the figures summarised per method
FIGURES = [
    ("steps", "steps to goal", 1.0, 1),
    ("communication_cost", "communication cost", 1.0, 3),
    ("bytes_sent", "MB on the wire", 1e-6, 2),
    ("model_transfers", "model transfers", 1.0, 1),
    ("wall_time", "wall time (s)", 1.0, 1),
    ("accuracy", "final accuracy", 1.0, 3),
]
PAPER_RATIOS = {"steps": 1 - 0.508, "communication_cost": 1 - 0.746}
BASELINE = "RandomHop"
BEST_RULE = "Standalone"  # the best fixed rule on the reference partition


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[MethodRun]) -> list[dict[str, Any]]:
    """One row per method: runs, goal rate, and mean/std of every figure."""
    rows = []
    for method in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == method]
        row: dict[str, Any] = {"method": method, "runs": len(mine),
                               "reached_goal_rate": sum(r.reached_goal for r in mine)
                               / len(mine)}
        for column, _, _, _ in FIGURES:
            row[f"{column}_mean"], row[f"{column}_std"] = mean_std(
                [float(getattr(r, column)) for r in mine])
        rows.append(row)
    return rows


def paired_ratios(runs: list[MethodRun], column: str, method: str = HL_GREEDY,
                  baseline: str = BASELINE) -> list[float]:
    """Per seed: ``method``'s figure over ``baseline``'s (seeds both ran)."""
    ours = {r.seed: float(getattr(r, column)) for r in runs if r.method == method}
    theirs = {r.seed: float(getattr(r, column)) for r in runs if r.method == baseline}
    return [ours[s] / theirs[s] if theirs[s] else math.nan
            for s in sorted(ours.keys() & theirs.keys())]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (columns from the first row)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(runs: list[MethodRun], title: str) -> str:
    """The comparison table, its notes and the paper's ratios."""
    header = ["method", "runs", "reached goal", *(t for _, t, _, _ in FIGURES)]
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for row in summarise(runs):
        cells = [row["method"], str(row["runs"]), f"{row['reached_goal_rate']:.0%}"]
        for column, _, scale, decimals in FIGURES:
            mean, std = row[f"{column}_mean"], row[f"{column}_std"]
            cells.append("" if math.isnan(mean) else
                         f"{mean * scale:.{decimals}f} ± {std * scale:.{decimals}f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± standard deviation over the seeds. An episode that misses "
              "the goal counts the step cap as its steps."]
    lines += hopless_note(runs)
    lines += ratio_lines(runs)
    return "\n".join(lines) + "\n"


def hopless_note(runs: list[MethodRun]) -> list[str]:
    """Why the Flower strategies in ``runs`` have no communication cost."""
    names = [m for m in FLOWER_STRATEGIES if any(r.method == m for r in runs)]
    if not names:
        return []
    if len(names) == 1:
        subject, verb = f"{names[0]}'s communication cost is", "it has"
    else:
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        subject, verb = f"The communication cost of {listed} is", "they have"
    return [f"{subject} blank: {verb} no hops (the model goes from the server to "
            "every sampled node and back each round), so the distance matrix does "
            "not apply; compare bytes and transfers."]


def ratio_lines(runs: list[MethodRun], method: str = HL_GREEDY) -> list[str]:
    """The paper's ratios against RandomHop, and steps against the fixed
    rule with the fewest mean steps in ``runs``."""
    methods = {r.method for r in runs}
    lines: list[str] = []
    if {method, BASELINE} <= methods:
        lines += ["", f"Paper ratios ({method} / {BASELINE}, per seed, mean ± std; "
                  "the paper reports 0.492 for steps and 0.254 for cost):", ""]
        for column, label in (("steps", "steps"), ("communication_cost", "cost")):
            ratios = paired_ratios(runs, column, method)
            mean, std = mean_std(ratios)
            lines.append(f"- {label}: {mean:.3f} ± {std:.3f} over {_defined(ratios)} seeds "
                         f"(paper: {PAPER_RATIOS[column]:.3f})")
    rules = [rule for rule in HOP_RULES if rule in methods]
    if method in methods and rules:
        best = min(rules, key=lambda rule: mean_std(
            [r.steps for r in runs if r.method == rule])[0])
        ratios = paired_ratios(runs, "steps", method, best)
        mean, std = mean_std(ratios)
        lines += ["", f"Steps of {method} / {best} (of the fixed rules run, the fewest "
                  f"steps here): {mean:.3f} ± {std:.3f} over {_defined(ratios)} seeds"]
    return lines


def _defined(ratios: list[float]) -> int:
    """Seeds with a ratio (a baseline figure of 0 gives none)."""
    return sum(not math.isnan(r) for r in ratios)


def report_csv(folder: Path, table: str) -> Path:
    """``<stem>_<table>.csv`` of a folder written by ``sim.py compare`` or ``eval``.

    Raises :class:`FileNotFoundError` naming both file names when neither exists.
    """
    names = [f"{stem}_{table}.csv" for stem in REPORT_STEMS]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} holds no {' or '.join(names)}; give a folder "
                            "written by `sim.py compare` or `sim.py eval`")


def write_report(folder: Path, stem: str, runs: list[MethodRun],
                 curves: list[CurvePoint], title: str) -> str:
    """Write every comparison file; returns the Markdown table."""
    write_csv(folder / f"{stem}_runs.csv", [dataclasses.asdict(r) for r in runs])
    write_csv(folder / f"{stem}_steps.csv", [dataclasses.asdict(p) for p in curves])
    write_csv(folder / f"{stem}.csv", summarise(runs))
    table = markdown_table(runs, title)
    (folder / f"{stem}.md").write_text(table)
    return table
