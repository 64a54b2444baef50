"""One HL episode three ways: simulated, deployed with workers, deployed stock.

    python benchmarks/deploy_step.py                 # mnist-5k, 10 nodes, 20 steps
    python benchmarks/deploy_step.py --steps 30 --skip-stock
    python benchmarks/deploy_step.py --steps 40 --repeats 3 --skip-stock   # pooled rounds
    python benchmarks/deploy_step.py --quick --skip-stock   # the whole quick preset

The same settings run (one episode of ``--steps`` steps; the goal, 0.99, is
out of reach, so every run takes all of them):

1. in simulation (``sim.py``: Flower's Simulation Engine, Ray);
2. on a local deployment as ``deploy.local`` starts it: a SuperLink and one
   SuperNode per node on 127.0.0.1, each SuperNode with short waits and a
   long-lived ClientApp worker (``deploy.superlink``, ``deploy.supernode``,
   ``deploy.clientapp_worker``), then ``flwr run``;
3. the same with Flower's own processes (``flower-superlink``,
   ``flower-supernode``: a fresh ClientApp process per message), for
   reference.

``--quick`` plays the ``quick`` preset instead (``python sim.py``'s: 12
episodes, goal 0.8) and also prints each way's wall time: the episodes' (sum
of ``episodes.csv``'s ``wall_time``) and the whole command's, start-up
included (for a deployment: from ``flwr run`` to its end, with the SuperLink
and SuperNodes already up).

Every way must make the same choices: the script says whether the runs'
``steps.csv`` agree in everything but the timings.

A step's time is the ServerApp's own measure in ``steps.csv`` (``time_step``:
sending the model, the node's epoch and choice, the reply, the evaluation),
so the three are measured the same way. Peak memory is the largest sum of
the proportional set size of every process of the way (the simulation and
Ray; the SuperLink, SuperNodes, workers, ServerApp and ``flwr run``),
sampled every 0.5 s. Runs one way at a time. Prints figures, ends with
``deployed/simulated median step = X``; asserts nothing.

The machine's speed can drift by a third within minutes (a 2-core virtual
machine), and the ways run one after the other: ``--repeats N`` alternates
the simulated and deployed ways N times, prints each round's ratio, and
takes the medians over all rounds' steps (stock Flower plays once).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.cli import flower_executable  # noqa: E402
from deploy.local import CONNECTED, LocalFederation  # noqa: E402

START_TIMEOUT = 120.0  # seconds for the SuperLink and SuperNodes to come up


class PeakMemory:
    """Samples the summed PSS of the processes ``pids()`` names, in a thread."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            total = 0
            for pid in self.pids():
                try:
                    info = psutil.Process(pid).memory_full_info()
                    total += getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


QUICK = {"episodes": 12, "epsilon-decay": 0.25, "replay-batch": 32}  # sim.py's quick preset


@dataclass
class Way:
    """One way's finished run: its folder, peak memory and command time."""

    run_dir: Path
    peak: int
    seconds: float

    def rows(self, name: str) -> list[dict[str, str]]:
        with (self.run_dir / name).open() as handle:
            return list(csv.DictReader(handle))

    def step_times(self) -> list[float]:
        return [float(row["time_step"]) for row in self.rows("steps.csv")]

    def episodes_seconds(self) -> float:
        return sum(float(row["wall_time"]) for row in self.rows("episodes.csv"))

    def choices(self) -> list[dict[str, str]]:
        """steps.csv without the timings (what must not depend on the way)."""
        return [{key: value for key, value in row.items() if not key.startswith("time")}
                for row in self.rows("steps.csv")]


def settings(args: argparse.Namespace) -> dict[str, object]:
    """The run's settings, as run-config keys (quoted for ``--run-config``)."""
    common = {"dataset": f"'{args.dataset}'", "num-nodes": args.nodes, "seed": args.seed}
    if args.quick:
        return common | QUICK
    return common | {"episodes": 1, "max-steps": args.steps, "goal": 0.99}


