"""Shorter message polling in Flower's Simulation and Deployment Engines.

Flower 1.42 moves messages with polling loops whose fixed waits are long next
to an HL step (one message and one reply around ~0.2 s of work).

In simulation, two loops wait 0.1 s between looks: the ServerApp's
``InMemoryGrid`` pulls replies, and the engine's delivery thread
(``vce_api.add_messages_to_queue``) looks for new messages for the virtual
nodes. :func:`tune_grid` shortens the grid's pull interval;
:func:`patch_delivery` swaps the delivery loop for one that does the same
calls but waits in proportion to how long a pass takes (at least 5 ms, at most
Flower's 0.1 s), so polling stays under ~20% of a core even with 1,000
virtual nodes.

In deployment (flwr 1.42's source; idle CPU measured on 127.0.0.1), polling
every 3 s is slow, and polling often is costly: each request takes ~3 ms of
the SuperLink's CPU. So the two pulls that wait for work are held open
instead (long polling) and answered as soon as there is something:

- a SuperNode's pull of its next message from the SuperLink (Flower: again
  3 s after an empty pull): the SuperLink holds it up to 2 s and answers
  as soon as a push stores a message (it looks again after every push, and
  every 0.1 s); the SuperNode pulls again 5 ms after an answer: one
  request every 2 s from an idle SuperNode.
- a worker's request for its next task (``deploy.clientapp_worker``; the
  stock SuperExec asks every 1 s): the SuperNode holds it the same way,
  looking again whenever it creates a task.
- a SuperNode looks for its ClientApp's reply (in its own memory) every
  5 ms instead of 0.5 s;
- a message part not uploaded yet is pulled again after 5 ms, doubling up to
  50 ms (Flower: 1 s, doubling up to 10 s);
- the ServerApp's pull for replies (HL's own loop; Flower's
  ``send_and_receive`` pulls every 3 s): the SuperLink holds it the same
  way, and the ServerApp pulls again at once; from a SuperLink that answers
  at once (no hold), it pulls every 0.02 s.

A held request occupies one of the server's worker threads (anyio's default
is 40 per server): beyond about 30 SuperNodes per SuperLink, start the
SuperLink without the hold (``flower-superlink``).

:func:`patch_superlink_waits` applies the holds in the SuperLink's process
(``python -m deploy.superlink``), :func:`patch_supernode_waits` the
SuperNode's (``python -m deploy.supernode``), :func:`tune_grid` the
ServerApp's. Every patch checks the installed flwr
version and what it replaces; on another Flower it changes nothing and
Flower's own waits apply.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from queue import Queue
from types import ModuleType
from typing import Any

import flwr
from flwr.serverapp import Grid

TESTED_FLWR = "1.42.0"  # the Flower whose deployment waits are patched
PULL_INTERVAL = 0.005  # seconds between reply pulls in simulation (Flower: 0.1)
MIN_WAIT, MAX_WAIT = 0.005, 0.1  # delivery loop waits (Flower: always 0.1)
BUSY_SHARE = 0.2  # wait 4x as long as a pass took: polling <= 20% of a core
DEPLOYED_PULL_INTERVAL = 0.02  # ServerApp's seconds between reply pulls in deployment
SUPERLINK_PULL_INTERVAL = 0.005  # SuperNode's seconds between pulls, each held (Flower: 3)
REPLY_CHECK_INTERVAL = 0.005  # SuperNode's seconds between looks for a reply (Flower: 0.5)
OBJECT_PULL_BACKOFF = (0.005, 0.05)  # first and longest wait for a part (Flower: 1, 10)
HOLD, HOLD_CHECK = 2.0, 0.1  # seconds a pull for work is held open; looks at least this often
STOCK_NOTE = (f"note: flwr {flwr.__version__} is installed; HL-Flower's shorter "
              f"deployment waits were written for {TESTED_FLWR}, so Flower's own waits "
              "apply (each step takes seconds longer)")


def is_deployment(grid: Grid) -> bool:
    """Whether ``grid`` (or the grid a ``MeteredGrid`` wraps) is Flower's
    Deployment Engine grid."""
    return type(getattr(grid, "inner", grid)).__name__ == "HttpGrid"


def tune_grid(grid: Grid) -> bool:
    """Pull replies every 5 ms on the simulation's in-memory grid; on a
    deployment's grid, every 20 ms unless the SuperLink holds pulls open
    (``MeteredGrid``), with short waits for message parts.
    False when the deployment's patch does not fit the installed Flower."""
    inner = getattr(grid, "inner", grid)  # through a MeteredGrid
    if type(inner).__name__ == "InMemoryGrid" and hasattr(inner, "pull_interval"):
        inner.pull_interval = PULL_INTERVAL
        return True
    if is_deployment(inner) and patch_object_pulls():
        inner.pull_interval = DEPLOYED_PULL_INTERVAL  # read by MeteredGrid's loop
        return True
    return not is_deployment(inner)


