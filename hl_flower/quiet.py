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
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def quiet_flower_logger(verbose: bool = False) -> None:
    """Show only Flower's errors (and everything with ``verbose``)."""
    level = logging.DEBUG if verbose else logging.ERROR
    logging.getLogger("flwr").setLevel(level)
