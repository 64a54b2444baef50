"""Run a function first when Flower ends the process (``flwr stop``, a signal).

Flower's signal handler (``flwr_exit`` in ``flwr.supercore.exit``, flwr
1.42) runs the exit handlers registered with ``run_before_force_exit``,
starts a timer that ends the process with ``os._exit`` 5 s later, runs the
other exit handlers and only then raises SystemExit. In a deployed ServerApp
those other handlers push the task's output and join the heartbeat thread:
on a loaded machine that can outlast the 5 s, and when the push is refused
with 401 Flower's retry sends the process SIGINT again, which then raises
KeyboardInterrupt (``flwr/supercore/retry/http_retry.py``). Either way code
that waits for SystemExit may never run, so what must be written when a run
is stopped is written here, before the timer starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import ERROR

from flwr.common import log
from flwr.supercore.exit import add_exit_handler

_first: list[Callable[[], None]] = []  # the functions of the runs going on, oldest first
_registered: list[bool] = []  # one handler per process: Flower cannot remove one


@contextmanager
def first_on_flower_exit(function: Callable[[], None]) -> Iterator[None]:
    """While the block runs, ``function`` is called first if Flower ends the
    process. An exception it raises is logged, not raised: the exit goes on."""
    if not _registered:
        add_exit_handler(_call_first, run_before_force_exit=True)
        _registered.append(True)
    _first.append(function)
    try:
        yield
    finally:
        _first.remove(function)


def _call_first() -> None:
    for function in reversed(_first):
        try:
            function()
        except Exception as error:  # noqa: BLE001  (the process is ending anyway)
            log(ERROR, "while Flower ended the process: %s", error)
