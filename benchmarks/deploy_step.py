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

``--cpu`` also prints, for each way, the CPU time (user + system, psutil)
its processes spent per step, by kind of process, between the end of step 5
and the end of step ``--steps`` - 5 (the start-up and the last steps left
out): a measure that drifts less than the wall time, and that shows where
a deployed step's extra work goes.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Self

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.cli import flower_executable  # noqa: E402
from deploy.local import CONNECTED, LocalFederation  # noqa: E402

START_TIMEOUT = 120.0  # seconds for the SuperLink and SuperNodes to come up
CPU_MARGIN = 5  # steps left out at each end of the --cpu window
# Kinds of process by a part of their command line, first match wins.
KINDS = (("clientapp_worker", "worker"), ("deploy.supernode", "SuperNode"),
         ("deploy.superlink", "SuperLink"), ("flower-supernode", "SuperNode"),
         ("flower-superlink", "SuperLink"), ("flwr-serverapp", "ServerApp"),
         ("flwr-clientapp", "ClientApp process"), ("flower-superexec", "SuperExec"),
         ("sim.py", "sim.py (ServerApp)"), ("ray::", "Ray actors (ClientApps)"))


def kind_of(process: psutil.Process) -> str:
    """What a process is, from its command line (``other`` when unknown)."""
    command = " ".join(process.cmdline())
    return next((kind for part, kind in KINDS if part in command), "other")


class Sampler:
    """Runs ``_sample`` in a daemon thread for the length of a ``with``
    block; ``_stop`` is set when the block ends."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pids: list[int]) -> dict[int, tuple[str, float]]:
    """Each live process's kind and CPU seconds so far (user + system)."""
    found = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            times = process.cpu_times()
            found[pid] = (kind_of(process), times.user + times.system)
        except psutil.Error:
            pass
    return found


def cpu_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
                ) -> dict[str, float]:
    """CPU seconds spent between two :func:`cpu_seconds`, by kind."""
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        if pid in before:
            spent[kind] = spent.get(kind, 0.0) + seconds - before[pid][1]
    return spent


class CpuWindow(Sampler):
    """CPU seconds per step of the processes ``pids()`` names, by kind,
    between two row counts of a ``steps.csv``; sampled in a thread."""

    def __init__(self, pids: Callable[[], list[int]], steps_csv: Path, first: int,
                 last: int) -> None:
        super().__init__()
        self.pids, self.steps_csv, self.first, self.last = pids, steps_csv, first, last
        self.per_step: dict[str, float] = {}

    def _rows(self) -> int:
        try:
            return max(0, len(self.steps_csv.read_text().splitlines()) - 1)
        except OSError:
            return 0


    def _wait_for(self, rows: int) -> bool:
        while self._rows() < rows:
            if self._stop.wait(0.01):
                return False
        return True

    def _sample(self) -> None:
        if not self._wait_for(self.first):
            return
        before = cpu_seconds(self.pids())
        if not self._wait_for(self.last):
            return
        spent = cpu_between(before, cpu_seconds(self.pids()))
        self.per_step = {kind: seconds / (self.last - self.first)
                         for kind, seconds in spent.items()}


def cpu_window(args: argparse.Namespace, pids: Callable[[], list[int]], run_dir: Path
               ) -> CpuWindow | contextlib.nullcontext:
    """The --cpu window over ``run_dir``'s steps, or nothing without --cpu."""
    if not args.cpu:
        return contextlib.nullcontext()
    return CpuWindow(pids, run_dir / "steps.csv", CPU_MARGIN, args.steps - CPU_MARGIN)


