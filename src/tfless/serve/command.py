"""The `tfless serve` subcommand: arguments only; the server stack loads when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError
from .options import ServeOptions


def add_serve_command(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve models over HTTP: TF Serving REST API v1 and KServe V2",
        description="Serve one model file, a TF Serving base directory (<base>/<version>/"
                    "<model file>), or the models of a model_config_list file, on TF Serving's "
                    "REST API v1 and the KServe V2 protocol (one port).")
    p.add_argument("path", nargs="?", help="a model file (served as version 1) or a base directory")
    p.add_argument("--model-name", default="default", help="name of the model given as PATH")
    p.add_argument("--model-config-file",
                   help="TF Serving model_config_list (protobuf text format or JSON)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often base directories are checked for versions (0 = never)")
    add_server_options(p)
    p.set_defaults(handler=run_serve)


def add_server_options(p: argparse.ArgumentParser) -> None:
    """Flags for how models are served, whatever they are (also used by `NAME serve` in a
    `tfless build` executable)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501; 0 picks a free one)")
    p.add_argument("--max-batch-size", type=int, default=0,
                   help="dynamic batching: most rows in one model call (0 = batching off)")
    p.add_argument("--batch-timeout-micros", type=int, default=0,
                   help="longest wait for a batch to fill, from its first request (default 0)")
    p.add_argument("--num-batch-threads", type=int, default=ServeOptions().num_batch_threads,
                   help="model calls run in parallel per model version (default: CPU count)")
    p.add_argument("--max-queue-size", type=int, default=1000,
                   help="requests waiting per model version before answering 429")
    p.add_argument("--request-timeout", type=float, default=30.0,
                   help="seconds a request may take before a 504 (default 30)")
    defaults = ServeOptions()
    p.add_argument("--max-request-bytes", type=int, default=defaults.max_request_bytes,
                   help="largest request body, after gzip inflation (default 64 MiB)")
    p.add_argument("--max-json-bytes", type=int, default=defaults.max_json_bytes,
                   help="largest JSON request (REST v1 bodies, the JSON part of KServe V2 "
                        "requests; parsing JSON takes ~30x its size in memory), default 16 MiB")
    p.add_argument("--max-connections", type=int, default=defaults.max_connections,
                   help="open connections; more are closed when accepted (default 1000)")
    p.add_argument("--header-timeout", type=float, default=defaults.header_timeout,
                   help="seconds for a request's headers to arrive (default 10)")
    p.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                   help="longest pause while a request body arrives, then 408 (default 30)")
    p.add_argument("--keepalive-timeout", type=float, default=defaults.keepalive_timeout,
                   help="seconds an idle keep-alive connection stays open (default 5)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the warm-up prediction when a version loads")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not write a JSON access-log line per request")


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    if bool(args.path) == bool(args.model_config_file):
        raise InputError("give either a model PATH or --model-config-file (exactly one)")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.poll_seconds < 0:
        raise InputError("--poll-seconds must be >= 0")
    return server_options_from_args(
        args, path=args.path, model_name=args.model_name,
        model_config_file=args.model_config_file, workers=args.workers,
        poll_seconds=args.poll_seconds)


def server_options_from_args(args: argparse.Namespace, **fields: Any) -> ServeOptions:
    """ServeOptions from the `add_server_options` flags, plus the given fields."""
    for flag in ("max_batch_size", "batch_timeout_micros", "port", "max_request_bytes"):
        if getattr(args, flag) < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("num_batch_threads", "max_queue_size", "max_json_bytes", "max_connections"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("request_timeout", "header_timeout", "body_timeout", "keepalive_timeout"):
        value = getattr(args, flag)
        if not value > 0 or value == float("inf"):  # also refuses nan
            raise InputError(f"--{flag.replace('_', '-')} must be a number of seconds > 0, "
                             f"got {value}")
    if args.port > 65535:
        raise InputError(f"--port must be at most 65535, got {args.port}")
    return ServeOptions(
        host=args.host, port=args.port, max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros, num_batch_threads=args.num_batch_threads,
        max_queue_size=args.max_queue_size, request_timeout=args.request_timeout,
        max_request_bytes=args.max_request_bytes, max_json_bytes=args.max_json_bytes,
        max_connections=args.max_connections, header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, keepalive_timeout=args.keepalive_timeout,
        warmup=args.warmup,
        access_log=args.access_log, **fields)


def run_serve(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    from .server import serve

    return serve(options)
