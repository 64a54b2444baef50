"""hl_flower.prompt_delivery's deployment patches: a held request answers as
soon as there is something, the patches change Flower only on the tested
version, and applying one twice is applying it once. Every Flower attribute
a test patches is put back afterwards (the ``flower_as_shipped`` fixture)."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import uvicorn
from flwr.supercore.exit import exit_handler
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
from flwr.supercore.object_store.sql_object_store import SqlObjectStore
from flwr.superlink.servicer.fleet import fleet_handlers
from flwr.superlink.servicer.runtime import runtime_handlers as link_runtime
from flwr.supernode import start_client_internal as supernode_loop
from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
from flwr.supernode.servicer.runtime import runtime_handlers

from hl_flower import prompt_delivery
from hl_flower.prompt_delivery import (
    HOLD,
    OBJECT_PULL_BACKOFF,
    STORED,
    TESTED_FLWR,
    Changes,
    held,
    patch_object_pulls,
    patch_superlink_waits,
    patch_supernode_waits,
    release_holds,
)

# What the patches wrap: (owner, attribute), a SuperLink's then a SuperNode's
SUPERLINK_WRAPPED = tuple((handlers, name) for handlers in (fleet_handlers, link_runtime)
                          for name in ("pull_messages", "push_messages", "pull_object",
                                       "push_object"))
SUPERNODE_WRAPPED = ((runtime_handlers, "acquire_task"), (runtime_handlers, "pull_object"),
                     (runtime_handlers, "push_messages"), (InMemoryNodeState, "create_task"),
                     (InMemoryObjectStore, "put"), (SqlObjectStore, "put"))
WRAPPED = SUPERLINK_WRAPPED + SUPERNODE_WRAPPED
PULLS = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)
PUSHES = (inflatable_utils.push_objects, inflatable_utils.push_object_contents_from_iterable)
FLOWER_BACKOFF = {"initial_backoff": 1, "backoff_cap": 10, "max_time": 7200,  # flwr 1.42's
                  "max_concurrent_pulls": 2}
FLOWER_PUSHES = {"max_concurrent_pushes": 2}


def flower_num_workers(max_concurrent: int) -> int:
    """Flower 1.42's ``get_num_workers``: no more threads than CPUs."""
    return min(max_concurrent, os.cpu_count() or 1)


class Handler:
    """A request handler whose answer is empty until its ``finds_on``-th call."""

    def __init__(self, finds_on: int | None) -> None:
        self.finds_on = finds_on
        self.calls: list[tuple[tuple, dict]] = []
        self.answers: list[list[str]] = []

    def __call__(self, *args: object, **kwargs: object) -> list[str]:
        self.calls.append((args, kwargs))
        self.answers.append(["a message"] if len(self.calls) == self.finds_on else [])
        return self.answers[-1]


def test_a_held_request_answers_as_soon_as_something_is_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 0.1)
    handler = Handler(finds_on=3)
    started = time.monotonic()
    answer = held(handler, bool, hold=10.0)("request", context="ctx")
    assert time.monotonic() - started < 5  # the third look, not the 10 s hold
    assert answer == ["a message"] and len(handler.calls) == 3
    assert handler.calls == [(("request",), {"context": "ctx"})] * 3


def test_a_held_request_gives_up_after_hold_with_the_last_empty_answer() -> None:
    handler = Handler(finds_on=None)
    started = time.monotonic()
    answer = held(handler, bool)("request")
    assert HOLD <= time.monotonic() - started < HOLD + 5  # generous: a loaded machine
    assert answer == [] and answer is handler.answers[-1] and len(handler.calls) >= 2


def test_a_held_request_looks_again_when_something_is_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A store (``Changes.notify``) ends the wait at once, not the next
    periodic look (made 10 s here)."""
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 10.0)
    changes, stored = Changes(), threading.Event()

    def store() -> None:
        time.sleep(0.2)
        stored.set()
        changes.notify()

    threading.Thread(target=store).start()
    started = time.monotonic()
    answer = held(lambda: ["a message"] if stored.is_set() else [], bool, changes,
                  hold=20.0)()
    assert answer == ["a message"] and time.monotonic() - started < 5  # not 10 s


def test_released_holds_answer_at_once_and_hold_no_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that stops releases its held requests (else a SuperNode
    waits 3 s for them, then cancels them with a traceback in its log)."""
    monkeypatch.setattr(prompt_delivery, "_RELEASED", threading.Event())  # this test's own
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 10.0)
    changes, answers = Changes(), []
    waiting = threading.Thread(target=lambda: answers.append(
        held(lambda: [], bool, changes, hold=20.0)()))
    waiting.start()
    time.sleep(0.2)
    release_holds()
    waiting.join(5)  # not the 10 s look nor the 20 s hold
    assert not waiting.is_alive() and answers == [[]]
    started = time.monotonic()
    assert held(lambda: [], bool, changes, hold=20.0)() == []
    assert time.monotonic() - started < 5


