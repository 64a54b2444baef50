"""Fewer pass-through layers for each request the SuperLink serves.

Flower 1.42's SuperLink (``flwr/superlink/main.py::_get_middleware``) wraps
every HTTP request in eight Starlette ``BaseHTTPMiddleware`` layers. Four of
them act only on the Control API (paths under ``/v1/control/``: ``flwr run``,
``flwr ls``) and two only on the Fleet API (``/v1/fleet/``: SuperNode
authentication and event logs); on any other request each one only passes
it on, yet still costs a task group, memory streams and a wrapped request and
response. A deployed HL step sends about 20 requests through the SuperLink
(the ServerApp's message and reply, the SuperNode's pulls and pushes), and in
a profile of a deployed episode on 127.0.0.1 (py-spy, GIL samples) the
SuperLink's time went almost all to Starlette, FastAPI and anyio rather than
to Flower's handlers.

:func:`scope_superlink_middleware` keeps every layer and its order but runs
each of those six only for requests under the prefix it acts on
(:class:`PathScoped`); the others go straight to the next layer, as they did
through the layer. Call it before the SuperLink starts
(``python -m deploy.superlink``). On a Flower other than the tested version,
or one whose layers differ, it changes nothing and returns False.

The two layers every request goes through, in the SuperLink and in each
SuperNode, are Flower's error translation (``http_error_translator``: a
``FlowerError`` or any other exception becomes Flower's JSON error) and its
protobuf translation (``ProtobufTranslationMiddleware``: the request body
parsed into the handler's protobuf request, the handler's result serialized
as the response). Both run as ``BaseHTTPMiddleware``. :class:`ErrorTranslation`
and :class:`ProtobufTranslation` run the same Flower code as plain ASGI layers:
Flower's own ``http_error_translator`` builds the error response, and Flower's
own ``ProtobufTranslationMiddleware.dispatch`` parses and serializes, given a
``call_next`` that buffers the handler's placeholder response instead of a
task group and memory streams. :func:`scope_superlink_middleware` puts them in
place of the two layers in the SuperLink, :func:`lean_supernode_middleware`
in the SuperNode (``python -m deploy.supernode``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import flwr
from flwr.supercore.error import http_error_translator
from flwr.supercore.protobuf.translation import (
    PROTOBUF_REQUEST_TYPES,
    ProtobufTranslationMiddleware,
)
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from hl_flower.prompt_delivery import TESTED_FLWR, wrap_once  # TESTED_FLWR: the patches' Flower

CONTROL, FLEET = "/v1/control/", "/v1/fleet/"
# Each layer acting on one API only (read from flwr 1.42.0's source: its
# dispatch passes any other path straight to call_next), and that API's prefix.
SCOPES = {
    "ControlSensitiveResponseMiddleware": CONTROL,
    "ControlAuthenticationMiddleware": CONTROL,
    "ControlLicenseMiddleware": CONTROL,
    "ControlEventLogMiddleware": CONTROL,
    "NodeAuthMiddleware": FLEET,
    "FleetEventLogMiddleware": FLEET,
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PathScoped:
    """An ASGI layer running ``middleware_class`` (built on ``app`` with
    ``args`` and ``kwargs``) for HTTP requests whose path starts with
    ``prefix``, and passing every other request to ``app`` directly."""

    def __init__(self, app: ASGIApp, middleware_class: type, prefix: str,
                 *args: Any, **kwargs: Any) -> None:
        self.app = app
        self.prefix = prefix
        self.scoped: ASGIApp = middleware_class(app, *args, **kwargs)

    def applies(self, scope: Scope) -> bool:
        """Whether the layer acts on this request (and on anything that is not
        a plain HTTP request, or that has a root path, to be safe)."""
        return (scope.get("type") != "http" or bool(scope.get("root_path"))
                or str(scope.get("path", "")).startswith(self.prefix))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.scoped if self.applies(scope) else self.app)(scope, receive, send)


class ErrorTranslation:
    """Flower's ``http_error_translator`` as a plain ASGI layer: an exception
    raised below it before the response started becomes the response
    ``http_error_translator`` gives for it (Flower's JSON error, status and
    headers); responses, streamed ones included, pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:  # pylint: disable=broad-exception-caught
            if started:
                raise
            caught = error

            async def raising(_request: Request) -> Response:
                raise caught

            response = await http_error_translator(Request(scope, receive), raising)
            await response(scope, receive, send)


