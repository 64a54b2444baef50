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
the SuperLink's CPU. So every request that waits for something is held open
instead (long polling) and answered as soon as there is something, and the
process's own waits end when what they wait for is stored:

- a SuperNode's pull of its next message from the SuperLink (Flower: again
  3 s after an empty pull): the SuperLink holds it up to 10 s and answers as
  soon as the ServerApp pushes a message for that node; the SuperNode pulls
  again 5 ms after an answer: one request every 10 s from an idle SuperNode.
- the ServerApp's pull for replies (HL's own loop; Flower's
  ``send_and_receive`` pulls every 3 s): held up to 2 s until a SuperNode
  pushes a reply of that run; the ServerApp pulls again at once (from a
  SuperLink that answers at once, no hold, every 0.02 s).
- a pull of a message part (the model's arrays) that is not uploaded yet
  (Flower: pulled again after 1 s, doubling up to 10 s): held by the
  SuperLink, or by the SuperNode for its worker, until the part is stored
  (2 s at most); a message's parts move 4 at a time (Flower: 2, and no more
  than the CPU count), so a packed message's 3 parts take one round;
  a part still missing after the hold is pulled again after 5 ms, doubling
  up to 50 ms, and a message whose parts are not all there within 60 s
  fails (Flower: two hours; a sender that died mid-message).
