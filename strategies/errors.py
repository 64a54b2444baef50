"""Why a strategy's run ends early."""

from __future__ import annotations


class NodeFailure(RuntimeError):
    """A node replied with an error or did not reply in time."""


class RunInterrupted(NodeFailure):
    """The user asked the run to stop (Ctrl-C or SIGTERM); like a failure, it
    ends the run after the last finished episode, which a resume continues."""