def test_a_superlink_signalled_to_stop_releases_its_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn (the SuperLink's server) waits for every open request before it
    stops; its signal handler first answers the held ones."""
    monkeypatch.setattr(prompt_delivery, "_RELEASED", threading.Event())  # this test's own
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 10.0)
    monkeypatch.setattr(uvicorn.Server, "handle_exit", uvicorn.Server.handle_exit)
    prompt_delivery.release_holds_when_uvicorn_stops()
    prompt_delivery.release_holds_when_uvicorn_stops()  # twice is once
    assert uvicorn.Server.handle_exit.__wrapped__.__name__ == "handle_exit"
    changes, answers = Changes(), []
    waiting = threading.Thread(target=lambda: answers.append(
        held(lambda: [], bool, changes, hold=20.0)()))
    waiting.start()
    time.sleep(0.2)
    server = uvicorn.Server(uvicorn.Config(app=None))
    server.handle_exit(signal.SIGTERM, None)
    waiting.join(5)  # not the 10 s look nor the 20 s hold
    assert not waiting.is_alive() and answers == [[]]
    assert server.should_exit


def test_a_patched_supernode_releases_its_holds_before_flower_stops_its_server(
        flower_as_shipped: SimpleNamespace) -> None:
    assert patch_supernode_waits() and patch_supernode_waits()
    first = [h for h in exit_handler.registered_exit_handlers if h.run_before_force_exit]
    assert [h.exit_handler for h in first].count(release_holds) == 1


def notify_later(changes: Changes, *keys: object, after: float = 0.2) -> None:
    def notify() -> None:
        time.sleep(after)
        changes.notify(*keys)

    threading.Thread(target=notify).start()


def test_a_held_request_wakes_only_for_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A push for node 2 does not make node 1's held pull look again (no
    handler call); a push for node 1 does, at once."""
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 10.0)
    changes, calls = Changes(), []

    def handler(request: dict) -> list[str]:
        calls.append(time.monotonic())
        return ["a message"] if changes.count(("node", 1)) else []

    started = time.monotonic()  # before the timers start: their waits end after it
    notify_later(changes, ("node", 2), after=0.2)
    notify_later(changes, ("node", 1), after=1.0)
    answer = held(handler, bool, changes, key=lambda args, _: ("node", args[0]["node"]),
                  hold=20.0)({"node": 1})
    assert answer == ["a message"] and time.monotonic() - started < 5  # not 10 s
    assert len(calls) == 2 and calls[1] - started >= 1.0  # not woken at 0.2 s


def test_a_supernode_waiting_for_a_reply_wakes_when_it_is_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SuperNode loop's 0.5 s look for its reply becomes a wait for the
    next store; its 3 s wait after an empty pull becomes 5 ms."""
    monkeypatch.setattr(prompt_delivery, "HOLD_CHECK", 10.0)
    changes = Changes()
    sleeps = prompt_delivery._PromptSleeps(changes)
    started = time.monotonic()
    sleeps.sleep(0.5)  # a thread's first wait returns at once: nothing missed
    sleeps.sleep(3)
    assert time.monotonic() - started < 1
    started = time.monotonic()  # before the timer starts: its store comes >= 0.3 s after
    notify_later(changes, STORED, after=0.3)
    sleeps.sleep(0.5)
    assert 0.3 <= time.monotonic() - started < 5  # woken by the store, not after 10 s


@pytest.fixture
def flower_as_shipped(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Flower's handlers, SuperNode loop and part-pull waits as flwr ships
    them (also when an earlier test in this process patched them), put back
    as they were after the test."""
    originals = SimpleNamespace()
    for owner, name in WRAPPED:
        handler = getattr(owner, name)
        original = getattr(handler, "__wrapped__", handler)
        monkeypatch.setattr(owner, name, original)
        setattr(originals, f"{getattr(owner, '__name__', owner)}.{name}", original)
    monkeypatch.setattr(supernode_loop, "time", time)
    for functions, defaults in ((PULLS, FLOWER_BACKOFF), (PUSHES, FLOWER_PUSHES)):
        for function in functions:
            for key, value in defaults.items():
                monkeypatch.setitem(function.__kwdefaults__, key, value)
    monkeypatch.setattr(inflatable_utils, "get_num_workers", flower_num_workers)
    return originals


