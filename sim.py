"""Run Homogeneous Learning on Flower's Simulation Engine.

    python sim.py                      # train HL, quick preset (minutes on a CPU)
    python sim.py --preset paper       # every reference setting, 120 episodes
    python sim.py --dataset digits --nodes 4 --main-samples 100 --other-samples 25
    python sim.py compare              # train HL, then HL-greedy vs every baseline
    python sim.py compare --policy runs/<name>   # compare a trained policy
    python sim.py eval --policy runs/<name>      # HL-greedy alone over seeds

Commands: train (the default), compare, eval; `python sim.py compare --help`
shows compare's own flags (--methods, --seeds, --policy). Every setting of
``hl_flower.config.HLConfig`` is a flag (``--main-samples``); results land
in ``runs/<name>/``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
import time
from dataclasses import fields
from pathlib import Path

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment

quiet_environment(verbose="--verbose" in sys.argv)

from hl_flower.best_policy import BEST_FOLDER  # noqa: E402
from hl_flower.config import (  # noqa: E402
    CONFIG_FILE,
    MAX_SEED,
    PRESETS,
    ConfigError,
    HLConfig,
    flag_name,
    from_flat,
    policy_config,
    preset,
    saved_config,
)
from hl_flower.methods import (  # noqa: E402
    DEFAULT_METHODS,
    HL_GREEDY,
    METHODS,
    check_methods,
    default_methods,
)
from hl_flower.settings_help import SETTING_HELP  # noqa: E402

COMMANDS = ("train", "compare", "eval")
# What --resume lets change: how long the run goes on, and a run option
# that does not touch the results.
RESUME_MAY_CHANGE = "--episodes and --tensorboard"


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see python sim.py --help)", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help text wrapped at spaces only, never inside a word such as a flag
    (--target-sync) or a method (HL-greedy)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False,
                             break_on_hyphens=False)


def split_command(argv: list[str]) -> tuple[str, list[str]]:
    """The command (train when none is given) and the remaining arguments."""
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    return "train", argv


def build_parser(command: str = "train") -> argparse.ArgumentParser:
    """Flags for the run, the command, and one per HL setting."""
    parser = OneLineParser(prog=f"python sim.py {command}", description=__doc__,
                           formatter_class=HelpFormatter)
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS), type=str.lower,
                        help="named settings to start from (default: quick): quick "
                             "(12 episodes), paper (every reference setting), improved "
                             "(40 episodes, best validated policy kept), random-starter "
                             "(improved with episodes starting anywhere and the DQN "
                             "trained after every step)")
    parser.add_argument("--out", default="runs",
                        help="parent of the run folder (default: runs)")
    parser.add_argument("--name", default="",
                        help="run folder name (default: command, preset, settings, time)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder of that name")
    parser.add_argument("--show-settings", action="store_true",
                        help="print every HL setting this command line comes to (the "
                             "preset, a resumed or given run's settings, then your flags), "
                             "one flag per line, and exit without running or writing")
    parser.add_argument("--verbose", action="store_true",
                        help="show Flower, Ray and TensorFlow logs")
    parser.add_argument("--cpus-per-client", type=float, default=0,
                        help="Ray CPUs per virtual client (default: all, i.e. "
                             "one warm actor; HL trains one node at a time)")
    parser.add_argument("--client-app", default="hl_flower.client_app:app",
                        metavar="MODULE:ATTRIBUTE",
                        help="the nodes' Flower ClientApp (default: HL's; "
                             "hl_flower.drills:app misbehaves where HL_DRILL says)")
    parser.add_argument("--ray-address", default="",
                        help="run on an existing Ray cluster (e.g. 10.0.0.5:6379 "
                             "from `ray start --head`) instead of a local one")
    if command == "train":
        parser.add_argument("--resume", default="", metavar="RUN_FOLDER",
                            help="continue a stopped run from its last checkpoint "
                                 f"(its settings; only {RESUME_MAY_CHANGE} may change)")
    else:
        add_compare_flags(parser, command)
    settings = parser.add_argument_group(
        "HL settings (override the preset; defaults are the quick preset's, "
        "with the paper's value where it differs)")
    quick, paper = preset("quick"), HLConfig()
    for field in fields(HLConfig):
        flag = flag_name(field.name)
        default = getattr(quick, field.name)
        differs = "" if default == getattr(paper, field.name) else (
            f"; paper: {_shown(getattr(paper, field.name))}")
        switch = {"nargs": "?", "const": "true"} if isinstance(field.default, bool) else {}
        settings.add_argument(f"--{flag}", dest=f"hl_{field.name}", default=None,
                              metavar=type(field.default).__name__.upper(), **switch,
                              help=f"{SETTING_HELP[field.name]} (default: "
                                   f"{_shown(default)}{differs})")
    return parser


def settings_text(config: HLConfig) -> str:
    """Every setting of ``config`` as a sim.py flag and value, one per line
    (``--nodes 10``), in HLConfig's order; a line can be pasted back. An
    empty text is ``--task=`` (not ``--task ''``, whose quotes
    ``python sim.py $(...)`` would keep), and a text that starts with a dash
    is joined by ``=`` too, as argparse would take it for a flag."""
    lines = []
    for field in fields(HLConfig):
        value = getattr(config, field.name)
        flag = f"--{flag_name(field.name)}"
        if isinstance(value, str) and (not value or value.startswith("-")):
            lines.append(f"{flag}={shlex.quote(value) if value else ''}")
        else:
            shown = shlex.quote(value) if isinstance(value, str) else _shown(value)
            lines.append(f"{flag} {shown}")
    return "\n".join(lines)


def _shown(value: object) -> str:
    """A setting's value as given on the command line (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def add_compare_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Flags of ``compare`` and ``eval``."""
    group = parser.add_argument_group(command)
    group.add_argument("--policy", required=command == "eval", default="",
                       help="folder with policy.weights.h5 and policy.json (a run "
                            "folder or policies/<name>); its config.json, if any, "
                            "replaces the preset (but for --tensorboard, which "
                            "follows this command line)" + ("" if command == "eval" else
                                                     "; default: train HL first"))
    group.add_argument("--seeds", type=int, default=5,
                       help="evaluation seeds: --seed + 1, --seed + 2, ... "
                            "(default: 5)")
    if command == "compare":
        group.add_argument("--methods", default="",
                           help=f"comma-separated subset of {', '.join(METHODS)} "
                                f"(default: {', '.join(DEFAULT_METHODS)}; BestNode only "
                                "when --starter names several nodes); the Flower "
                                "strategies' own settings are flags below")


