"""Run Homogeneous Learning on Flower's Simulation Engine.

    python sim.py                      # the quick preset (minutes on a CPU)
    python sim.py --preset paper       # every reference setting, 120 episodes
    python sim.py --dataset digits --nodes 4 --main-samples 100 --other-samples 25

Every setting of ``hl_flower.config.HLConfig`` is a flag (``--main-samples``);
results land in ``runs/<name>/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment, quiet_flower_logger

quiet_environment(verbose="--verbose" in sys.argv)

from hl_flower.config import FLAG_ALIASES, PRESETS, ConfigError, HLConfig, from_flat, preset  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see python sim.py --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """Flags for the run and one per HL setting."""
    parser = OneLineParser(description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="named settings to start from (default: quick)")
    parser.add_argument("--out", default="runs", help="parent of the run folder")
    parser.add_argument("--name", default="",
                        help="run folder name (default: preset, settings, time)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder of that name")
    parser.add_argument("--verbose", action="store_true",
                        help="show Flower, Ray and TensorFlow logs")
    parser.add_argument("--cpus-per-client", type=float, default=0,
                        help="Ray CPUs per virtual client (default: all, i.e. "
                             "one warm actor; HL trains one node at a time)")
    settings = parser.add_argument_group("HL settings (override the preset)")
    for field in fields(HLConfig):
        flag = FLAG_ALIASES.get(field.name, field.name).replace("_", "-")
        settings.add_argument(f"--{flag}", dest=f"hl_{field.name}", default=None,
                              metavar=type(field.default).__name__.upper(),
                              help=f"default {field.default!r}")
    return parser


def config_from_args(args: argparse.Namespace) -> HLConfig:
    """Preset, then every flag given, then validation."""
    overrides = {field.name.replace("_", "-"): getattr(args, f"hl_{field.name}")
                 for field in fields(HLConfig)
                 if getattr(args, f"hl_{field.name}") is not None}
    return from_flat(overrides, base=preset(args.preset)).validate()


def check_inputs(config: HLConfig) -> None:
    """Load the data and distances now, so bad input fails before any run."""
    from hl_flower.data import check_partitions, load_dataset
    from hl_flower.distance import distance_matrix

    dataset = load_dataset(config.dataset)
    check_partitions(dataset, config.num_nodes, config.main_samples,
                     config.other_samples, config.partition)
    distance_matrix(config)


def default_name(args: argparse.Namespace, config: HLConfig) -> str:
    """Run name from the preset, main settings and the time."""
    dataset = config.dataset.replace("idx:", "idx-").replace("/", "_")
    return (f"{args.preset}-{dataset}-n{config.num_nodes}-k{config.k}"
            f"-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(args: argparse.Namespace, config: HLConfig, folder: Path) -> dict:
    """Start the simulation with one virtual SuperNode per HL node."""
    if not args.verbose:
        import_tensorflow_quietly()
    from flwr.simulation import run_simulation

    from hl_flower.client_app import app as client_app
    from hl_flower.progress import ConsoleProgress
    from hl_flower.server_app import make_server_app

    quiet_flower_logger(args.verbose)
    cpus = os.cpu_count() or 1
    per_client = args.cpus_per_client or cpus
    backend_config = {
        "client_resources": {"num_cpus": per_client, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False,
                      "log_to_driver": args.verbose,
                      "logging_level": "INFO" if args.verbose else "ERROR"},
    }
    progress = ConsoleProgress(config)
    server_app = make_server_app(config, folder, progress.on_step,
                                 progress.on_episode)
    with progress:
        run_simulation(server_app=server_app, client_app=client_app,
                       num_supernodes=config.num_nodes,
                       backend_config=backend_config,
                       verbose_logging=args.verbose)
    return progress.summary_line()


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, run; user mistakes exit 2 with one line."""
    args = build_parser().parse_args(argv)
    from hl_flower.data import DataError
    from hl_flower.distance import DistanceError
    from hl_flower.runlog import RunFolderExists, create_run_folder

    try:
        config = config_from_args(args)
        check_inputs(config)
        folder = create_run_folder(
            Path(args.out) / (args.name or default_name(args, config)),
            args.overwrite)
    except (ConfigError, DataError, DistanceError, RunFolderExists) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"HL on {config.dataset}: {config.num_nodes} nodes, "
          f"{config.episodes} episodes, goal {config.goal}; writing {folder}")
    print(run(args, config, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