def simulated(args: argparse.Namespace, folder: Path) -> Way:
    """The run in simulation."""
    flags = []
    for key, value in settings(args).items():
        flag = {"num-nodes": "nodes"}.get(key, key)
        flags += [f"--{flag}", str(value).strip("'")]
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "sim.py", *flags, "--out", str(folder),
                                "--name", "simulated"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def family() -> list[int]:
        try:
            root = psutil.Process(process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []

    started = time.perf_counter()
    with PeakMemory(family) as memory:
        _, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the simulation failed:\n{errors[-2000:]}")
    return Way(folder / "simulated", memory.peak, time.perf_counter() - started)


def deployed(args: argparse.Namespace, folder: Path, stock: bool) -> Way:
    """The run on a local deployment."""
    name = "stock" if stock else "workers"
    run_dir = folder / name / "run"
    with LocalFederation(folder / name, stock=stock) as local, PeakMemory(
            local.leftover_pids) as memory:
        local.start_superlink(START_TIMEOUT)
        nodes = [local.start_supernode(i, args.nodes) for i in range(args.nodes)]
        for node in nodes:
            node.wait_for_log(CONNECTED, START_TIMEOUT)
        cli_home = folder / name / "cli"
        local.connection(cli_home)
        config = settings(args) | {"run-dir": f"'{run_dir}'"}
        started = time.perf_counter()
        run = local.start("flwr-run", [
            flower_executable("flwr"), "run", str(ROOT), "--stream", "--run-config",
            " ".join(f"{key}={value}" for key, value in config.items())], cli_home)
        run.wait_for_exit(args.timeout)
        seconds = time.perf_counter() - started
        if not (run_dir / "summary.json").exists():
            raise SystemExit(f"the {name} deployment did not finish:\n{run.tail(30)}")
    return Way(run_dir, memory.peak, seconds)


def describe(name: str, way: Way) -> str:
    """One line: median and p90 step time, peak memory, wall times."""
    times = way.step_times()
    p90 = statistics.quantiles(times, n=10)[-1]
    return (f"{name:<22} {len(times)} steps: median {statistics.median(times):.3f} s, "
            f"p90 {p90:.3f} s, peak memory {way.peak / 1e9:.2f} GB; episodes "
            f"{way.episodes_seconds():.1f} s, command {way.seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="play the quick preset (12 episodes, goal 0.8) instead of one "
                             "episode of --steps steps")
    parser.add_argument("--skip-stock", action="store_true",
                        help="leave out Flower's own processes (about 10 s a step)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one deployed run may take")
    parser.add_argument("--repeats", type=int, default=1,
                        help="play the simulated and deployed ways this many times, "
                             "alternating, and pool their steps (the machine's speed drifts "
                             "between runs; stock Flower plays once)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the runs and logs in this new folder (default: "
                             "a temporary one, removed)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more")
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep} exists; choose a new folder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        what = ("the quick preset (12 episodes)" if args.quick
                else f"1 episode x {args.steps} steps")
        print(f"{args.dataset}, {args.nodes} nodes, {what}, seed {args.seed}"
              + (f", {args.repeats} rounds" if args.repeats > 1 else ""), flush=True)
        rounds = [play_round(args, folder / f"round-{index + 1}" if args.repeats > 1
                             else folder, with_stock=not args.skip_stock and index == 0)
                  for index in range(args.repeats)]
        first = rounds[0]["simulated"]
        same = all(way.choices() == first.choices() for ways in rounds for way in ways.values())
        times = {name: [t for ways in rounds if name in ways for t in ways[name].step_times()]
                 for name in rounds[0]}
        by_round = [ratio(ways) for ways in rounds]  # before the run folders go
    if args.repeats > 1:
        print(f"pooled over {args.repeats} rounds:")
        for name, pooled in times.items():
            print(f"{name:<22} {len(pooled)} steps: median {statistics.median(pooled):.3f} s, "
                  f"p90 {statistics.quantiles(pooled, n=10)[-1]:.3f} s")
        print("deployed/simulated median step by round: "
              + ", ".join(f"{value:.2f}" for value in by_round))
    median = {name: statistics.median(pooled) for name, pooled in times.items()}
    print(f"the runs' steps.csv agree apart from timings: {'yes' if same else 'NO'}")
    print(f"deployed/simulated median step = "
          f"{median['deployed, workers'] / median['simulated']:.2f}")
    if "deployed, stock Flower" in median:
        print(f"stock deployed/simulated median step = "
              f"{median['deployed, stock Flower'] / median['simulated']:.2f}")


def ratio(ways: dict[str, Way]) -> float:
    """One round's deployed (workers) over simulated median step."""
    return (statistics.median(ways["deployed, workers"].step_times())
            / statistics.median(ways["simulated"].step_times()))


def play_round(args: argparse.Namespace, folder: Path, with_stock: bool) -> dict[str, Way]:
    """Each way once, one after the other, printing each way's line."""
    folder.mkdir(parents=True, exist_ok=True)
    ways = {"simulated": simulated(args, folder)}
    print(describe("simulated", ways["simulated"]), flush=True)
    ways["deployed, workers"] = deployed(args, folder, stock=False)
    print(describe("deployed, workers", ways["deployed, workers"]), flush=True)
    if with_stock:
        ways["deployed, stock Flower"] = deployed(args, folder, stock=True)
        print(describe("deployed, stock Flower", ways["deployed, stock Flower"]), flush=True)
    return ways

if __name__ == "__main__":
    main()