def base_config(args: argparse.Namespace) -> HLConfig:
    """The preset, or the settings of the run being resumed or compared."""
    resume, policy = getattr(args, "resume", ""), getattr(args, "policy", "")
    if resume:
        check_resumable(Path(resume))
        return saved_config(Path(resume))
    if policy and (Path(policy) / CONFIG_FILE).is_file():
        return policy_config(Path(policy), preset(args.preset))
    return preset(args.preset)


def check_resumable(folder: Path) -> None:
    """ConfigError unless ``folder`` is a training run folder."""
    from hl_flower.runlog import run_kind

    if not folder.is_dir():
        raise ConfigError(f"--resume {folder} is not a run folder; give the folder of "
                          "a training run (runs/<name>) that stopped")
    kind = run_kind(folder)
    if kind != "train":
        what = f"a {kind} run" if kind else "not a run folder that sim.py wrote"
        raise ConfigError(f"--resume {folder}: it is {what}, and only training runs "
                          "resume; point to a folder that `python sim.py` trained in")


def config_from_args(args: argparse.Namespace) -> HLConfig:
    """Base settings, then every flag given, then validation."""
    overrides = {field.name.replace("_", "-"): getattr(args, f"hl_{field.name}")
                 for field in fields(HLConfig)
                 if getattr(args, f"hl_{field.name}") is not None}
    changed = sorted(set(overrides) - {"episodes", "tensorboard"})
    if getattr(args, "resume", "") and changed:
        name = changed[0].replace("-", "_")
        flag = flag_name(name)
        raise ConfigError(f"--resume continues with the run's own settings; drop "
                          f"--{flag} (only {RESUME_MAY_CHANGE} may change)")
    config = from_flat(overrides, base=base_config(args))
    check_policy(getattr(args, "policy", ""), config)
    return config.validate()


def check_policy(folder: str, config: HLConfig) -> None:
    """ConfigError or ValueError unless ``folder`` (if given) holds a policy
    that fits ``config``; checked before the settings are, since a policy's
    config.json brings settings (such as --best-node) that only fit its own
    node count."""
    if not folder:
        return
    if not Path(folder).is_dir():
        raise ConfigError(f"--policy {folder} is not a folder; point to a run "
                          "folder that holds policy.weights.h5")
    from hl_flower.policy_file import check_policy_fits

    check_policy_fits(Path(folder), config)


