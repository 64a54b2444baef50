"""Which node is the best one to keep the model at? Standalone from every node.

    python benchmarks/standalone_nodes.py                       # mnist-5k, seeds 1-5
    python benchmarks/standalone_nodes.py --seed 100            # seeds 101-105
    python benchmarks/standalone_nodes.py --seeds 3 -- --dataset digits --goal 0.6

A policy that sends the model to one node and keeps it there can at best
match `Standalone` run from that node (minus nothing, plus the hops on the
way). This runs `sim.py compare --methods Standalone --starter j` for every
node j on the same evaluation seeds and prints one row per node: how often
it reached the goal, its steps and its final accuracy, then the best node
(fewest mean steps to the goal, then highest mean final accuracy): the
``--best-node`` of the BestNode baseline. Pick it on training seeds (the
default, seeds 1-5, which HL's training seeds 0-2 also play) and evaluate on
others. Extra arguments after ``--`` go to ``sim.py`` (dataset, partition,
goal...), but not those the script gives it (:data:`RESERVED`). A mistake
in them ends the script with sim.py's one-line error and exit code 2, before
the table. Nothing is asserted.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sim_flags import TEMPORARY_OUTPUT, refusal, run_sim  # noqa: E402
from deploy.cli import OneLineParser  # noqa: E402
from hl_flower.report import mean_std  # noqa: E402

HEADER = ("| node trained alone | reached goal | steps to goal | final accuracy |\n"
          "|---|---|---|---|")
# sim.py flags the script gives itself: after --, one would override it.
# flag: (its dest in sim.py's parser, what to do instead)
RESERVED: dict[str, tuple[str, str]] = {
    "--starter": ("hl_starter", "drop it: each node starts in turn"),
    "--methods": ("methods", "drop it: the script runs Standalone"),
    "--best-node": ("hl_best_node", "drop it: the script finds the best node"),
    "--seed": ("hl_seed", "give it before --"),
    "--seeds": ("seeds", "give it before --"),
    "--nodes": ("hl_num_nodes", "give it before --"),
} | TEMPORARY_OUTPUT


def standalone_runs(node: int, seed: int, seeds: int, extra: list[str],
                    out: str) -> list[dict[str, str]]:
    """The per-seed rows of Standalone trained at ``node``."""
    name = f"standalone-{node}"
    run_sim(["compare", "--methods", "Standalone", "--starter", str(node), "--seed",
             str(seed), "--seeds", str(seeds), "--out", out, "--name", name, *extra])
    with (Path(out) / name / "compare_runs.csv").open() as handle:
        return list(csv.DictReader(handle))


def main() -> int:
    parser = OneLineParser(prog="python benchmarks/standalone_nodes.py",
                           description=__doc__.split("\n\n")[0],
                           epilog="Runs `sim.py compare --methods Standalone --starter j` "
                                  "once per node j (a few minutes each on mnist-5k).")
    parser.add_argument("--seed", type=int, default=0,
                        help="the seeds played start after this one (default: 0, "
                             "so seeds 1-5: training seeds)")
    parser.add_argument("--seeds", type=int, default=5,
                        help="evaluation seeds per node (default: 5)")
    parser.add_argument("--nodes", type=int, default=10, help="nodes (default: 10)")
    parser.add_argument("extra", nargs="*",
                        help="more sim.py flags, after -- (not --starter, --methods, "
                             "--best-node, --seed, --seeds, --nodes, --out, --name)")
    args = parser.parse_args()
    if args.nodes < 2 or args.seeds < 1:
        parser.error("--nodes must be at least 2 and --seeds at least 1")
    refused = refusal(args.extra, RESERVED)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    extra = ["--nodes", str(args.nodes), *args.extra]
    ranks = {}
    with tempfile.TemporaryDirectory() as out:
        for node in range(args.nodes):
            rows = standalone_runs(node, args.seed, args.seeds, extra, out)
            if node == 0:  # sim.py took the flags: the table can start
                print(HEADER)
            reached = sum(r["reached_goal"] == "True" for r in rows) / len(rows)
            steps = mean_std([float(r["steps"]) for r in rows])
            accuracy = mean_std([float(r["accuracy"]) for r in rows])
            ranks[node] = (steps[0], -accuracy[0])
            print(f"| {node} | {reached:.0%} | {steps[0]:.1f} ± {steps[1]:.1f} | "
                  f"{accuracy[0]:.3f} ± {accuracy[1]:.3f} |", flush=True)
    best = min(ranks, key=ranks.__getitem__)
    seeds = f"{args.seed + 1}-{args.seed + args.seeds}" if args.seeds > 1 else args.seed + 1
    print(f"best node on seeds {seeds}: {best} "
          f"(use --best-node {best})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
