"""Which method does HL's reward prefer? Each method's return, from its runs.

    python benchmarks/rule_returns.py runs/<compare-run>
    python benchmarks/rule_returns.py runs/<compare-run> runs/<eval-run>:HL-improved
    python benchmarks/rule_returns.py runs/<compare-run> --reward gain --gain-weight 10

A DQN that maximised HL's reward perfectly would pick the policy with the
highest episode return (the undiscounted sum of the step rewards). This
replays the steps that `sim.py compare` or `sim.py eval` recorded (accuracy
and hop cost of every step) through the reward of the run's own settings, or
of `--reward`/`--gain-weight`/`--reward-base` given here, and prints each
method's mean return next to its steps, its mean accuracy over the steps and
its final accuracy. FedAvg has no hops, so no return. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl_flower.config import ConfigError, HLConfig, from_flat, saved_config  # noqa: E402
from hl_flower.report import mean_std, report_csv  # noqa: E402
from hl_flower.reward import configured_reward  # noqa: E402


def episode_return(config: HLConfig, steps: list[dict[str, str]]) -> float:
    """Sum of the step rewards of one recorded episode (steps in order)."""
    total, accuracy, cost = 0.0, 0.0, 0.0
    for row in steps:
        accuracy, previous = float(row["accuracy"]), accuracy
        hop, cost = float(row["cumulative_cost"]) - cost, float(row["cumulative_cost"])
        total += configured_reward(config, accuracy, previous, hop)
    return total


def method_rows(spec: str, overrides: dict[str, object]) -> dict[str, list[tuple]]:
    """Per method: (return, steps, mean accuracy, final accuracy) per seed."""
    folder_name, _, label = spec.partition(":")
    folder = Path(folder_name)
    config = from_flat(overrides, saved_config(folder)).validate()
    episodes: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    with report_csv(folder, "steps").open() as handle:
        for row in csv.DictReader(handle):
            episodes[(row["method"], row["seed"])].append(row)
    rows: dict[str, list[tuple]] = defaultdict(list)
    for (method, _), steps in episodes.items():
        steps.sort(key=lambda r: int(r["step"]))
        if not math.isfinite(float(steps[-1]["cumulative_cost"] or "nan")):
            continue  # FedAvg: no hops, no HL reward
        accuracies = [float(r["accuracy"]) for r in steps]
        name = label if label and method == "HL-greedy" else method
        rows[name].append((episode_return(config, steps), len(steps),
                           sum(accuracies) / len(accuracies), accuracies[-1]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="compare/eval run folders[:LABEL]")
    parser.add_argument("--reward", choices=("reference", "gain"))
    parser.add_argument("--gain-weight", type=float)
    parser.add_argument("--reward-base", type=float)
    args = parser.parse_args()
    overrides = {key: value for key, value in (
        ("reward", args.reward), ("gain-weight", args.gain_weight),
        ("reward-base", args.reward_base)) if value is not None}
    try:
        tables = [method_rows(spec, overrides) for spec in args.folders]
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("| method | episodes | return | steps | mean accuracy over the steps | final accuracy |")
    print("|---|---|---|---|---|---|")
    for table in tables:
        for method, runs in table.items():
            columns = [mean_std([run[i] for run in runs]) for i in range(4)]
            ret, steps, mean_accuracy, final = columns
            print(f"| {method} | {len(runs)} | {ret[0]:.2f} ± {ret[1]:.2f} | "
                  f"{steps[0]:.1f} ± {steps[1]:.1f} | {mean_accuracy[0]:.3f} ± "
                  f"{mean_accuracy[1]:.3f} | {final[0]:.3f} ± {final[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
