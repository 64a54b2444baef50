"""Does a short HL training learn on digits (preset improved, or random-starter)?

    python benchmarks/learning_digits.py                     # training seed 0
    python benchmarks/learning_digits.py --training-seeds 3  # seeds 0, 1, 2; the mean decides
    python benchmarks/learning_digits.py --seeds 5 --episodes 40
    python benchmarks/learning_digits.py -- --validate-every 0   # extra sim.py flags
    python benchmarks/learning_digits.py --random-starter       # HL against Standalone
    python benchmarks/learning_digits.py --random-starter -- --partition dirichlet:0.3

For each training seed, trains HL with the ``improved`` preset on ``digits``
(10 nodes, 60 samples of the node's class and 60 of the others, goal 0.6),
then runs its greedy policy (the best validated one), RandomHop and
Standalone on evaluation seeds it was not trained on (one ``sim.py compare``
run). It prints the figures and whether HL beat random, on the mean over the
training seeds, by the margins below, which a random next-node policy fails
by definition (its ratios to itself are 1):

- mean steps to the goal at most 0.8x RandomHop's, and
- mean communication cost per step at most 0.5x RandomHop's.

With ``--random-starter`` it trains with the ``random-starter`` preset
instead: every episode (training, validation and the 10 evaluation seeds,
one per node) starts at a node drawn from the seed (``--starter random``),
validation runs on 10 seeds from 401 (one per node), and the verdict is
against Standalone, which keeps the model wherever the episode started:
HL's mean steps to the goal at most 0.9x Standalone's (its own ratio is 1
by definition; RandomHop's ratio is printed beside it).

Flags after ``--`` go to ``sim.py compare``, except those the script sets
itself (:data:`RESERVED`); a mistake in them ends the script with sim.py's
one-line error and exit code 2.

With ``--json`` the last line is the verdict as JSON (``tests/test_learning_digits.py``
reads it). Each training seed takes a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sim_flags import TEMPORARY_OUTPUT, refusal, run_sim  # noqa: E402
from deploy.cli import OneLineParser  # noqa: E402

DIGITS = ["--dataset", "digits", "--nodes", "10", "--main-samples", "60",
          "--other-samples", "60", "--goal", "0.6"]
STEPS_MARGIN, COST_MARGIN = 0.8, 0.5
STANDALONE_MARGIN = 0.9  # --random-starter: HL's steps over Standalone's
# sim.py flags the script gives itself: after --, one would override it.
# flag: (its dest in sim.py's parser, what to do instead)
RESERVED: dict[str, tuple[str, str]] = {
    "--seed": ("hl_seed", "use the script's --seed (the first training seed)"),
    "--seeds": ("seeds", "use the script's --seeds"),
    "--episodes": ("hl_episodes", "use the script's --episodes"),
    "--preset": ("preset", "drop it: --random-starter picks the preset"),
    "--methods": ("methods", "drop it: the script runs HL-greedy, RandomHop and Standalone"),
} | TEMPORARY_OUTPUT
STARTER = {"--starter": ("hl_starter", "drop it: --random-starter draws the starters")}


def per_method(rows: list[dict[str, str]], column: str) -> dict[str, float]:
    """Mean of ``column`` per method."""
    methods = dict.fromkeys(r["method"] for r in rows)
    return {m: statistics.fmean(float(r[column]) for r in rows if r["method"] == m)
            for m in methods}


def train_and_compare(seed: int, seeds: int, episodes: int, extra: list[str],
                      preset: str = "improved") -> tuple[str, dict[str, float]]:
    """Train on one seed and compare; the printed table and the ratios to RandomHop."""
    with tempfile.TemporaryDirectory() as out:
        done = run_sim(["compare", "--preset", preset, *DIGITS, "--episodes", str(episodes),
                        "--seeds", str(seeds), "--seed", str(seed), *extra, "--methods",
                        "HL-greedy,RandomHop,Standalone", "--out", out, "--name", "digits"])
        with (Path(out) / "digits" / "compare_runs.csv").open() as handle:
            rows = list(csv.DictReader(handle))
    steps = per_method(rows, "steps")
    cost = per_method(rows, "communication_cost")
    ratios = {"steps": steps["HL-greedy"] / steps["RandomHop"],
              "cost_per_step": (cost["HL-greedy"] / steps["HL-greedy"])
              / (cost["RandomHop"] / steps["RandomHop"]),
              "standalone_steps": steps["Standalone"],
              "steps_to_standalone": steps["HL-greedy"] / steps["Standalone"],
              "random_to_standalone": steps["RandomHop"] / steps["Standalone"]}
    return done.stdout[done.stdout.index("## "):].split("\nMean ±")[0], ratios


def main() -> int:
    parser = OneLineParser(prog="python benchmarks/learning_digits.py",
                           description=__doc__.split("\n\n")[0],
                           epilog="Each training seed takes 3 to 10 minutes on 2 cores.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="evaluation seeds after the training seed (default: 3; "
                             "at least 10 with --random-starter, one per node)")
    parser.add_argument("--episodes", type=int, default=40,
                        help="training episodes (default: 40)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first training seed (default: 0)")
    parser.add_argument("--training-seeds", type=int, default=1,
                        help="training seeds; the mean over them decides (default: 1)")
    parser.add_argument("--json", action="store_true", help="verdict as JSON, last line")
    parser.add_argument("--random-starter", action="store_true",
                        help="train with the random-starter preset (episodes start at a "
                             "node drawn per seed) and judge HL against Standalone")
    parser.add_argument("extra", nargs="*", help="more sim.py flags, after --")
    args = parser.parse_args()
    if min(args.seeds, args.episodes, args.training_seeds) < 1:
        parser.error("--seeds, --episodes and --training-seeds must be at least 1")
    refused = refusal(args.extra, RESERVED | (STARTER if args.random_starter else {}))
    if refused:
        print(refused, file=sys.stderr)
        return 2
    preset = "random-starter" if args.random_starter else "improved"
    if args.random_starter:
        args.seeds = max(args.seeds, 10)
    per_seed = []
    for seed in range(args.seed, args.seed + args.training_seeds):
        table, ratios = train_and_compare(seed, args.seeds, args.episodes, args.extra,
                                          preset)
        print(f"training seed {seed}\n{table}\nHL-greedy / RandomHop: steps "
              f"{ratios['steps']:.3f}, cost per step {ratios['cost_per_step']:.3f}; "
              f"Standalone needed {ratios['standalone_steps']:.1f} steps (HL-greedy / "
              f"Standalone: {ratios['steps_to_standalone']:.3f})\n", flush=True)
        per_seed.append(ratios)
    if args.random_starter:
        return random_starter_verdict(per_seed, args.json)
    steps = statistics.fmean(r["steps"] for r in per_seed)
    cost = statistics.fmean(r["cost_per_step"] for r in per_seed)
    verdict = steps <= STEPS_MARGIN and cost <= COST_MARGIN
    print(f"mean over {len(per_seed)} training seeds: steps {steps:.3f} (need <= "
          f"{STEPS_MARGIN}), cost per step {cost:.3f} (need <= {COST_MARGIN}); "
          f"{'better than random' if verdict else 'NOT better than random'} by these margins")
    if args.json:
        print(json.dumps({"steps_ratio": steps, "cost_per_step_ratio": cost,
                          "better_than_random": verdict, "per_seed": per_seed}))
    return 0


def random_starter_verdict(per_seed: list[dict[str, float]], as_json: bool) -> int:
    """Print whether HL beat Standalone from random starters, on the mean."""
    hl = statistics.fmean(r["steps_to_standalone"] for r in per_seed)
    random = statistics.fmean(r["random_to_standalone"] for r in per_seed)
    verdict = hl <= STANDALONE_MARGIN < random
    print(f"mean over {len(per_seed)} training seeds, steps over Standalone's: HL-greedy "
          f"{hl:.3f} (need <= {STANDALONE_MARGIN}), RandomHop {random:.3f}, Standalone "
          f"1; {'HL beat' if verdict else 'HL did NOT beat'} Standalone by this margin")
    if as_json:
        print(json.dumps({"steps_to_standalone": hl, "random_to_standalone": random,
                          "better_than_standalone": verdict, "per_seed": per_seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