def patch_object_pulls() -> bool:
    """Wait 0.005 s (doubling up to 0.05 s) for a message part that is not
    uploaded yet, instead of 1 s (up to 10 s); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.supercore.inflatable import inflatable_utils

    pulls = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)
    if not all({"initial_backoff", "backoff_cap"} <= (pull.__kwdefaults__ or {}).keys()
               for pull in pulls):
        return False
    for pull in pulls:
        pull.__kwdefaults__["initial_backoff"], pull.__kwdefaults__["backoff_cap"] = (
            OBJECT_PULL_BACKOFF)
    return True


class Changes:
    """Counts state changes that may end a hold; a held request sleeps on it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0

    def notify(self) -> None:
        """Something was stored: wake every held request to look again."""
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Until the count moves past ``seen``, or ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.count != seen, timeout)


def held(handler: Callable[..., Any], found: Callable[[Any], bool],
         changes: Changes | None = None) -> Callable[..., Any]:
    """``handler`` answering as soon as ``found(answer)``, after HOLD seconds
    at most; it looks again whenever ``changes`` is notified, and every
    HOLD_CHECK seconds in any case."""
    changes = changes or Changes()

    def hold_open(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + HOLD
        while True:
            seen = changes.count
            answer = handler(*args, **kwargs)
            left = deadline - time.monotonic()
            if found(answer) or left <= 0:
                return answer
            changes.wait(seen, min(left, HOLD_CHECK))

    hold_open.__wrapped__ = handler  # type: ignore[attr-defined]
    return hold_open


def notifying(function: Callable[..., Any], changes: Changes) -> Callable[..., Any]:
    """``function``, then ``changes.notify()``."""
    def and_notify(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            changes.notify()

    and_notify.__wrapped__ = function  # type: ignore[attr-defined]
    return and_notify


def _wrap(owner: object, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
          ) -> bool:
    """Replace ``owner.name`` by ``wrapper(it)`` (once); False if it is missing."""
    function = getattr(owner, name, None)
    if function is None:
        return False
    if not hasattr(function, "__wrapped__"):
        setattr(owner, name, wrapper(function))
    return True


def _hold(owner: object, name: str, found: Callable[[Any], bool], changes: Changes) -> bool:
    """Hold ``owner.name`` open until ``found`` (see :func:`held`)."""
    return _wrap(owner, name, lambda handler: held(handler, found, changes))


def _notify(owner: object, name: str, changes: Changes) -> bool:
    """Let ``owner.name`` wake the held requests when it returns."""
    return _wrap(owner, name, lambda function: notifying(function, changes))


def patch_superlink_waits() -> bool:
    """Hold SuperNodes' pulls for messages, and the ServerApp's for replies,
    open until a push stores one (call before the SuperLink starts); False
    if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.superlink.servicer.fleet import fleet_handlers
    from flwr.superlink.servicer.runtime import runtime_handlers

    def found(answer: Any) -> bool:
        return bool(answer.messages_list)

    changes = Changes()
    return all([_notify(fleet_handlers, "push_messages", changes),
                _notify(runtime_handlers, "push_messages", changes),
                _hold(fleet_handlers, "pull_messages", found, changes),
                _hold(runtime_handlers, "pull_messages", found, changes)])


class _ShorterSleeps:
    """Stands in for the ``time`` module: ``sleep`` of a listed length is shorter."""

    def __init__(self, shorter: dict[float, float]) -> None:
        self.shorter = shorter

    def sleep(self, seconds: float) -> None:
        time.sleep(self.shorter.get(seconds, seconds))

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def patch_supernode_waits() -> bool:
    """Shorten a SuperNode's waits (call before it starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.supernode import start_client_internal as loop

    waits = {3: SUPERLINK_PULL_INTERVAL, 0.5: REPLY_CHECK_INTERVAL}
    if not isinstance(loop.time, (ModuleType, _ShorterSleeps)) or not all(
            f"time.sleep({seconds})" in inspect.getsource(loop) for seconds in waits):
        return False
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
    from flwr.supernode.servicer.runtime import runtime_handlers

    changes = Changes()
    if not (patch_object_pulls() and _notify(InMemoryNodeState, "create_task", changes)
            and _hold(runtime_handlers, "acquire_task", lambda answer: bool(answer.token),
                      changes)):
        return False
    loop.time = _ShorterSleeps(waits)
    return True


def deliver_promptly(state: object, queue: Queue, nodes_mapping: dict,
                     f_stop: threading.Event) -> None:
    """Flower's delivery loop with a wait that adapts to the pass's cost."""
    while not f_stop.is_set():
        started = time.perf_counter()
        for node_id in nodes_mapping.keys():
            for message in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(message)
        busy = time.perf_counter() - started
        f_stop.wait(min(MAX_WAIT, max(MIN_WAIT, busy * (1 - BUSY_SHARE) / BUSY_SHARE)))


def patch_delivery() -> bool:
    """Use :func:`deliver_promptly` in the engine; False if Flower differs."""
    try:
        from flwr.server.superlink.fleet.vce import vce_api
    except ImportError:
        return False
    original = getattr(vce_api, "add_messages_to_queue", None)
    if original is deliver_promptly:
        return True
    expected = ["state", "queue", "nodes_mapping", "f_stop"]
    if original is None or list(inspect.signature(original).parameters) != expected:
        return False
    vce_api.add_messages_to_queue = deliver_promptly
    return True
