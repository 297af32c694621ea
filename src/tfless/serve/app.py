"""The ASGI app: TF Serving REST v1 and KServe V2 routes on one Starlette app, Prometheus
metrics, the structured access log, and errors as {"error": ...} with the right status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InputError, TflessError
from . import kserve_v2, rest_v1
from .errors import ClientGone, ServingError
from .http_body import error_response
from .metrics import CONTENT_TYPE, ServingMetrics
from .model_config import ModelSource, read_model_config_file, sources_from_path
from .options import ServeOptions
from .repository import Repository

log = logging.getLogger("tfless.serve")
access_log = logging.getLogger("tfless.serve.access")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class ServerState:
    repository: Repository
    options: ServeOptions
    metrics: ServingMetrics


def model_sources(options: ServeOptions) -> list[ModelSource]:
    if options.model_config_file:
        return read_model_config_file(options.model_config_file)
    if not options.path:
        raise InputError("give a model PATH or --model-config-file")
    return sources_from_path(options.path, options.model_name)


def load_repository(options: ServeOptions, metrics: ServingMetrics,
                    models: dict[str, Any] | None = None) -> Repository:
    """The models named by `options`, or only the already-built `models` when given."""
    sources = [] if models else model_sources(options)
    repository = Repository(sources, options, metrics, models)
    repository.load_initial()
    return repository


def _guard(endpoint: Endpoint) -> Endpoint:
    """Errors raised on purpose become {"error": ...} responses."""
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ClientGone as exc:  # nobody to answer; counted apart by RequestObserver
            request.state.disconnected = True
            return error_response(exc.http_status, exc.message)
        except ServingError as exc:
            return error_response(exc.http_status, exc.message)
        except InputError as exc:
            return error_response(400, str(exc))
        except TflessError as exc:
            return error_response(500, str(exc))
    return guarded


async def _metrics(request: Request) -> Response:
    return Response(request.app.state.server.metrics.exposition(), media_type=CONTENT_TYPE)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, f"Not found: {request.method} {request.url.path}")
    if exc.status_code == 405:
        return error_response(405, f"Method {request.method} is not allowed on "
                                   f"{request.url.path}")
    return error_response(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(500, f"Internal error: {type(exc).__name__}: {exc}")


def create_app(repository: Repository, options: ServeOptions,
               metrics: ServingMetrics) -> Starlette:
    """The app for a loaded repository; it starts polling on startup, unloads on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        repository.start_polling()
        yield
        await asyncio.to_thread(repository.close)

    v2_model = "/v2/models/{model}"
    v2_version = "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v1/{rest:path}", _guard(rest_v1.handle), methods=["GET", "POST"]),
        Route("/v2", _guard(kserve_v2.server_metadata), methods=["GET"]),
        Route("/v2/health/live", kserve_v2.live, methods=["GET"]),
        Route("/v2/health/ready", kserve_v2.ready, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/monitoring/prometheus/metrics", _metrics, methods=["GET"]),
    ]
    for base in (v2_model, v2_version):
        routes += [
            Route(base, _guard(kserve_v2.model_metadata), methods=["GET"]),
            Route(base + "/ready", _guard(kserve_v2.model_ready), methods=["GET"]),
            Route(base + "/config", _guard(kserve_v2.model_config), methods=["GET"]),
            Route(base + "/infer", _guard(kserve_v2.infer), methods=["POST"]),
        ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _unexpected})
    app.state.server = ServerState(repository, options, metrics)
    metrics.known_model = lambda name: name in repository.model_names()
    app.add_middleware(RequestObserver, metrics=metrics, log_access=options.access_log)
    return app


class RequestObserver:
    """Request metrics for model APIs, and one JSON access-log line per request."""

    def __init__(self, app: Any, metrics: ServingMetrics, log_access: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_access = log_access

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        status, sent = 500, 0

        async def observe_send(message: dict) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe_send)
        finally:
            seconds = time.perf_counter() - start
            model, version, api = state.get("model", ""), state.get("version", ""), state.get("api")
            if state.get("disconnected"):
                self.metrics.disconnects.labels(api or "other").inc()
            elif api:
                self.metrics.observe_request(model, version, api, status, seconds)
            if self.log_access:
                self._log(scope, status, sent, seconds, model, version, api)

    @staticmethod
    def _log(scope: dict, status: int, sent: int, seconds: float, model: str, version: str,
             api: str | None) -> None:
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        client = scope.get("client")
        record = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope["method"], "path": scope["path"], "status": status,
            "ms": round(seconds * 1000, 3),
            "bytes_in": int(length) if length.isdigit() else 0, "bytes_out": sent,
        }
        if api:
            record.update(model=model, version=version, api=api)
        access_log.info(orjson.dumps(record).decode())