def original(originals: SimpleNamespace, owner: object, name: str) -> object:
    return getattr(originals, f"{getattr(owner, '__name__', owner)}.{name}")


def flower_unchanged(originals: SimpleNamespace) -> bool:
    return (all(getattr(owner, name) is original(originals, owner, name)
                for owner, name in WRAPPED)
            and supernode_loop.time is time
            and all({key: function.__kwdefaults__[key] for key in defaults} == defaults
                    for functions, defaults in ((PULLS, FLOWER_BACKOFF), (PUSHES, FLOWER_PUSHES))
                    for function in functions)
            and inflatable_utils.get_num_workers is flower_num_workers)


@pytest.mark.parametrize("patch", [patch_superlink_waits, patch_supernode_waits,
                                   patch_object_pulls])
def test_on_another_flower_nothing_is_patched(patch, flower_as_shipped: SimpleNamespace,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_delivery.flwr, "__version__", "1.43.0")
    assert patch() is False
    assert flower_unchanged(flower_as_shipped)


def test_the_tested_flower_is_the_installed_one() -> None:
    """Otherwise the tests below test nothing (and the deployment is slow)."""
    assert prompt_delivery.flwr.__version__ == TESTED_FLWR


def test_superlink_patch_twice_is_once(flower_as_shipped: SimpleNamespace) -> None:
    assert patch_superlink_waits() and patch_superlink_waits()
    for owner, name in SUPERLINK_WRAPPED:
        assert getattr(owner, name).__wrapped__ is original(flower_as_shipped, owner, name)
    for owner, name in SUPERNODE_WRAPPED:
        assert getattr(owner, name) is original(flower_as_shipped, owner, name)


def test_supernode_patch_twice_is_once(flower_as_shipped: SimpleNamespace) -> None:
    assert patch_supernode_waits() and patch_supernode_waits()
    for owner, name in SUPERNODE_WRAPPED:
        assert getattr(owner, name).__wrapped__ is original(flower_as_shipped, owner, name)
    for owner, name in SUPERLINK_WRAPPED:
        assert getattr(owner, name) is original(flower_as_shipped, owner, name)
    prompt = supernode_loop.time
    assert isinstance(prompt, prompt_delivery._PromptSleeps)
    assert prompt.monotonic is time.monotonic  # the rest of `time` as it is
    for pull in PULLS:
        assert (pull.__kwdefaults__["initial_backoff"],
                pull.__kwdefaults__["backoff_cap"]) == OBJECT_PULL_BACKOFF


def test_object_pull_patch_twice_is_once(flower_as_shipped: SimpleNamespace) -> None:
    assert patch_object_pulls() and patch_object_pulls()
    for pull in PULLS:
        assert (pull.__kwdefaults__["initial_backoff"],
                pull.__kwdefaults__["backoff_cap"]) == OBJECT_PULL_BACKOFF
        assert pull.__kwdefaults__["max_time"] == prompt_delivery.OBJECT_PULL_MAX_TIME
        assert pull.__kwdefaults__["max_tries_per_object"] == 500  # the rest untouched


def test_a_packed_messages_three_parts_move_at_once(flower_as_shipped: SimpleNamespace
                                                    ) -> None:
    """Each of 3 pushes (and then 3 pulls) waits until all 3 have started:
    this ends only when they run at once (Flower's own limit is 2, and the
    CPU count; this machine may have 2 cores)."""
    assert patch_object_pulls()
    for transfer in ("push", "pull"):
        together = threading.Barrier(3, timeout=10)

        def arrive(*_: object, together: threading.Barrier = together) -> bytes:
            together.wait()  # BrokenBarrierError after 10 s: not 3 at once
            return b"content"

        if transfer == "push":
            inflatable_utils.push_object_contents_from_iterable(
                [(f"part-{i}", b"content") for i in range(3)], arrive)
        else:
            pulled = inflatable_utils.pull_objects([f"part-{i}" for i in range(3)], arrive)
            assert set(pulled) == {"part-0", "part-1", "part-2"}
