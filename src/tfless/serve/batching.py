"""Dynamic batching: requests that arrive together run as one model call.

Requests are submitted from the event loop and run on `threads` worker threads (NumPy
releases the GIL in its kernels). With batching on (max_batch_size > 0), a request joins
the open batch of its shape; a batch closes when it is full or when `timeout` has passed
since its first request, and an idle worker takes the oldest closed batch. With timeout 0 a
batch closes as soon as a worker is free, so batches grow only while all workers are busy.
A request larger than max_batch_size runs alone, in chunks of max_batch_size. With
batching off each request is its own batch. The queue is bounded: a request that would
exceed `max_queue` is refused at once (RESOURCE_EXHAUSTED, HTTP 429).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, TflessError
from .errors import ServingError

log = logging.getLogger("tfless.serve")

RunFn = Callable[[list[np.ndarray], int | None], list[np.ndarray]]


@dataclass
class _Task:
    arrays: list[np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class _Batch:
    key: tuple
    deadline: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0

    def add(self, task: _Task) -> None:
        self.tasks.append(task)
        self.rows += task.rows


class Batcher:
    """Queue + worker threads for one loaded model version."""

    def __init__(self, run: RunFn, *, name: str, max_batch_size: int = 0, timeout: float = 0.0,
                 threads: int = 1, max_queue: int = 1000,
                 on_batch: Callable[[int, float], None] | None = None,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self._run = run
        self.name = name
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._cv = threading.Condition()
        self._open: list[_Batch] = []
        self._ready: deque[_Batch] = deque()
        self._queued = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        return self._queued

    def submit(self, arrays: list[np.ndarray]) -> asyncio.Future:
        """Queue one request (called on the event loop); the future gets its outputs."""
        loop = asyncio.get_running_loop()
        task = _Task(arrays, int(arrays[0].shape[0]), tuple(a.shape[1:] for a in arrays),
                     loop.create_future(), loop)
        with self._cv:
            if self._closed:
                raise ServingError("UNAVAILABLE", f"{self.name} is unloading; retry the request")
            if self._queued >= self.max_queue:
                raise ServingError(
                    "RESOURCE_EXHAUSTED",
                    "The batch scheduling queue to which this task was submitted is full "
                    f"({self.max_queue} requests waiting)")
            self._enqueue(task)
            self._queued += 1
            self._cv.notify()
            depth = self._queued
        if self._on_depth:
            self._on_depth(depth)
        return task.future

    def _enqueue(self, task: _Task) -> None:
        cap = self.max_batch_size
        if cap <= 0 or task.rows >= cap:
            self._ready.append(_Batch(task.key, 0.0, [task], task.rows))
            return
        for batch in self._open:
            if batch.key == task.key:
                if batch.rows + task.rows <= cap:
                    batch.add(task)
                    if batch.rows == cap:
                        self._open.remove(batch)
                        self._ready.append(batch)
                    return
                self._open.remove(batch)
                self._ready.append(batch)
                break
        batch = _Batch(task.key, time.monotonic() + self.timeout)
        batch.add(task)
        self._open.append(batch)

    def _next_batch(self) -> _Batch | None:
        with self._cv:
            while True:
                if self._ready:
                    batch = self._ready.popleft()
                    break
                if self._open:
                    batch = min(self._open, key=lambda b: b.deadline)
                    remaining = batch.deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        self._open.remove(batch)
                        break
                    self._cv.wait(remaining)
                elif self._closed:
                    return None
                else:
                    self._cv.wait()
            self._queued -= len(batch.tasks)
            depth = self._queued
        if self._on_depth:
            self._on_depth(depth)
        return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            tasks = [t for t in batch.tasks if not t.future.done()]
            if tasks:
                self._run_tasks(tasks)

    def _run_tasks(self, tasks: list[_Task]) -> None:
        n_inputs = len(tasks[0].arrays)
        if len(tasks) == 1:
            arrays = tasks[0].arrays
        else:
            arrays = [np.concatenate([t.arrays[i] for t in tasks]) for i in range(n_inputs)]
        rows = sum(t.rows for t in tasks)
        chunk = self.max_batch_size if 0 < self.max_batch_size < rows else None
        start = time.perf_counter()
        try:
            outputs = self._run(arrays, chunk)
        except InputError as exc:
            self._fail(tasks, ServingError("INVALID_ARGUMENT", str(exc)))
            return
        except TflessError as exc:
            self._fail(tasks, ServingError("INTERNAL", f"{self.name}: {exc}"))
            return
        except Exception as exc:  # a bug in an op: answer 500, keep the worker alive, log it
            log.exception("%s: prediction failed", self.name)
            self._fail(tasks, ServingError("INTERNAL", f"{self.name}: prediction failed: {exc!r}"))
            return
        if self._on_batch:
            self._on_batch(rows, time.perf_counter() - start)
        if len(tasks) == 1:
            self._deliver(tasks[0], outputs)
            return
        if any(o.shape[:1] != (rows,) for o in outputs):
            self._fail(tasks, ServingError(
                "INTERNAL", f"{self.name}: outputs do not keep the batch axis; serve it with "
                "batching off (--max-batch-size 0)"))
            return
        offset = 0
        for t in tasks:
            self._deliver(t, [o[offset:offset + t.rows] for o in outputs])
            offset += t.rows

    def _fail(self, tasks: list[_Task], error: ServingError) -> None:
        for t in tasks:
            self._deliver(t, error)

    @staticmethod
    def _deliver(task: _Task, result: Any) -> None:
        try:
            task.loop.call_soon_threadsafe(_settle, task.future, result)
        except RuntimeError:  # the event loop is gone (server stopped): nobody is waiting
            pass

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, run what is queued, and stop the workers."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
