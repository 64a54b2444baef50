"""Ctrl-C and SIGTERM end a simulated run cleanly.

The first signal asks the run to stop: every strategy's next message or
reply poll raises ``RunInterrupted`` (``strategies.metered_grid``), so the
run ends after its last finished episode (its checkpoint is what
``--resume`` continues from), the Simulation Engine shuts Ray down as
usual, and no traceback reaches the terminal. A second signal ends the
process at once, with every process it started.

Ray's driver installs its own SIGTERM handler (which aborts the process)
when it starts, so :func:`stop_on_signals` also puts the handlers back
right after ``ray.init``.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys

from strategies.metered_grid import stop_requested

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _request_stop(signum: int, frame: object) -> None:
    if stop_requested.is_set():  # the second signal: Ray's processes go too
        _kill_child_processes()
        os._exit(128 + signum)
    stop_requested.set()
    # Ray's actors get the terminal's Ctrl-C too: their deaths are expected now.
    logging.getLogger("flwr").setLevel(logging.CRITICAL + 1)
    print("\nstopping the run (press Ctrl-C again to quit at once)", file=sys.stderr,
          flush=True)


def _kill_child_processes() -> None:
    """SIGKILL every process this one started (Ray's GCS, raylet, workers),
    which would outlive an immediate exit."""
    try:
        import psutil
    except ImportError:
        return
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def stop_on_signals() -> None:
    """Handle SIGINT and SIGTERM as above (call from the main thread)."""
    for number in SIGNALS:
        signal.signal(number, _request_stop)
    import ray

    if not getattr(ray.init, "_keeps_signal_handlers", False):
        ray.init = _keeping_signal_handlers(ray.init)


def _keeping_signal_handlers(init):  # noqa: ANN001, ANN202 - wraps ray.init as it is
    @functools.wraps(init)
    def init_and_restore(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        handlers = {number: signal.getsignal(number) for number in SIGNALS}
        try:
            return init(*args, **kwargs)
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)

    init_and_restore._keeps_signal_handlers = True
    return init_and_restore


def interrupted() -> bool:
    """Whether a stop was requested in this process."""
    return stop_requested.is_set()
