"""Seconds to import Flower Datasets and to draw and record partitions.

    python benchmarks/partitions.py                 # N = 10, 100, 1000 on mnist-5k
    python benchmarks/partitions.py --nodes 1000 --dataset digits

Prints, in one process: the import of ``hl_flower.flower_partitions``
(``datasets`` and ``flwr_datasets``, paid only by a drawn ``--partition``)
once flwr and TensorFlow are loaded, as in ``sim.py`` when it draws,
then for each N and partition the first draw of every node's indices and
what a run folder adds before its first episode (``partitions.csv`` and
``partitions.png``, :func:`hl_flower.server_app.start_run_folder`, after
the draw as in ``sim.py``). ``reference`` gets what the scale benchmark
gives it (400 + 100 samples per node at N = 10, 4 + 36 at N = 1,000 on
mnist-5k). Each figure is one measurement; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hl_flower.quiet import quiet_environment  # noqa: E402

quiet_environment(verbose=False)

from hl_flower.config import HLConfig  # noqa: E402
from hl_flower.data import check_partitions  # noqa: E402

PARTITIONS = ("reference", "iid", "dirichlet:0.5", "pathological:2", "shard:2")


def seconds(action) -> float:
    """Wall seconds of ``action()``."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--dataset", default="mnist-5k")
    args = parser.parse_args()
    from hl_flower import server_app, task  # flwr and TensorFlow, as sim.py has them

    print(f"import flwr_datasets and datasets (after flwr and TensorFlow): "
          f"{seconds(lambda: __import__('hl_flower.flower_partitions')):.2f} s")
    dataset = task.training_set(HLConfig(dataset=args.dataset))  # as sim.py loads it
    print(f"\n{args.dataset}: {len(dataset.y_train)} training samples\n")
    print("| N | --partition | draw (s) | partitions.csv + .png (s) |")
    print("|---|---|---|---|")
    for nodes in args.nodes:
        main = min(400, len(dataset.y_train) // nodes)  # reference: 4 + 36 at 1,000
        for partition in PARTITIONS:
            config = HLConfig(dataset=args.dataset, num_nodes=nodes, partition=partition,
                              main_samples=main, other_samples=min(100, 9 * main))
            try:
                draw = seconds(lambda c=config: check_partitions(
                    dataset, c.num_nodes, c.main_samples, c.other_samples, c.partition))
            except ValueError as err:  # DataError: this N does not fit the set
                print(f"| {nodes} | {partition} | refused: {err} | |")
                continue
            with tempfile.TemporaryDirectory() as folder:
                record = seconds(lambda c=config, f=folder: server_app.start_run_folder(
                    Path(f), c))
            print(f"| {nodes} | {partition} | {draw:.2f} | {record:.2f} |", flush=True)


if __name__ == "__main__":
    main()
