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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import flwr
from starlette.middleware import Middleware

from hl_flower.prompt_delivery import TESTED_FLWR  # the one Flower the patches were read from

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
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


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

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        await (self.scoped if self.applies(scope) else self.app)(scope, receive, send)


def scoped(layers: list[Middleware]) -> list[Middleware]:
    """``layers`` in the same order, each layer of :data:`SCOPES` wrapped in
    :class:`PathScoped` with its prefix."""
    return [Middleware(PathScoped, layer.cls, SCOPES[layer.cls.__name__],
                       *layer.args, **layer.kwargs)
            if getattr(layer.cls, "__name__", "") in SCOPES else layer
            for layer in layers]


def scope_superlink_middleware() -> bool:
    """Run the SuperLink's single-API layers only on their API's requests
    (call before the SuperLink starts); False if Flower differs."""
    if flwr.__version__ != TESTED_FLWR:
        return False
    from flwr.superlink import main

    get_middleware = getattr(main, "_get_middleware", None)
    if get_middleware is None:
        return False
    if hasattr(get_middleware, "__wrapped__"):
        return True
    names = [getattr(layer.cls, "__name__", "") for layer in get_middleware()]
    if not set(SCOPES) <= set(names):
        return False

    def get_scoped_middleware() -> list[Middleware]:
        return scoped(get_middleware())

    get_scoped_middleware.__wrapped__ = get_middleware  # type: ignore[attr-defined]
    main._get_middleware = get_scoped_middleware
    return True