class PeakMemory(Sampler):
    """Samples the summed PSS of the processes ``pids()`` names, in a thread."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        super().__init__()
        self.pids = pids
        self.peak = 0

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


QUICK = {"episodes": 12, "epsilon-decay": 0.25, "replay-batch": 32}  # sim.py's quick preset


@dataclass
class Way:
    """One way's finished run: its folder, peak memory and command time."""

    run_dir: Path
    peak: int
    seconds: float
    cpu: dict[str, float] | None = None  # CPU seconds per step by kind (--cpu)

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

    with PeakMemory(family) as memory, cpu_window(args, family, folder / "simulated") as cpu:
        _, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the simulation failed:\n{errors[-2000:]}")
    return Way(folder / "simulated", memory.peak, time.perf_counter() - started,
               getattr(cpu, "per_step", None))


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
        with cpu_window(args, local.leftover_pids, run_dir) as cpu:
            run.wait_for_exit(args.timeout)
        seconds = time.perf_counter() - started
        if not (run_dir / "summary.json").exists():
            raise SystemExit(f"the {name} deployment did not finish:\n{run.tail(30)}")
    return Way(run_dir, memory.peak, seconds, getattr(cpu, "per_step", None))


def describe(name: str, way: Way) -> str:
    """One line: median and p90 step time, peak memory, wall times."""
    times = way.step_times()
    p90 = statistics.quantiles(times, n=10)[-1]
    line = (f"{name:<22} {len(times)} steps: median {statistics.median(times):.3f} s, "
            f"p90 {p90:.3f} s, peak memory {way.peak / 1e9:.2f} GB; episodes "
            f"{way.episodes_seconds():.1f} s, command {way.seconds:.1f} s")
    return line + (f"\n{'':<22} {describe_cpu(way.cpu)}" if way.cpu else "")


def describe_cpu(per_step: dict[str, float]) -> str:
    """CPU milliseconds per step by kind of process, largest first, and in all."""
    kinds = sorted(per_step.items(), key=lambda item: -item[1])
    return ("CPU per step: " + ", ".join(f"{kind} {1000 * seconds:.0f} ms"
                                         for kind, seconds in kinds if seconds >= 0.0005)
            + f"; all {1000 * sum(per_step.values()):.0f} ms")


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
    parser.add_argument("--cpu", action="store_true",
                        help="also print each way's CPU time per step by kind of process "
                             f"(steps {CPU_MARGIN} to --steps minus {CPU_MARGIN})")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the runs and logs in this new folder (default: "
                             "a temporary one, removed)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more")
    if args.cpu and (args.quick or args.steps < 3 * CPU_MARGIN):
        parser.error(f"--cpu needs one episode of at least {3 * CPU_MARGIN} --steps, "
                     "without --quick")
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
        cpu = mean_cpu(rounds) if args.cpu else {}
    if args.repeats > 1:
        print(f"pooled over {args.repeats} rounds:")
        for name, pooled in times.items():
            print(f"{name:<22} {len(pooled)} steps: median {statistics.median(pooled):.3f} s, "
                  f"p90 {statistics.quantiles(pooled, n=10)[-1]:.3f} s")
        print("deployed/simulated median step by round: "
              + ", ".join(f"{value:.2f}" for value in by_round))
        for name, per_step in cpu.items():
            print(f"{name:<22} mean {describe_cpu(per_step)}")
    median = {name: statistics.median(pooled) for name, pooled in times.items()}
    print(f"the runs' steps.csv agree apart from timings: {'yes' if same else 'NO'}")
    print(f"deployed/simulated median step = "
          f"{median['deployed, workers'] / median['simulated']:.2f}")
    if "deployed, stock Flower" in median:
        print(f"stock deployed/simulated median step = "
              f"{median['deployed, stock Flower'] / median['simulated']:.2f}")


def mean_cpu(rounds: list[dict[str, Way]]) -> dict[str, dict[str, float]]:
    """Each way's CPU seconds per step by kind, the mean over the rounds."""
    means = {}
    for name in rounds[0]:
        measured = [ways[name].cpu for ways in rounds if ways.get(name) and ways[name].cpu]
        kinds = {kind for per_step in measured for kind in per_step}
        means[name] = {kind: statistics.fmean(per_step.get(kind, 0.0) for per_step in measured)
                       for kind in kinds} if measured else {}
    return {name: per_step for name, per_step in means.items() if per_step}


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
