"""deploy.lean_middleware: the SuperLink's single-API layers run for their
API's requests only, every layer stays in its place, and nothing changes on
another Flower. (tests/test_deployment.py runs a SuperLink with the change:
SuperNode authentication on the Fleet API and ``flwr run`` on the Control
API still go through their layers.)"""

from __future__ import annotations

import asyncio

import pytest
from flwr.superlink import main as superlink_main

from deploy import lean_middleware
from deploy.lean_middleware import SCOPES, PathScoped, scope_superlink_middleware


class Recorder:
    """An ASGI layer that notes each path it sees, then calls the next layer."""

    def __init__(self, app, seen: list[str], tag: str = "layer") -> None:
        self.app, self.seen, self.tag = app, seen, tag

    async def __call__(self, scope, receive, send) -> None:
        self.seen.append(f"{self.tag}:{scope.get('path', scope['type'])}")
        await self.app(scope, receive, send)


async def _end(_scope, _receive, _send) -> None:
    return None


def call(app, scope: dict) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(_message: dict) -> None:
        return None

    asyncio.run(app(scope, receive, send))


@pytest.mark.parametrize("scope, runs_layer", [
    ({"type": "http", "path": "/v1/control/start-run", "root_path": ""}, True),
    ({"type": "http", "path": "/v1/fleet/pull-messages", "root_path": ""}, False),
    ({"type": "http", "path": "/v1/runtime/pull-messages", "root_path": ""}, False),
    ({"type": "http", "path": "/v1/fleet/pull-messages", "root_path": "/behind-proxy"}, True),
    ({"type": "lifespan"}, True),
])
def test_a_scoped_layer_runs_only_under_its_prefix(scope: dict, runs_layer: bool) -> None:
    seen: list[str] = []
    app = Recorder(_end, seen, "app")
    layer = PathScoped(app, Recorder, "/v1/control/", seen)
    call(layer, scope)
    where = scope.get("path", scope["type"])
    assert seen == ([f"layer:{where}"] if runs_layer else []) + [f"app:{where}"]


@pytest.fixture
def flower_middleware(monkeypatch: pytest.MonkeyPatch):
    """The SuperLink's own layer list, put back after the test."""
    original = getattr(superlink_main._get_middleware, "__wrapped__",
                       superlink_main._get_middleware)
    monkeypatch.setattr(superlink_main, "_get_middleware", original)
    return original


def test_the_single_api_layers_are_scoped_in_place(flower_middleware) -> None:
    assert scope_superlink_middleware() and scope_superlink_middleware()  # twice is once
    assert superlink_main._get_middleware.__wrapped__ is flower_middleware
    before, after = flower_middleware(), superlink_main._get_middleware()
    assert len(before) == len(after) == 8
    for old, new in zip(before, after, strict=True):
        if old.cls.__name__ in SCOPES:
            assert new.cls is PathScoped
            assert new.args[:2] == (old.cls, SCOPES[old.cls.__name__])
        else:  # the protobuf translation and the error translation: every request
            assert new.cls is old.cls and new.args == old.args and new.kwargs == old.kwargs
    assert sum(layer.cls is PathScoped for layer in after) == 6


def test_on_another_flower_nothing_changes(flower_middleware,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_middleware.flwr, "__version__", "1.43.0")
    assert scope_superlink_middleware() is False
    assert superlink_main._get_middleware is flower_middleware
