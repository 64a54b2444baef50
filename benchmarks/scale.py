"""Step time and peak memory of HL with 10, 100 and 1,000 virtual nodes.

    python benchmarks/scale.py                  # N = 10, 100, 1000
    python benchmarks/scale.py --nodes 10 100 --steps 10

Each N is one real ``sim.py`` run (its own Ray and Flower), on ``mnist-5k``
with the same small partitions for every N so only N changes: 1,000 nodes
x 40 samples is what the 4,000 training images of mnist-5k allow with the
reference slicing (4 samples of the node's class, 36 of the others; the
full ``mnist`` set would need a download). One episode of ``--steps`` steps
(the goal is out of reach). Peak memory is the largest sum of the
proportional set size (PSS) of ``sim.py`` and every process it started (Ray,
the client actor), sampled every 0.2 s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_memory(process: psutil.Process) -> int:
    """Bytes of a process and all its descendants: proportional set size
    (shared libraries split between the processes mapping them), where the
    system reports it, else resident size."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return total


def run(nodes: int, steps: int, out: Path) -> dict:
    """One sim.py run with ``nodes`` nodes; its summary and peak memory."""
    name = f"n{nodes}"
    command = [sys.executable, "sim.py", "--nodes", str(nodes), "--main-samples", "4",
               "--other-samples", "36", "--episodes", "1", "--max-steps", str(steps),
               "--goal", "0.99", "--out", str(out), "--name", name]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_memory(watched))
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"N={nodes} failed: {process.stderr.read()[-2000:]}")
    summary = json.loads((out / name / "summary.json").read_text())
    return {"nodes": nodes, "peak_gb": peak / 1e9, "wall": time.perf_counter() - started,
            "step": summary["median_step_seconds"]}


def main() -> None:
    """Run every N and print the table and the N = max / N = min ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for nodes in args.nodes:
            rows.append(run(nodes, args.steps, Path(folder)))
            print(f"N={nodes} done", file=sys.stderr, flush=True)
    print(f"mnist-5k, 40 samples per node, 1 episode x {args.steps} steps; median "
          "seconds per step\n")
    print("| N | step | local epoch | evaluation | observation + choice | rest "
          "| peak memory (GB) | whole run (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        step = row["step"]
        print(f"| {row['nodes']} | {step['step']:.3f} | {step['train']:.3f} | "
              f"{step['evaluate']:.3f} | {step['observe_and_choose']:.3f} | "
              f"{step['rest']:.3f} | {row['peak_gb']:.2f} | {row['wall']:.0f} |")
    first, last = rows[0], rows[-1]
    print(f"\nstep time N={last['nodes']} / N={first['nodes']}: "
          f"{last['step']['step'] / first['step']['step']:.2f}")


if __name__ == "__main__":
    main()
