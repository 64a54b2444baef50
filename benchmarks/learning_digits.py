"""Does a short training with the ``improved`` preset learn on digits?

    python benchmarks/learning_digits.py            # 3 evaluation seeds
    python benchmarks/learning_digits.py --seeds 5 --episodes 40
    python benchmarks/learning_digits.py -- --n-step 1     # extra sim.py flags

Trains HL with the ``improved`` preset on ``digits`` (10 nodes, 60 samples of
the node's class and 60 of the others, goal 0.6), then runs its greedy
policy, RandomHop and Standalone on evaluation seeds it was not trained on
(one ``sim.py compare`` run). It prints the figures and whether HL beat
random by the margins below, which a random next-node policy fails by
definition (its ratios to itself are 1):

- mean steps to the goal at most 0.8x RandomHop's, and
- mean communication cost per step at most 0.5x RandomHop's.

It takes a few minutes and prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["--dataset", "digits", "--nodes", "10", "--main-samples", "60",
          "--other-samples", "60", "--goal", "0.6"]
STEPS_MARGIN, COST_MARGIN = 0.8, 0.5


def per_method(rows: list[dict[str, str]], column: str) -> dict[str, float]:
    """Mean of ``column`` per method."""
    methods = dict.fromkeys(r["method"] for r in rows)
    return {m: statistics.fmean(float(r[column]) for r in rows if r["method"] == m)
            for m in methods}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("extra", nargs="*", help="more sim.py flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, "sim.py", "compare", "--preset", "improved", *DIGITS,
             "--episodes", str(args.episodes), "--seeds", str(args.seeds),
             "--seed", str(args.seed), *args.extra,
             "--methods", "HL-greedy,RandomHop,Standalone", "--out", out,
             "--name", "digits"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return done.returncode
        with (Path(out) / "digits" / "compare_runs.csv").open() as handle:
            rows = list(csv.DictReader(handle))
    print(done.stdout[done.stdout.index("## "):].split("\nMean ±")[0])
    steps = per_method(rows, "steps")
    cost_per_step = {m: per_method(rows, "communication_cost")[m] / steps[m]
                     for m in steps}
    steps_ratio = steps["HL-greedy"] / steps["RandomHop"]
    cost_ratio = cost_per_step["HL-greedy"] / cost_per_step["RandomHop"]
    verdict = steps_ratio <= STEPS_MARGIN and cost_ratio <= COST_MARGIN
    print(f"HL-greedy / RandomHop: steps {steps_ratio:.3f} (need <= {STEPS_MARGIN}), "
          f"cost per step {cost_ratio:.3f} (need <= {COST_MARGIN}); "
          f"{'better than random' if verdict else 'NOT better than random'} by these "
          f"margins; Standalone needed {steps['Standalone']:.1f} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
