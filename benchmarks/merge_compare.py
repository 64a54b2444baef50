"""One table from several `sim.py compare` / `sim.py eval` folders.

    python benchmarks/merge_compare.py runs/baselines runs/eval-ref-s0:HL-reference-s0 \\
        runs/eval-improved-s0:HL-improved-s0 --title "mnist-5k, reference partition"

Each argument is a folder holding ``compare_runs.csv`` or ``eval_runs.csv``,
optionally followed by ``:LABEL``, the name its HL-greedy rows get (so several
policies can share a table; labels start with "HL"). Prints the Markdown
table and the per-seed ratios of every HL policy against RandomHop and
Standalone (paired by seed).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment  # noqa: E402

quiet_environment(verbose=False)
import_tensorflow_quietly()

from hl_flower.compare import MethodRun  # noqa: E402
from hl_flower.methods import HL_GREEDY  # noqa: E402
from hl_flower.report import (  # noqa: E402
    BASELINE,
    BEST_RULE,
    markdown_table,
    mean_std,
    paired_ratios,
    report_csv,
)


def read_runs(spec: str) -> list[MethodRun]:
    """The runs of one folder, HL-greedy renamed to the label if one is given."""
    folder, _, label = spec.partition(":")
    with report_csv(Path(folder), "runs").open() as handle:
        rows = list(csv.DictReader(handle))
    return [MethodRun(label if label and r["method"] == HL_GREEDY else r["method"],
                      int(r["seed"]), int(r["steps"]), r["reached_goal"] == "True",
                      float(r["accuracy"]), float(r["communication_cost"]),
                      int(r["bytes_sent"]), int(r["model_transfers"]),
                      float(r["wall_time"]), r["path"]) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--title", default="Comparison")
    args = parser.parse_args()
    try:
        runs = [run for spec in args.folders for run in read_runs(spec)]
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown_table(runs, args.title)
    print(table.split("\nPaper ratios")[0].split("\nSteps of")[0].rstrip())
    print(ratio_table(runs))
    return 0


def ratio_table(runs: list[MethodRun]) -> str:
    """Per HL policy, its per-seed ratios to RandomHop and Standalone (a
    note instead when a folder with both baselines is missing)."""
    if not {BASELINE, BEST_RULE} <= {r.method for r in runs}:
        return (f"\nNo ratios: add a folder with {BASELINE} and {BEST_RULE} runs on "
                "the same seeds.")
    lines = ["", f"| policy | steps / {BASELINE} | cost / {BASELINE} | "
             f"steps / {BEST_RULE} |", "|---|---|---|---|"]
    for label in dict.fromkeys(r.method for r in runs if r.method.startswith("HL")):
        cells = []
        for column, baseline in (("steps", BASELINE), ("communication_cost", BASELINE),
                                 ("steps", BEST_RULE)):
            mean, std = mean_std(paired_ratios(runs, column, label, baseline))
            cells.append(f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("\nRatios are per evaluation seed (paired), then mean ± std. The "
                 "paper reports 0.492 (steps) and 0.254 (cost) against random.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
