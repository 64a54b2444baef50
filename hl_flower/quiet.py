"""Keep TensorFlow, Ray and Flower quiet unless the user asks for detail."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_environment(verbose: bool = False) -> None:
    """Set log levels before TensorFlow or Ray are imported.

    Environment variables are inherited by Ray's worker processes, so the
    virtual clients stay quiet too.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")
    silence_python_warnings()


def silence_python_warnings() -> None:
    """Hide library deprecation chatter (imports may reset the filters)."""
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr closed: its C++ start-up banner
    (oneDNN notice) is printed before any log level applies."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


# Flower modules that run ClientApps for the Simulation Engine: what they log
# is a node's failure, which the run names in one line and counts itself.
NODE_SIDE_MODULES = ("flwr/server/superlink/fleet/vce/", "flwr/simulation/ray_transport/")


class TerminalFilter(logging.Filter):
    """Without ``--verbose``, Flower's console shows server-side errors only.

    A node's traceback is not shown: the run prints one warning line per
    failed node and keeps the traceback in the run folder's ``run.log``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace(os.sep, "/")
        return (record.levelno >= logging.ERROR
                and not any(module in path for module in NODE_SIDE_MODULES))


def quiet_flower_logger(verbose: bool = False) -> None:
    """Flower's log: everything on the console with ``verbose``, else only
    :class:`TerminalFilter`'s records; from INFO up for a run's ``run.log``."""
    from flwr.common.logger import console_handler

    logger = logging.getLogger("flwr")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    for old in [f for f in console_handler.filters if isinstance(f, TerminalFilter)]:
        console_handler.removeFilter(old)
    if not verbose:
        console_handler.addFilter(TerminalFilter())
        silence_python_warnings()


def keep_ray_errors_off_the_terminal() -> bool:
    """Ray's driver prints what its raylet reports (``(raylet) A worker died
    or was killed ...``) straight to the terminal, whatever ``log_to_driver``
    says. Send those lines to Flower's log instead, as WARNING records: the
    run's ``run.log`` keeps them, the terminal does not (the run names the
    failed nodes in its own warning lines). Returns whether Ray's printer was
    found (a Ray without it prints as before)."""
    try:
        from ray._private import worker
    except ImportError:
        return False
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "hl_quiet", False):
        return printer is not None

    def print_or_log(data: dict, *args: object, **kwargs: object) -> None:
        if data.get("pid") != "raylet":
            printer(data, *args, **kwargs)
            return
        for line in data.get("lines", []):
            logging.getLogger("flwr").warning("Ray: %s", line)

    print_or_log.hl_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_or_log
    return True