def resume_point(args: argparse.Namespace, config: HLConfig) -> int:
    """Episodes already done in the run to resume (0 when starting anew);
    warnings about skipped damaged checkpoints go to stderr."""
    if not getattr(args, "resume", ""):
        return 0
    if not args.verbose:
        import_tensorflow_quietly()
    from hl_flower.checkpoint import load_latest
    from hl_flower.dqn import DQNAgent

    checkpoint, warnings = load_latest(Path(args.resume), DQNAgent(config, config.seed))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    done = checkpoint.episodes_done if checkpoint else 0
    if done >= config.episodes:
        raise ConfigError(f"{args.resume} already finished {done} episodes; pass "
                          f"--episodes {done + 10} (or more) with --resume to go on")
    return done


def check_compare_args(args: argparse.Namespace, command: str, config: HLConfig
                       ) -> list[str]:
    """The methods to run; ConfigError on a bad count or name."""
    if command == "train":
        return []
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if config.seed + args.seeds > MAX_SEED:
        raise ConfigError(f"--seed {config.seed} --seeds {args.seeds} would play seeds "
                          f"up to {config.seed + args.seeds}, past {MAX_SEED} (2**32 - 1; "
                          "the evaluation seeds are --seed + 1 .. --seed + --seeds); use "
                          f"--seed {max(MAX_SEED - args.seeds, 0)} or less"
                          + ("" if args.seeds < MAX_SEED else f" and --seeds {MAX_SEED} or fewer"))
    if command == "eval":
        return [HL_GREEDY]
    if not args.methods:
        return list(default_methods(len(config.starter_nodes) > 1))
    return check_methods([m.strip() for m in args.methods.split(",") if m.strip()])


def check_inputs(config: HLConfig, verbose: bool = False) -> None:
    """Load the task, its data and the distances now, so bad input fails
    before any run (TaskError, DataError, DistanceError)."""
    if not config.task:  # the built-in task reads --dataset: a mistyped name fails at once
        from hl_flower.image_sets import check_dataset_name

        check_dataset_name(config.dataset)
    if not verbose:
        import_tensorflow_quietly()  # the task builds its Keras model
    from hl_flower.inputs import check_inputs as check

    for advice in check(config):
        print(f"note: {advice}", file=sys.stderr)


def load_policy(folder: str, config: HLConfig, verbose: bool):  # -> DQNAgent | None
    """The trained policy in ``folder`` (ValueError if missing or unfit)."""
    if not folder:
        return None
    if not verbose:
        import_tensorflow_quietly()
    from hl_flower.dqn import DQNAgent

    agent = DQNAgent(config, seed=config.seed)
    agent.load(Path(folder))
    return agent


def load_client_app(reference: str, verbose: bool):  # -> ClientApp
    """The nodes' ClientApp (ValueError naming --client-app if unusable)."""
    if not verbose:
        import_tensorflow_quietly()  # the ClientApp's module may import it
    from hl_flower.simulation import load_client_app as load

    return load(reference)


def default_name(command: str, args: argparse.Namespace, config: HLConfig) -> str:
    """Run name from the command, preset, main settings and the time."""
    data = Path(config.task).stem if config.task else config.dataset
    dataset = data.replace("idx:", "idx-").replace("/", "_").replace(".", "-")
    prefix = "" if command == "train" else f"{command}-"
    return (f"{prefix}{args.preset}-{dataset}-n{config.num_nodes}-k{config.k}"
            f"-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}")


def simulate(args: argparse.Namespace, config: HLConfig, server_app) -> None:
    """Run ``server_app`` on the Simulation Engine, one virtual node per HL node."""
    from hl_flower.interrupt import stop_on_signals
    from hl_flower.simulation import simulate as run_on_engine

    stop_on_signals()
    run_on_engine(server_app, config.num_nodes, client_app=args.loaded_client_app,
                  cpus_per_client=args.cpus_per_client, ray_address=args.ray_address,
                  verbose=args.verbose)


def run(command: str, args: argparse.Namespace, config: HLConfig, folder: Path,
        methods: list[str], agent, done: int = 0) -> tuple[str, str | None, dict]:
    """Train, compare or evaluate; returns the closing text, why the run
    stopped early (None when it did not) and a training run's summary
    (what summary.json holds; empty for compare and eval)."""
    if not args.verbose:
        import_tensorflow_quietly()
    from hl_flower.compare import ComparePlan, describe_run, evaluation_seeds, make_compare_app
    from hl_flower.progress_bar import ConsoleProgress
    from hl_flower.runlog import RUN_LOG
    from hl_flower.server_app import make_server_app

    progress = ConsoleProgress(config, done, run_log=folder / RUN_LOG,
                               name_failures=not args.verbose)
    if command == "train":
        summary: dict = {}
        with progress:
            simulate(args, config, make_server_app(config, folder, progress.on_step,
                                                   progress.on_episode, summary,
                                                   resume=bool(args.resume),
                                                   on_validation=progress.on_validation))
        return (progress.summary_line() + untrained_note(progress.episodes, config),
                summary.get("stopped"), summary)
    plan = ComparePlan(config, folder, methods, evaluation_seeds(config, args.seeds),
                       stem=command, agent=agent)
    with progress:
        simulate(args, config, make_compare_app(
            plan, progress.on_step, progress.on_episode,
            on_run=lambda r: print(describe_run(r), flush=True),
            on_validation=progress.on_validation))
    return plan.table, plan.stopped, {}


