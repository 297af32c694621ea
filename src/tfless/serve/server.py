"""Running the app under Uvicorn: one process, or several workers sharing the socket.

Models are loaded before the socket is bound, so a bad model fails the command with one
clear line and a started server is ready. SIGTERM stops taking connections, lets requests
in flight finish, then unloads the models and exits 0.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import inspect
import logging
import os
import signal
import socket
import sys
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from threadpoolctl import threadpool_limits
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from ..errors import InputError
from .app import create_app, load_repository
from .metrics import ServingMetrics
from .options import ServeOptions

OPTIONS_ENV = "TFLESS_SERVE_OPTIONS"
log = logging.getLogger("tfless.serve")


def configure_logging(level: str = "INFO") -> None:
    """Server events as text lines, access log as one JSON object per line, on stderr."""
    events = logging.StreamHandler(sys.stderr)
    events.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tfless.serve")
    logger.handlers[:] = [events]
    logger.setLevel(level)
    logger.propagate = False
    access = logging.StreamHandler(sys.stderr)
    access.setFormatter(logging.Formatter("%(message)s"))
    access_logger = logging.getLogger("tfless.serve.access")
    access_logger.handlers[:] = [access]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def limit_blas_threads(options: ServeOptions) -> None:
    """Batch threads x BLAS threads = cores. Several model calls run at once, each on its
    own batch thread; if each also started a full set of BLAS threads they would spin
    against each other (measured: 7x fewer requests/s with batching on 2 cores)."""
    cores = os.cpu_count() or 1
    threadpool_limits(limits=max(1, cores // options.num_batch_threads), user_api="blas")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the limits bad clients need: at most
    `max_connections` open connections (more are closed as they are accepted) and
    `header_timeout` seconds for a request's headers to arrive, on a new connection and
    after each response (uvicorn itself only times out idle keep-alive connections, so
    1,000 connections that never sent a byte stayed open for good)."""

    options = ServeOptions()  # replaced in each process before the server starts
    metrics: ServingMetrics | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.options.max_connections:
            if self.metrics is not None:
                self.metrics.connections_refused.inc()
            transport.abort()
            return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.options.header_timeout,
                                                      self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:  # still waiting for headers
            if self.metrics is not None:
                self.metrics.connections_timed_out.inc()
            self.transport.close()

    def handle_events(self) -> None:
        scope = self.scope
        super().handle_events()
        if self.scope is not scope:  # a request's headers arrived
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def _guard_connections(options: ServeOptions, metrics: ServingMetrics) -> None:
    GuardedH11Protocol.options = options
    GuardedH11Protocol.metrics = metrics


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own heap arena and keeps each at its
    high-water mark: a server parsing large JSON bodies on several worker threads grew by
    ~50 MB per thread that had seen one. Two arenas (set before the threads start) bound
    that (measured on 8 x 6.5 MB requests: peak 195 -> 155 MB, settled 148 -> 120 MB).
    MALLOC_ARENA_MAX in the environment takes precedence; other C libraries are left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    except OSError:
        return
    if mallopt is not None:
        mallopt(M_ARENA_MAX, arenas)


def app_from_environment() -> Starlette:
    """App factory for uvicorn worker processes: options come from the parent's environment."""
    options = ServeOptions.from_dict(orjson.loads(os.environ[OPTIONS_ENV]))
    limit_malloc_arenas()
    configure_logging()
    limit_blas_threads(options)
    metrics = ServingMetrics()
    _guard_connections(options, metrics)
    return create_app(load_repository(options, metrics), options, metrics)


def serve(options: ServeOptions, models: dict[str, Any] | None = None) -> int:
    """Serve until SIGTERM; `models` (name -> built Model) replaces loading from options.path."""
    if models and options.workers > 1:
        raise InputError("in-memory models are served by one worker; use workers=1")
    limit_malloc_arenas()
    configure_logging()
    limit_blas_threads(options)
    metrics = ServingMetrics()
    repository = load_repository(options, metrics, models)
    _guard_connections(options, metrics)
    settings = dict(log_level="warning", access_log=False, lifespan="on", server_header=False,
                    timeout_graceful_shutdown=int(options.request_timeout) + 5,
                    http=GuardedH11Protocol, timeout_keep_alive=options.keepalive_timeout,
                    # a request is refused with 503 beyond this many in progress
                    limit_concurrency=options.max_connections + 64)
    sock = listen_socket(options.host, options.port)
    port = sock.getsockname()[1]
    if options.workers > 1:
        names = ", ".join(repository.model_names())
        repository.close()  # loaded once here to fail fast; each worker loads its own copy
        os.environ[OPTIONS_ENV] = orjson.dumps(options.to_dict()).decode()
        config = uvicorn.Config("tfless.serve.server:app_from_environment", factory=True,
                                workers=options.workers, **settings)
        _announce(options.host, port, options.workers, names)
        _supervisor(config, sock).run()
        return 0
    config = uvicorn.Config(create_app(repository, options, metrics), **settings)
    names = ", ".join(f"{name} (versions {', '.join(map(str, repository.available_versions(name)))})"
                      for name in repository.model_names())
    _announce(options.host, port, 1, names)
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with
    # this handler in place that re-raise is a no-op and the command exits 0.
    signal.signal(signal.SIGTERM, lambda sig, frame: None)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket, listening from the moment the URL is announced.

    Made with proto=IPPROTO_TCP because asyncio turns on TCP_NODELAY for accepted
    connections only then; uvicorn's own bind_socket() leaves proto 0, and Nagle's
    algorithm with delayed ACKs then adds ~40 ms to every keep-alive response."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)  # clients wait in the backlog until the server accepts, never refused
    sock.set_inheritable(True)
    return sock


def _supervisor(config: uvicorn.Config, sock: socket.socket) -> Multiprocess:
    """uvicorn's worker supervisor; before uvicorn 0.45 it also took the worker's target."""
    if "target" in inspect.signature(Multiprocess).parameters:
        return Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])
    return Multiprocess(config, sockets=[sock])


def _announce(host: str, port: int, workers: int, models: str) -> None:
    url_host = f"[{host}]" if ":" in host else host
    print(f"tfless serve: listening on http://{url_host}:{port} with {workers} worker(s); "
          f"models: {models}", file=sys.stderr, flush=True)
