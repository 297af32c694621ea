"""Request bodies within the size limit (gzip/deflate bodies inflated, also within it), and
error responses in the one shape both protocols use: {"error": "..."}."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .errors import ClientGone, ServingError, invalid, too_large

T = TypeVar("T")
# Parsing or encoding more than this many bytes runs on a thread, so one large request does
# not hold up the event loop (and every other request) while it is converted.
OFFLOAD_BYTES = 256 * 1024
# An oversized body is still read (and dropped) up to this much more, so the client gets the
# 413 instead of a reset connection; past it the connection is closed.
DRAIN_LIMIT = 64 * 1024 * 1024


# After a request of this size the allocator is asked to give freed memory back to the OS
TRIM_BYTES = 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


MALLOC_TRIM = _malloc_trim()


async def release_memory(size: int) -> None:
    """Return freed memory to the OS after a large request. A parsed JSON body is millions
    of small Python objects; glibc keeps the pages they occupied after they are freed (a
    6.5 MB request left the server 90 MB larger), so the heap is trimmed (glibc only)."""
    if size >= TRIM_BYTES and MALLOC_TRIM is not None:
        await asyncio.to_thread(MALLOC_TRIM, 0)


async def convert(size: int, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args), on a worker thread when it handles more than OFFLOAD_BYTES."""
    if size < OFFLOAD_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def error_response(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status,
                    media_type="application/json")


async def read_body(request: Request, limit: int, flag: str = "--max-request-bytes",
                    idle_timeout: float | None = None) -> bytes:
    """The whole body. A client that disconnects midway raises ClientGone (not an error of
    the server); one that pauses more than idle_timeout seconds between two pieces gets a
    408 (a stalled upload must not hold a connection and its buffers forever)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit()):
        raise invalid(f"Content-Length must be a number of bytes, got {declared!r}")
    if declared is not None and int(declared) > limit + DRAIN_LIMIT:
        raise too_large(f"Request body of {declared} bytes is larger than the limit of {limit} "
                        f"bytes ({flag})")
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), idle_timeout)
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > limit + DRAIN_LIMIT:
                break
    except ClientDisconnect:
        raise ClientGone() from None
    except asyncio.TimeoutError:
        raise ServingError("DEADLINE_EXCEEDED", f"the request body stalled: no data for "
                           f"{idle_timeout:g} s (--body-timeout)", http_status=408) from None
    if size > limit:
        raise too_large(f"Request body of {size} bytes is larger than the limit of {limit} bytes "
                        f"({flag})")
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, encoding)
    if encoding == "deflate":
        return _inflate(body, zlib.MAX_WBITS, limit, encoding)
    raise ServingError("INVALID_ARGUMENT", f"Unsupported Content-Encoding {encoding!r}; use gzip or "
                       "deflate", http_status=415)


def _inflate(body: bytes, wbits: int, limit: int, encoding: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise invalid(f"Request body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise too_large(f"Request body inflates to more than the limit of {limit} bytes "
                        "(--max-request-bytes)")
    if not inflater.eof:
        raise invalid(f"Request body is truncated {encoding} data")
    return out