def untrained_note(episodes: list, config: HLConfig) -> str:
    """A closing line when this run's episodes (``EpisodeResult``) never
    trained the DQN: its replay stayed below --replay-batch (one transition
    per step), so the saved policy is the initial network."""
    if not episodes or any(e.dqn_loss is not None for e in episodes):
        return ""
    return (f"\nnote: the DQN never trained: its replay held fewer than --replay-batch "
            f"{config.replay_batch} transitions (one per step), so the saved "
            "policy is the untrained network; train more --episodes (--resume "
            "continues) or give a smaller --replay-batch")


def stop_advice(command: str, stopped: str, folder: Path, summary: dict) -> str:
    """After a run stopped early: --resume where it can help (the nodes did
    not answer, by the run's ``summary``), else where the failures'
    tracebacks are."""
    from hl_flower.runlog import RUN_LOG, process_died, resume_can_help

    if command != "train":
        return f"; the causes are in {folder / RUN_LOG}"
    if process_died(stopped, summary):
        return (f"; the Ray process of the nodes died (killed, out of memory, or a crash "
                f"in the ClientApp; Ray's reason is in {folder / RUN_LOG}): continue "
                f"with --resume {folder}, and if it dies again there, fix that first")
    if resume_can_help(stopped, summary):
        return f"; once the nodes answer again, continue with --resume {folder}"
    return (f"; the causes are in {folder / RUN_LOG} and resuming would meet them "
            "again, so fix them first")


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, run; user mistakes exit 2 with one line."""
    command, argv = split_command(sys.argv[1:] if argv is None else argv)
    args = build_parser(command).parse_args(argv)
    from hl_flower.data import DataError
    from hl_flower.distance import DistanceError
    from hl_flower.runlog import (
        RunFolderExists,
        check_run_folder,
        check_run_name,
        create_run_folder,
    )

    try:
        config = config_from_args(args)
        methods = check_compare_args(args, command, config)
        run_name = check_run_name(args.name)
        if args.show_settings:
            print(settings_text(config))
            return 0
        new_folder = None if getattr(args, "resume", "") else (
            Path(args.out) / (run_name or default_name(command, args, config)))
        if new_folder:  # before the slow checks: a bad --out or --name fails at once
            check_run_folder(new_folder, args.overwrite)
        check_inputs(config, args.verbose)
        agent = load_policy(getattr(args, "policy", ""), config, args.verbose)
        args.loaded_client_app = load_client_app(args.client_app, args.verbose)
        done = resume_point(args, config)
        folder = create_run_folder(new_folder, args.overwrite, kind=command) if new_folder \
            else Path(args.resume)
    except (ConfigError, DataError, DistanceError, RunFolderExists, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused: permissions, names, space
        print(f"error: cannot write the run folder under {args.out}: "
              f"{err.strerror or err} ({err.filename or args.out}); pick another --out",
              file=sys.stderr)
        return 2
    trains = agent is None and (command == "train" or HL_GREEDY in methods)
    for caution in config.cautions(trains_dqn=trains,
                                   resuming=bool(getattr(args, "resume", ""))):
        print(f"warning: {caution}", file=sys.stderr)
    plural = "" if config.episodes == 1 else "s"
    episodes = f", {config.episodes} training episode{plural}" if trains else ""
    resumed = f", resuming after episode {done}" if getattr(args, "resume", "") else ""
    print(f"{command} on {config.task or config.dataset}: {config.num_nodes} nodes, goal "
          f"{config.goal}{episodes}{resumed}; writing {folder}")
    if agent is not None and (Path(args.policy) / BEST_FOLDER).is_dir():
        print(f"note: this is the run's final policy; {Path(args.policy) / BEST_FOLDER} "
              "holds its best validated one")
    text, stopped, summary = run(command, args, config, folder, methods, agent, done)
    print(text)
    from hl_flower.interrupt import interrupted

    if stopped and interrupted():
        hint = (f"; continue with: python sim.py --resume {folder}"
                if command == "train" else "")
        print(f"interrupted: the finished episodes are in {folder}{hint}", file=sys.stderr)
        return 130
    if stopped:
        print(f"error: the run stopped early: {stopped}; the logs so far are in "
              f"{folder}{stop_advice(command, stopped, folder, summary)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