class ProtobufTranslation:
    """Flower's ``ProtobufTranslationMiddleware`` as a plain ASGI layer: for a
    protobuf route its own ``dispatch`` parses the request and serializes the
    handler's result; the handler's placeholder response (or JSON error) is
    buffered for it. Any other request passes straight through, as Flower's
    ``dispatch`` passes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.flower = ProtobufTranslationMiddleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http"
                or (scope.get("method"), scope.get("path")) not in PROTOBUF_REQUEST_TYPES):
            await self.app(scope, receive, send)
            return

        async def call_next(request: Request) -> Response:
            body = await request.body()  # read by dispatch already: cached
            delivered = False

            async def receive_body() -> Any:
                nonlocal delivered
                if delivered:
                    return await receive()
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}

            start: dict[str, Any] = {}
            chunks: list[bytes] = []

            async def keep(message: Any) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await self.app(request.scope, receive_body, keep)
            response = Response(b"".join(chunks), status_code=start["status"])
            response.raw_headers = list(start.get("headers", []))
            return response

        response = await self.flower.dispatch(Request(scope, receive), call_next)
        await response(scope, receive, send)


def is_error_translation(layer: Middleware) -> bool:
    """Whether ``layer`` is Flower's ``http_error_translator`` layer."""
    return layer.cls is BaseHTTPMiddleware and layer.kwargs.get("dispatch") is http_error_translator


def is_protobuf_translation(layer: Middleware) -> bool:
    """Whether ``layer`` is Flower's ``ProtobufTranslationMiddleware`` layer."""
    return layer.cls is ProtobufTranslationMiddleware and not layer.args and not layer.kwargs


def lean(layers: list[Middleware]) -> list[Middleware]:
    """``layers`` in the same order, Flower's error and protobuf translation
    layers replaced by :class:`ErrorTranslation` and :class:`ProtobufTranslation`."""
    return [Middleware(ErrorTranslation) if is_error_translation(layer)
            else Middleware(ProtobufTranslation) if is_protobuf_translation(layer)
            else layer for layer in layers]


def has_both_translations(layers: list[Middleware]) -> bool:
    """Whether ``layers`` hold Flower's two translation layers once each."""
    return (sum(map(is_error_translation, layers)) == 1
            and sum(map(is_protobuf_translation, layers)) == 1)


def scoped(layers: list[Middleware]) -> list[Middleware]:
    """``layers`` in the same order, each layer of :data:`SCOPES` wrapped in
    :class:`PathScoped` with its prefix, and the two translation layers lean
    (:func:`lean`)."""
    return lean([Middleware(PathScoped, layer.cls, SCOPES[layer.cls.__name__],
                            *layer.args, **layer.kwargs)
                 if getattr(layer.cls, "__name__", "") in SCOPES else layer
                 for layer in layers])


def scope_superlink_middleware() -> bool:
    """Run the SuperLink's single-API layers only on their API's requests
    (call before the SuperLink starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.superlink import main

    def applies(get_middleware: Callable[[], list[Middleware]]) -> bool:
        layers = get_middleware()
        names = {getattr(layer.cls, "__name__", "") for layer in layers}
        return set(SCOPES) <= names and has_both_translations(layers)

    def scoped_of(get_middleware: Callable[[], list[Middleware]]) -> Callable[..., Any]:
        return lambda: scoped(get_middleware())

    return wrap_once(main, "_get_middleware", scoped_of, applies)


def lean_supernode_middleware() -> bool:
    """Make the SuperNode's two translation layers lean (:func:`lean`) in
    every app ``flwr.supernode.main.create_app`` builds from now on (call
    before the SuperNode starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.supernode import main

    def lean_of(create_app: Callable[..., Any]) -> Callable[..., Any]:
        def create_lean_app(*args: Any, **kwargs: Any) -> Any:
            app = create_app(*args, **kwargs)
            app.user_middleware[:] = lean(app.user_middleware)
            return app
        return create_lean_app

    return wrap_once(main, "create_app", lean_of,
                     lambda create_app: has_both_translations(create_app().user_middleware))
