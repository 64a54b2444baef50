"""Everything a run checks before it writes anything, for both of its faces:
``sim.py`` and the ServerApp that ``flwr run`` starts.

A mistake in the settings, the task, its data, the partition or the distance
file raises one of :data:`INPUT_ERRORS`, whose message is one line naming
the problem and the fix.
"""

from __future__ import annotations

import logging

from .config import ConfigError, HLConfig, in_run_config_words
from .data import DataError
from .distance import DistanceError
from .runlog import RunFolderExists
from .task import TaskError

INPUT_ERRORS = (ConfigError, TaskError, DataError, DistanceError, RunFolderExists)


def check_inputs(config: HLConfig) -> list[str]:
    """Load the task, its data and the distances now, so bad input fails
    before any run (TaskError, DataError, DistanceError). Returns advice
    that does not stop the run, one line each."""
    from . import task
    from .data import check_partitions
    from .distance import distance_matrix

    advice = task.check_task(config)
    if not task.has_own_partitions(config):
        check_partitions(task.training_set(config), config.num_nodes, config.main_samples,
                         config.other_samples, config.partition, config.partition_seed)
    distance_matrix(config)
    return advice


class RunConfigError(ValueError):
    """A ``flwr run`` whose run config, task, data or run folder is unusable;
    the message is one line naming the run-config key and the fix. Flower
    logs it without a traceback (:class:`OneLineInputErrors`)."""


class OneLineInputErrors(logging.Filter):
    """On Flower's logger: a :class:`RunConfigError`, or the NodeFailure of a
    run that could not go on (no node for a partition, too many failures),
    that ends a ServerApp is logged as its one line, not with a traceback
    (Flower logs every exception of a ServerApp with ``exc_info``), in
    run-config words (``num-nodes=3``, not sim.py's ``--nodes 3``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message and traceback; always keep it."""
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and isinstance(error, RunConfigError | _node_failure()):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "%s", (f"flwr run: {in_run_config_words(str(error))}",), None, None)
        return True


def _node_failure() -> type[Exception]:
    """strategies' NodeFailure (imported late: strategies imports hl_flower)."""
    from strategies import NodeFailure

    return NodeFailure


def quiet_input_errors() -> None:
    """Install :class:`OneLineInputErrors` on Flower's logger (once)."""
    logger = logging.getLogger("flwr")
    if not any(isinstance(f, OneLineInputErrors) for f in logger.filters):
        logger.addFilter(OneLineInputErrors())
