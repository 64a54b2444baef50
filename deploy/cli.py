"""What every deploy script shares: a mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


class UsageError(Exception):
    """A mistake the user can fix; the message says what to do."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def check_arguments(module: str, make_parser: str, argv: list[str], command: str) -> None:
    """Parse ``argv`` with a Flower command's own parser (``module.make_parser``;
    skipped when the installed Flower has none) so that a mistake is one line
    on stderr and exit code 2, before the command starts."""
    maker = getattr(importlib.import_module(module), make_parser, None)
    if maker is None:
        return
    parser = maker()
    parser.prog = command

    def one_line(message: str) -> None:
        print(f"error: {message} (see {command} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = one_line  # type: ignore[method-assign]
    parser.parse_args(argv)


def run_flower_command(entry: Callable[[], None], argv: list[str], command: str,
                       note: str | None = None) -> None:
    """Run Flower's command ``entry`` (``flower_superlink``, ``flower_supernode``)
    on ``argv`` as ``command``: its flags checked first by its own parser
    (a mistake is one line, exit 2), then ``note`` on stderr, if any."""
    flower_name = entry.__name__  # flower_superlink: flower-superlink's entry point
    check_arguments(entry.__module__, f"_parse_args_run_{flower_name.removeprefix('flower_')}",
                    argv, command)
    if note:
        print(note, file=sys.stderr, flush=True)
    sys.argv = [flower_name.replace("_", "-"), *argv]
    entry()


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a :class:`UsageError` becomes one line and exit code 2."""
    try:
        return main(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def path_with_this_python() -> str:
    """``PATH`` with this Python's ``bin`` folder first: Flower's processes
    start others by name (the SuperLink starts ``flower-superexec``), which
    must be found without an activated virtual environment."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def flower_executable(name: str) -> str:
    """Path of a Flower command (``flwr``, ``flower-supernode``...).

    The one next to this Python comes first, so an activated virtual
    environment is not needed.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise UsageError(f"the {name} command is not installed; run "
                         "pip install -r requirements.txt in this environment")
    return found


def refuse_to_overwrite(paths: list[Path], force: bool) -> None:
    """Stop if any of ``paths`` exists, unless ``force``."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} already exists; pass --force to replace "
                         "it, or choose another --out")
