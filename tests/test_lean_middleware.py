"""deploy.lean_middleware: the SuperLink's single-API layers run for their
API's requests only, every layer stays in its place, the plain-ASGI
translation layers answer every request as Flower's own layers do, and
nothing changes on another Flower. (tests/test_deployment.py runs a SuperLink
and SuperNodes with the change: SuperNode authentication on the Fleet API,
``flwr run --stream`` on the Control API, the workers on the Runtime API.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.superlink import main as superlink_main
from flwr.supernode import main as supernode_main
from flwr.supernode.nodestate import NodeStateFactory
from flwr.supernode.servicer.runtime import runtime_handlers

from deploy import lean_middleware
from deploy.lean_middleware import (
    SCOPES,
    ErrorTranslation,
    PathScoped,
    ProtobufTranslation,
    lean,
    lean_supernode_middleware,
    scope_superlink_middleware,
)


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
        elif old.cls.__name__ == "ProtobufTranslationMiddleware":
            assert new.cls is ProtobufTranslation and not new.args and not new.kwargs
        else:  # the error translation
            assert old.kwargs["dispatch"].__name__ == "http_error_translator"
            assert new.cls is ErrorTranslation and not new.args and not new.kwargs
    assert sum(layer.cls is PathScoped for layer in after) == 6


def test_on_another_flower_nothing_changes(flower_middleware,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_middleware.flwr, "__version__", "1.43.0")
    assert scope_superlink_middleware() is False
    assert superlink_main._get_middleware is flower_middleware


def flower_supernode_app(**kwargs: object):
    """The SuperNode's app as Flower builds it (also when this process
    patched ``create_app``)."""
    create_app = getattr(supernode_main.create_app, "__wrapped__", supernode_main.create_app)
    return create_app(**kwargs)


def lean_supernode_app(**kwargs: object):
    app = flower_supernode_app(**kwargs)
    app.user_middleware[:] = lean(app.user_middleware)
    return app


def ask(app, method: str, path: str, body: bytes = b"",
        content_type: str = "application/protobuf") -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.request(method, path, content=body,
                                        headers={"content-type": content_type})

    return asyncio.run(request())


def raising_handlers(*_args: object) -> None:
    raise RuntimeError("a handler bug")


EMPTY = AcquireTaskRequest().SerializeToString()
REQUESTS = {  # what is asked, and of which app (a NodeState or none; handlers that raise)
    "a protobuf answer": ("POST", "/v1/runtime/acquire-task", EMPTY, "application/protobuf",
                          "state"),
    "a FlowerError": ("POST", "/v1/runtime/acquire-task", EMPTY, "application/protobuf", ""),
    "a wrong content type": ("POST", "/v1/runtime/acquire-task", EMPTY, "text/plain", "state"),
    "a body that is not protobuf": ("POST", "/v1/runtime/acquire-task", b"\xff\xff\xff",
                                    "application/protobuf", "state"),
    "a handler that raises": ("POST", "/v1/runtime/acquire-task", EMPTY,
                              "application/protobuf", "state raising"),
    "a route outside the protobuf APIs": ("GET", "/health", b"", "text/plain", "state"),
    "no such route": ("POST", "/v1/runtime/no-such-rpc", EMPTY, "application/protobuf",
                      "state"),
}


@pytest.mark.parametrize("case", REQUESTS)
def test_the_lean_translation_layers_answer_as_flowers_own(case: str) -> None:
    """Status, content type and body equal, request for request, between the
    SuperNode app with Flower's two ``BaseHTTPMiddleware`` layers and with
    :class:`ErrorTranslation` and :class:`ProtobufTranslation`."""
    method, path, body, content_type, setup = REQUESTS[case]
    answers = []
    for build in (flower_supernode_app, lean_supernode_app):
        kwargs = ({"state_factory": NodeStateFactory(ObjectStoreFactory())}
                  if "state" in setup else {})
        app = build(**kwargs)
        if "raising" in setup:
            app.state.runtime_handlers = SimpleNamespace(acquire_task=raising_handlers)
        answer = ask(app, method, path, body, content_type)
        answers.append((answer.status_code, answer.headers.get("content-type"),
                        answer.content))
    assert answers[0] == answers[1]
    status = answers[0][0]
    assert (status == 200) == (case in ("a protobuf answer",
                                        "a route outside the protobuf APIs"))


@pytest.fixture
def flower_create_app(monkeypatch: pytest.MonkeyPatch):
    """The SuperNode's own ``create_app``, put back after the test."""
    original = getattr(supernode_main.create_app, "__wrapped__", supernode_main.create_app)
    monkeypatch.setattr(supernode_main, "create_app", original)
    return original


def test_the_supernode_gets_the_lean_layers_in_place(flower_create_app) -> None:
    assert lean_supernode_middleware() and lean_supernode_middleware()  # twice is once
    assert supernode_main.create_app.__wrapped__ is flower_create_app
    layers = supernode_main.create_app(state_factory=None).user_middleware
    assert [layer.cls for layer in layers] == [ErrorTranslation, ProtobufTranslation]
    assert runtime_handlers is supernode_main.create_app().state.runtime_handlers


def test_on_another_flower_the_supernode_keeps_its_layers(
        flower_create_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_middleware.flwr, "__version__", "1.43.0")
    assert lean_supernode_middleware() is False
    assert supernode_main.create_app is flower_create_app
