"""A Grid that counts what actually travels: payload bytes and model transfers.

Every strategy here (HL, the hop baselines, Flower's FedAvg) talks to the
nodes through a :class:`MeteredGrid`, so the bytes a run reports are summed
from the messages it sent and received, in both directions, not computed
from a formula.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from hl_flower.messages import ARRAYS, METRICS, POLICY, UNPACKS, payload_bytes
from hl_flower.packing import FORMAT as PACK_FORMAT
from hl_flower.packing import packed, unpacked
from hl_flower.prompt_delivery import is_deployment

from .errors import RunInterrupted

# Set by a signal handler (sim.py): every strategy's next send or wait raises
# RunInterrupted, so a run ends within one poll instead of one reply timeout.
stop_requested = threading.Event()
MAX_PULL_INTERVAL = 0.1  # seconds between reply pulls where the grid sets none
HELD = 0.1  # seconds: an empty pull that took this long was held open by the server


@dataclass(frozen=True)
class Traffic:
    """Counters of messages that went through the grid, both directions."""

    bytes: int = 0  # array payloads: models and policies
    model_transfers: int = 0  # messages carrying model weights
    policy_transfers: int = 0  # messages carrying DQN weights
    messages: int = 0

    def __sub__(self, earlier: Traffic) -> Traffic:
        return Traffic(self.bytes - earlier.bytes,
                       self.model_transfers - earlier.model_transfers,
                       self.policy_transfers - earlier.policy_transfers,
                       self.messages - earlier.messages)

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.bytes + other.bytes,
                       self.model_transfers + other.model_transfers,
                       self.policy_transfers + other.policy_transfers,
                       self.messages + other.messages)


def traffic_of(messages: Iterable[Message]) -> Traffic:
    """What ``messages`` carry (error replies carry nothing)."""
    total = Traffic()
    for message in messages:
        if message.has_error():
            total += Traffic(messages=1)
            continue
        content: RecordDict = message.content
        total += Traffic(payload_bytes(content), int(ARRAYS in content.array_records),
                         int(POLICY in content.array_records), 1)
    return total


class MeteredGrid(Grid):
    """Wraps a Grid and adds up the traffic of everything sent and received.

    On a deployment (Flower's ``HttpGrid``) it also sends every model and
    policy as one array (:mod:`hl_flower.packing`) to the nodes whose
    identify reply said they unpack, and restores replies that come packed;
    the traffic it counts is the unpacked content's either way.
    """

    def __init__(self, grid: Grid) -> None:
        self.inner = grid
        self.traffic = Traffic()
        self.packs = is_deployment(grid)
        self.unpacking_nodes: set[int] = set()

    @staticmethod
    def wrap(grid: Grid) -> MeteredGrid:
        """``grid`` itself if it is already metered, else a metered wrapper."""
        return grid if isinstance(grid, MeteredGrid) else MeteredGrid(grid)

    def set_run(self, run: Run) -> None:
        """Delegate to the wrapped grid."""
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self.inner.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """Delegate to the wrapped grid."""
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """Nodes connected now."""
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Send and count ``messages``."""
        messages = list(messages)
        self.traffic += traffic_of(messages)
        for message in messages:
            if self.packs and message.metadata.dst_node_id in self.unpacking_nodes:
                message.content = packed(message.content)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Receive and count replies."""
        replies = list(self.inner.pull_messages(message_ids))
        for reply in replies:
            if reply.has_error():
                continue
            reply.content = unpacked(reply.content)
            metrics = reply.content.metric_records.get(METRICS)
            if metrics is not None and metrics.get(UNPACKS) == PACK_FORMAT:
                self.unpacking_nodes.add(reply.metadata.src_node_id)
        self.traffic += traffic_of(replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Send, then pull the replies until all arrived or ``timeout``
        seconds passed, counting both; raises RunInterrupted as soon as a
        stop is requested (also while waiting)."""
        self._raise_if_stopped()
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(getattr(self.inner, "pull_interval", MAX_PULL_INTERVAL),
                       MAX_PULL_INTERVAL)
        replies: list[Message] = []
        while waiting:
            self._raise_if_stopped()
            asked = time.monotonic()
            arrived = list(self.pull_messages(waiting))
            replies += arrived
            waiting -= {reply.metadata.reply_to_message_id for reply in arrived}
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            if time.monotonic() - asked < HELD:  # the grid answered at once: wait here
                time.sleep(interval)
        return replies

    @staticmethod
    def _raise_if_stopped() -> None:
        if stop_requested.is_set():
            raise RunInterrupted("interrupted (Ctrl-C or SIGTERM)")