- a worker's request for its next task (``deploy.clientapp_worker``; the
  stock SuperExec asks every 1 s): the SuperNode holds it (10 s at most)
  until it creates a task. A SuperNode that stops answers every request it
  holds first (:func:`release_holds`, one of Flower's exit handlers), so its
  server does not wait 3 s for them and cancel them with a traceback; a
  SuperLink that stops does the same (:func:`release_holds_when_uvicorn_stops`)
  instead of waiting for its SuperNodes' held pulls.
- a SuperNode's wait for its ClientApp's reply and for the reply's parts
  (Flower: it looks every 0.5 s) ends as soon as the worker pushes them.

A hold wakes only for what its request waits for (a message for its node,
a reply of its run, a stored part), so a push to one of 10 SuperNodes does
not make the other 9 held pulls look again. Every wait also looks every
2 s in any case, for what arrives another way (a SuperNode that dies, a
run that stops). An idle SuperLink with 10 SuperNodes and their workers on
127.0.0.1 uses 4.0% of a core (9.4% with one condition for all keys, 2 s
holds and 0.5 s looks; ``python benchmarks/deploy_idle.py``).

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
import weakref
from collections.abc import Callable, Hashable, Iterable
from queue import Queue
from types import ModuleType
from typing import Any

import flwr
from flwr.serverapp import Grid
from flwr.supercore.exit import add_exit_handler

TESTED_FLWR = "1.42.0"  # the Flower whose deployment waits are patched
PULL_INTERVAL = 0.005  # seconds between reply pulls in simulation (Flower: 0.1)
MIN_WAIT, MAX_WAIT = 0.005, 0.1  # delivery loop waits (Flower: always 0.1)
BUSY_SHARE = 0.2  # wait 4x as long as a pass took: polling <= 20% of a core
DEPLOYED_PULL_INTERVAL = 0.02  # ServerApp's seconds between reply pulls in deployment
SUPERLINK_PULL_INTERVAL = 0.005  # SuperNode's seconds between pulls, each held (Flower: 3)
OBJECT_PULL_BACKOFF = (0.005, 0.05)  # first and longest wait for a part (Flower: 1, 10)
OBJECT_TRANSFERS = 4  # a message's parts pushed or pulled at once (Flower: min(2, CPUs))
OBJECT_PULL_MAX_TIME = 60.0  # seconds a message's parts may take in all (Flower: 7200);
# a held try lasts up to HOLD, so Flower's 500 tries alone would allow ~1,000 s
HOLD = 2.0  # seconds a pull of a reply or of a message part is held open
IDLE_HOLD = 10.0  # seconds a SuperNode's pull of its next message, or a worker's ask
# for its next task, is held open (what an idle node waits for)
HOLD_CHECK = 2.0  # a held request looks at least this often
OBJECTS = "objects"  # what a held pull of a message part waits for
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
    """Move a message's parts promptly: wait 0.005 s (doubling up to 0.05 s)
    for a part that is not uploaded yet, instead of 1 s (up to 10 s); give up
    on a message's parts after OBJECT_PULL_MAX_TIME seconds instead of two
    hours (a sender that died mid-message); and push or pull up to
    OBJECT_TRANSFERS parts at once (Flower: 2, and no more than the CPU count),
    so a packed message's 3 parts take one round of requests, not two.
    False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.supercore.inflatable import inflatable_utils

    pulls = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)
    pushes = (inflatable_utils.push_objects,
              inflatable_utils.push_object_contents_from_iterable)
    wanted = {"initial_backoff", "backoff_cap", "max_time", "max_concurrent_pulls"}
    if not (all(wanted <= (pull.__kwdefaults__ or {}).keys() for pull in pulls)
            and all("max_concurrent_pushes" in (push.__kwdefaults__ or {}) for push in pushes)
            and callable(getattr(inflatable_utils, "get_num_workers", None))):
        return False
    for pull in pulls:
        pull.__kwdefaults__["initial_backoff"], pull.__kwdefaults__["backoff_cap"] = (
            OBJECT_PULL_BACKOFF)
        pull.__kwdefaults__["max_time"] = OBJECT_PULL_MAX_TIME
        pull.__kwdefaults__["max_concurrent_pulls"] = OBJECT_TRANSFERS
    for push in pushes:
        push.__kwdefaults__["max_concurrent_pushes"] = OBJECT_TRANSFERS
    inflatable_utils.get_num_workers = _transfers_at_once
    return True


def _transfers_at_once(max_concurrent: int) -> int:
    """Threads for a message's part transfers: ``max_concurrent``, whatever
    the CPU count (they wait on the network, not on a core)."""
    return max_concurrent


Key = Hashable  # what a held request waits for: a node's messages, a run's replies, ...
KeyOf = Callable[[tuple, dict], Key]
KeysOf = Callable[[tuple, dict], Iterable[Key]]


def _always(key: Key) -> KeyOf:
    """A request's key that is the same for every request: ``key``."""
    return lambda _args, _kwargs: key


def _always_all(*keys: Key) -> KeysOf:
    """The keys a store notifies whatever its arguments: ``keys``."""
    return lambda _args, _kwargs: keys


_everything, _everyone = _always(None), _always_all(None)


class Changes:
    """Counts stores per key; a held request sleeps until its key's count
    moves. Each key has its own condition, so a store wakes only the
    requests held for its key (with one condition for all, every store woke
    every held request of the server, each to look at its own count and
    sleep again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, int] = {}
        self._conditions: dict[Key, threading.Condition] = {}
        _EVERY_CHANGES.add(self)

    def count(self, key: Key = None) -> int:
        """How many stores of ``key`` were notified so far."""
        with self._lock:
            return self._counts.get(key, 0)

    def notify(self, *keys: Key) -> None:
        """Something of ``keys`` (default: the one unnamed key) was stored:
        wake the requests held for them to look again."""
        with self._lock:
            for key in keys or (None,):
                self._counts[key] = self._counts.get(key, 0) + 1
                if key in self._conditions:
                    self._conditions[key].notify_all()

    def wait(self, seen: int, timeout: float, key: Key = None) -> None:
        """Until the count of ``key`` moves past ``seen``, the holds are
        released, or ``timeout`` seconds."""
        with self._lock:
            condition = self._conditions.setdefault(key, threading.Condition(self._lock))
            condition.wait_for(lambda: self._counts.get(key, 0) != seen or _RELEASED.is_set(),
                               timeout)

    def wake_all(self) -> None:
        """Wake every request held on any key."""
        with self._lock:
            for condition in self._conditions.values():
                condition.notify_all()


_RELEASED = threading.Event()  # set when the server stops: holds answer at once
_EVERY_CHANGES: weakref.WeakSet[Changes] = weakref.WeakSet()
_RELEASE_ON_EXIT = threading.Event()  # release_holds is one of Flower's exit handlers


def release_holds() -> None:
    """Answer every held request now, and hold none from now on: a server
    that stops waits for its open requests (a SuperNode 3 s, then it
    cancels them with a traceback in its log)."""
    _RELEASED.set()
    for changes in list(_EVERY_CHANGES):
        changes.wake_all()


def held(handler: Callable[..., Any], found: Callable[[Any], bool],
         changes: Changes | None = None, key: KeyOf = _everything,
         hold: float = HOLD) -> Callable[..., Any]:
    """``handler`` answering as soon as ``found(answer)``, after ``hold`` seconds
    at most; it looks again whenever ``changes`` is notified of
    ``key(args, kwargs)`` (its request's key), and every HOLD_CHECK seconds
    in any case."""
    changes = changes or Changes()

    def hold_open(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + hold
        waits_for = key(args, kwargs)
        while True:
            seen = changes.count(waits_for)
            answer = handler(*args, **kwargs)
            left = deadline - time.monotonic()
            if found(answer) or left <= 0 or _RELEASED.is_set():
                return answer
            changes.wait(seen, min(left, HOLD_CHECK), waits_for)

    hold_open.__wrapped__ = handler  # type: ignore[attr-defined]
    return hold_open


def notifying(function: Callable[..., Any], changes: Changes,
              keys: KeysOf = _everyone) -> Callable[..., Any]:
    """``function``, then ``changes.notify(*keys(args, kwargs))``."""
    def and_notify(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            changes.notify(*keys(args, kwargs))

    and_notify.__wrapped__ = function  # type: ignore[attr-defined]
    return and_notify


def wrap_once(owner: object, name: str,
              wrapper: Callable[[Callable[..., Any]], Callable[..., Any]],
              applies: Callable[[Callable[..., Any]], bool] = lambda _function: True
              ) -> bool:
    """Replace ``owner.name`` by ``wrapper(it)``, its ``__wrapped__`` set to
    the original, once, and only if ``applies(it)``. True if it is wrapped
    (now or before); False if it is missing or ``applies`` says no."""
    function = getattr(owner, name, None)
    if function is None:
        return False
    if hasattr(function, "__wrapped__"):
        return True
    if not applies(function):
        return False
    wrapped = wrapper(function)
    wrapped.__wrapped__ = function  # type: ignore[attr-defined]
    setattr(owner, name, wrapped)
    return True


def _hold(owner: object, name: str, found: Callable[[Any], bool], changes: Changes,
          key: KeyOf = _everything, hold: float = HOLD) -> bool:
    """Hold ``owner.name`` open until ``found`` (see :func:`held`)."""
    return wrap_once(owner, name, lambda handler: held(handler, found, changes, key, hold))


def _notify(owner: object, name: str, changes: Changes, keys: KeysOf = _everyone) -> bool:
    """Let ``owner.name`` wake the requests held for ``keys`` when it returns."""
    return wrap_once(owner, name, lambda function: notifying(function, changes, keys))


def _request(args: tuple, kwargs: dict) -> Any:
    """A handler's request: its first argument (Flower passes it by position
    to the Runtime API's handlers and by name to the Fleet API's)."""
    return kwargs["request"] if "request" in kwargs else args[0]


def _task(args: tuple, kwargs: dict) -> Any:
    """A Runtime API handler's task (its third argument)."""
    return kwargs["task"] if "task" in kwargs else args[2]


def _part_stored(answer: Any) -> bool:
    """A pull of a message part is answered when the part is there, or when
    it will never be (an unknown part: Flower's error path)."""
    return answer.object_available or not answer.object_found


def _messages_found(answer: Any) -> bool:
    return bool(answer.messages_list)


def patch_superlink_waits() -> bool:
    """Hold SuperNodes' pulls for messages and parts, and the ServerApp's
    for replies and parts, open until a push stores one (call before the
    SuperLink starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.superlink.servicer.fleet import fleet_handlers as fleet
    from flwr.superlink.servicer.runtime import runtime_handlers as runtime

    def for_nodes(args: tuple, kwargs: dict) -> Iterable[Key]:
        return {("node", m.metadata.dst_node_id) for m in _request(args, kwargs).messages_list}

    def for_runs(args: tuple, kwargs: dict) -> Iterable[Key]:
        return {("run", m.metadata.run_id) for m in _request(args, kwargs).messages_list}

    def node_of(args: tuple, kwargs: dict) -> Key:
        return ("node", _request(args, kwargs).node.node_id)

    def run_of(args: tuple, kwargs: dict) -> Key:
        return ("run", _task(args, kwargs).run_id)

    changes, stored_parts, parts = Changes(), _always_all(OBJECTS), _always(OBJECTS)
    if not all([_notify(runtime, "push_messages", changes, for_nodes),
                _notify(fleet, "push_messages", changes, for_runs),
                _notify(runtime, "push_object", changes, stored_parts),
                _notify(fleet, "push_object", changes, stored_parts),
                _hold(fleet, "pull_messages", _messages_found, changes, node_of, IDLE_HOLD),
                _hold(runtime, "pull_messages", _messages_found, changes, run_of),
                _hold(fleet, "pull_object", _part_stored, changes, parts),
                _hold(runtime, "pull_object", _part_stored, changes, parts)]):
        return False
    release_holds_when_uvicorn_stops()
    return True


def release_holds_when_uvicorn_stops() -> None:
    """Have uvicorn's signal handler (SIGINT, SIGTERM) start
    :func:`release_holds` before its graceful shutdown, which waits for every
    open request: the SuperLink serves with ``uvicorn.run`` in its main
    thread, and without this a stop waits for its SuperNodes' held pulls
    (10 s). Released from a new thread: a signal handler must not wait for
    a lock a held request's thread may hold (once per process)."""
    import uvicorn

    def releasing(handle_exit: Callable[..., None]) -> Callable[..., None]:
        def release_then_exit(self: uvicorn.Server, sig: int, frame: Any) -> None:
            threading.Thread(target=release_holds, name="release-holds", daemon=True).start()
            handle_exit(self, sig, frame)
        return release_then_exit

    wrap_once(uvicorn.Server, "handle_exit", releasing)


STORED = "stored"  # a SuperNode's reply or part: what its own loop waits for
TASK = "task"  # a SuperNode's new task: what a held request of its worker waits for


class _PromptSleeps:
    """Stands in for the ``time`` module in a SuperNode's loop: its 3 s
    sleep after an empty pull lasts SUPERLINK_PULL_INTERVAL, and its 0.5 s
    sleeps (waiting for the ClientApp's reply, or for a part of it) last
    until ``changes`` is notified of a store, HOLD_CHECK at most."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self._seen = threading.local()  # the count at the thread's last wake

    def sleep(self, seconds: float) -> None:
        if seconds == 3:
            time.sleep(SUPERLINK_PULL_INTERVAL)
            return
        if seconds != 0.5:
            time.sleep(seconds)
            return
        # The first wait of a thread returns at once (it has seen no count):
        # a store between the loop's look and this call is never missed.
        self.changes.wait(getattr(self._seen, "count", -1), HOLD_CHECK, STORED)
        self._seen.count = self.changes.count(STORED)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def patch_supernode_waits() -> bool:
    """Shorten a SuperNode's waits (call before it starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.supernode import start_client_internal as loop

    if not isinstance(loop.time, (ModuleType, _PromptSleeps)) or not all(
            f"time.sleep({seconds})" in inspect.getsource(loop) for seconds in (3, 0.5)):
        return False
    from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
    from flwr.supercore.object_store.sql_object_store import SqlObjectStore
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
    from flwr.supernode.servicer.runtime import runtime_handlers as runtime

    changes = Changes()
    if not (patch_object_pulls()
            and _notify(InMemoryNodeState, "create_task", changes, _always_all(TASK))
            and all(_notify(store, "put", changes, _always_all(OBJECTS, STORED))
                    for store in (InMemoryObjectStore, SqlObjectStore))
            and _notify(runtime, "push_messages", changes, _always_all(STORED))
            and _hold(runtime, "acquire_task", lambda answer: bool(answer.token), changes,
                      _always(TASK), IDLE_HOLD)
            and _hold(runtime, "pull_object", _part_stored, changes, _always(OBJECTS))):
        return False
    if not isinstance(loop.time, _PromptSleeps):
        loop.time = _PromptSleeps(changes)
    release_holds_on_exit()
    return True


def release_holds_on_exit() -> None:
    """Have Flower's graceful exit (SIGINT, SIGTERM) call :func:`release_holds`
    before its own exit handlers, which stop the servers (once per process)."""
    if not _RELEASE_ON_EXIT.is_set():
        _RELEASE_ON_EXIT.set()
        add_exit_handler(release_holds, run_before_force_exit=True)


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
