"""A ClientApp task's input pulled in two halves at once.

Flower 1.42's ``flwr-clientapp`` (``flwr.supernode.runtime.run_clientapp.
pull_task_input``) asks its SuperNode's Runtime API one request after the
other: the task's ``Context``, run and FAB (``PullTaskInput``), then the
message (``PullMessages``), the message's parts (``PullObject``, one request
each) and a receipt (``ConfirmMessageReceived``, which deletes the parts on
the SuperNode). The message half does not depend on the first answer (the
SuperNode finds the message from the task's token; the message names its run
and node), so :func:`pull_task_input` sends both halves at once and leaves
the receipt for later (:class:`Receipt`), which takes two request times off
every step.

The requests, their contents and their checks are Flower's own; only their
order changes. The receipt is sent only for a task that started
(``PullTaskInput`` answered), as Flower's order would.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from logging import ERROR

from flwr.app import Context, Message
from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    PullAppMessagesRequest,
    PullAppMessagesResponse,
    PullTaskInputRequest,
    PullTaskInputResponse,
)
from flwr.supercore import log
from flwr.supercore.fab import Fab
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.task_identity import TaskIdentity


@dataclass
class Receipt:
    """The ``ConfirmMessageReceived`` of a pulled message, sent later in a
    thread of its own (:meth:`send`); :meth:`wait` joins it."""

    client: RuntimeHttpClient
    node_id: int
    run_id: int
    object_id: str
    thread: threading.Thread | None = None

    def send(self) -> None:
        """Start sending the receipt; a failure is logged (Flower's
        ``flwr-clientapp`` would fail the task; the step's reply is not
        affected, only the SuperNode's memory of the message's parts)."""
        confirm = make_confirm_message_received_fn_protobuf(
            self.client.ConfirmMessageReceived, Node(node_id=self.node_id), self.run_id)

        def confirm_or_log() -> None:
            try:
                confirm(self.object_id)
            except Exception as err:  # pylint: disable=broad-exception-caught
                log(ERROR, "worker: could not confirm message %s: %s", self.object_id, err)

        self.thread = threading.Thread(target=confirm_or_log, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Wait for a receipt that was sent (before the task's client closes)."""
        if self.thread is not None:
            self.thread.join()


def pull_task_input(client: RuntimeHttpClient) -> tuple[Message, Context, Run, Fab, Receipt]:
    """The task's message, ``Context``, run and FAB, as Flower's
    ``pull_task_input`` returns them, and the message's :class:`Receipt`
    (not sent yet). Raises what Flower's requests raise, and RuntimeError
    when the SuperNode has no message for the task."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(client.PullTaskInput, PullTaskInputRequest())
        message, receipt = _pull_message(client)
        answer: PullTaskInputResponse = asked.result()
    TaskIdentity.task_id = answer.task_id
    TaskIdentity.run_id = answer.run.run_id
    TaskIdentity.node_id = answer.context.node_id
    return (message, context_from_proto(answer.context), run_from_proto(answer.run),
            fab_from_proto(answer.fab), receipt)


def _pull_message(client: RuntimeHttpClient) -> tuple[Message, Receipt]:
    """The task's message with its parts, and its receipt (not sent)."""
    pulled: PullAppMessagesResponse = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("No messages received from Runtime API")
    metadata = pulled.messages_list[0].metadata
    tree = pulled.message_object_trees[0]
    receipt = Receipt(client, metadata.dst_node_id, metadata.run_id, tree.object_id)
    message = pull_and_inflate_object_from_tree(
        tree, make_pull_object_fn_protobuf(client.PullObject,
                                           Node(node_id=metadata.dst_node_id),
                                           metadata.run_id),
        lambda _object_id: None,  # the receipt goes once the task has started
        return_type=Message)
    # A deflated message does not hold its own id (the id of its object)
    message.metadata.__dict__["_message_id"] = tree.object_id
    return message, receipt
