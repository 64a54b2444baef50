"""sim.py's ``main`` called in the test process, for the many tests of input
that is refused before any run starts: the same exit code, stdout and stderr
as a real ``python sim.py`` (argparse's exit included), without paying for a
Python and TensorFlow start-up per case. A refused input never reaches the
simulation, so nothing of a run is left in the test process.
``tests/test_cli.py`` keeps real-process cases of both kinds of refusal.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finished:
    """What a real process would have left: exit code and both streams."""

    returncode: int
    stdout: str
    stderr: str


def refused(*args: str) -> Finished:
    """Run ``python sim.py *args`` in this process (from the project root)."""

    def accepted(*_: object, **__: object) -> None:
        raise AssertionError(f"sim.py {' '.join(args)} was accepted and would run")

    return _main(args, accepted)  # a refusal never gets this far


def started(*args: str) -> Finished:
    """Like :func:`refused`, for input that is accepted: everything up to the
    run (checks, warnings, the run folder, the opening line), then a run
    that returns at once with an empty closing text."""
    return _main(args, lambda *_, **__: ("", None, {}))


def _main(args: tuple[str, ...], run: Callable[..., object]) -> Finished:
    import sim

    out, err = io.StringIO(), io.StringIO()
    previous, real_run = Path.cwd(), sim.run
    os.chdir(ROOT)
    sim.run = run
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = sim.main(list(args))
            except SystemExit as exit_:  # argparse
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
        sim.run = real_run
    return Finished(code, out.getvalue(), err.getvalue())
