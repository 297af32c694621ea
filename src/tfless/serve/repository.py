"""The model repository: which versions of which models are loaded, and keeping that current.

Each model has a source (see model_config). A poller thread lists the base directory every
poll_seconds, picks the versions the policy wants, loads and warms up new ones, and unloads
versions no longer wanted, but only once a wanted version is serving (TF Serving's
availability-preserving policy): a new version that fails to load leaves the old one
serving, with the failure in the model's status. A version is unloaded only after the
requests that were using it are done, so a version switch drops no request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, TflessError, UnsafeModelError, UnsupportedLayer
from ..graph import TensorSpec
from ..model import load
from .batching import Batcher
from .errors import ServingError, invalid, not_found
from .metrics import ServingMetrics
from .model_config import ModelSource, model_file_in, version_dirs
from .options import ServeOptions
from .tensors import spec_dtype

log = logging.getLogger("tfless.serve")


@dataclass(frozen=True)
class VersionStatus:
    """One entry of TF Serving's model_version_status."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class Servable:
    """One loaded model version: the model, its tensor specs, and its batcher."""

    def __init__(self, name: str, version: int, model: Any, options: ServeOptions,
                 metrics: ServingMetrics | None) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.inputs: list[TensorSpec] = model.inputs
        self.outputs: list[TensorSpec] = model.outputs
        self._options, self._metrics = options, metrics
        self._by_signature: dict[str, Servable] = {}
        self._cond = threading.Condition()
        self._inflight = 0
        self._serving = True
        labels = (name, str(version))
        self.batcher = Batcher(
            self.predict, name=f"model {name} version {version}",
            max_batch_size=options.max_batch_size,
            timeout=options.batch_timeout_micros / 1e6,
            threads=options.num_batch_threads, max_queue=options.max_queue_size,
            on_batch=(lambda rows, s: metrics.observe_batch(*labels, rows, s)) if metrics else None,
            on_depth=metrics.queue_depth.labels(*labels).set if metrics else None,
        )

    def predict(self, arrays: list[np.ndarray], batch_size: int | None = None) -> list[np.ndarray]:
        y = self.model.predict(arrays, batch_size=batch_size, structured=False)
        return [np.ascontiguousarray(a) for a in (y if isinstance(y, list) else [y])]

    async def infer(self, arrays: list[np.ndarray], timeout: float) -> list[np.ndarray]:
        """Outputs for one request, through the batcher; DEADLINE_EXCEEDED after timeout."""
        future = self.batcher.submit(arrays)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ServingError(
                "DEADLINE_EXCEEDED", f"Deadline exceeded: model {self.name} version "
                f"{self.version} gave no result within {timeout:g} s") from None

    def for_signature(self, signature: str) -> Servable | None:
        """The servable running SavedModel signature `signature` of this version ("" = the
        one loaded); other signatures of a TF graph SavedModel are loaded on first use.
        None if the model has no such signature."""
        meta = getattr(self.model, "meta", {})
        loaded = meta.get("signature", "serving_default")
        if signature in ("", loaded):
            return self
        if signature not in (meta.get("signatures") or {}):
            return None
        with self._cond:
            if signature not in self._by_signature:
                model = load(meta["source"], signature=signature)
                self._by_signature[signature] = Servable(self.name, self.version, model,
                                                         self._options, self._metrics)
            return self._by_signature[signature]

    def acquire(self) -> bool:
        with self._cond:
            if not self._serving:
                return False
            self._inflight += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def retire(self, timeout: float) -> None:
        """Take no new requests, wait for those in flight, then stop the batcher."""
        with self._cond:
            self._serving = False
            self._cond.wait_for(lambda: self._inflight == 0, timeout)
        self.batcher.close(timeout)
        for other in self._by_signature.values():
            other.retire(timeout)


def warm_up(model: Any, name: str, version: int, batch: int = 1) -> None:
    """One prediction on zeros, so a model that loads but cannot run never serves.

    A free axis other than the batch (a sequence length, an image size) gets size 1, which
    the model may rightly refuse (a 'valid' convolution wider than that): such a refusal
    skips the warm-up instead of failing the version, since real requests bring real sizes."""
    free = any(d is None for spec in model.inputs for d in spec.shape[1:])
    arrays = [np.zeros((batch, *(1 if d is None else d for d in spec.shape[1:])), spec_dtype(spec))
              for spec in model.inputs]
    try:
        model.predict(arrays, structured=False)
    except InputError as exc:
        if not free:
            raise
        log.warning("model '%s' version %d: warm-up skipped, the model refuses size 1 for its "
                    "free axes: %s", name, version, exc)


def _load_error_code(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedLayer):
        return "UNIMPLEMENTED"
    if isinstance(exc, UnsafeModelError):
        return "PERMISSION_DENIED"
    if isinstance(exc, ModelFormatError):
        return "INVALID_ARGUMENT"
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    return "UNKNOWN"


def _signature(path: Path) -> tuple:
    """What a version's files look like now: a failed version is retried once it changes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = []
    for p in files[:1000]:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


class _Entry:
    """One model: its source, the versions serving now, and every version's status."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.live: dict[int, Servable] = {}  # replaced whole, never mutated: readers need no lock
        self.statuses: dict[int, VersionStatus] = {}
        self.failed: dict[int, tuple] = {}
        self.warned_empty = False
        self.poll_error = ""

    def latest(self) -> Servable | None:
        live = self.live
        return live[max(live)] if live else None


class Repository:
    """All served models. Thread-safe for readers; one poller thread writes."""

    def __init__(self, sources: list[ModelSource], options: ServeOptions,
                 metrics: ServingMetrics | None = None,
                 models: dict[str, Any] | None = None) -> None:
        """`models` maps names to already-built Models (e.g. the one embedded in a `tfless
        build` executable): each is served as version 1 as it is, never read from disk."""
        self.options = options
        self.metrics = metrics
        self._models = dict(models or {})
        sources = [*sources, *(ModelSource(name, Path(f"<in-memory model {name}>"), single=True)
                               for name in self._models)]
        self._entries = {s.name: _Entry(s) for s in sources}
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ----- lifecycle -----------------------------------------------------------------
    def load_initial(self) -> None:
        """Load every model's wanted versions; fail if a model ends up with none serving."""
        # failures at startup are reported once, in the error below (a model with nothing to
        # serve stops the command) or as one warning line each (other versions serve)
        self._starting = True
        try:
            for entry in self._entries.values():
                self.poll(entry.source.name)
        finally:
            self._starting = False
        missing = [e for e in self._entries.values() if not e.live]
        for entry in self._entries.values():
            for status in entry.statuses.values() if entry.live else ():
                if status.error_message:
                    log.warning("model '%s' version %d failed to load: %s", entry.source.name,
                                status.version, status.error_message)
        if missing:
            details = "; ".join(
                f"model '{e.source.name}' ({e.source.base_path}): " + (", ".join(
                    f"version {s.version}: {s.error_message}" for s in e.statuses.values()
                    if s.error_message) or "no version found")
                for e in missing)
            self.close()
            raise ModelFormatError(f"no version could be loaded: {details}")

    def start_polling(self) -> None:
        watched = [e for e in self._entries.values() if not e.source.single]
        if self.options.poll_seconds > 0 and watched and self._poller is None:
            self._poller = threading.Thread(target=self._poll_loop, name="model-poller",
                                            daemon=True)
            self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.options.poll_seconds):
            for entry in list(self._entries.values()):
                if entry.source.single:
                    continue
                try:
                    self.poll(entry.source.name)
                    entry.poll_error = ""
                except TflessError as exc:
                    if str(exc) != entry.poll_error:  # say it once, not every poll
                        log.warning("model '%s': %s", entry.source.name, exc)
                    entry.poll_error = str(exc)

    def close(self) -> None:
        """Stop polling and unload everything, letting in-flight requests finish."""
        self._stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(self.options.request_timeout + 5)
        with self._write_lock:
            for entry in self._entries.values():
                for version in list(entry.live):
                    self._unload(entry, version)

    # ----- polling -------------------------------------------------------------------
    def poll(self, name: str) -> None:
        """Bring one model's loaded versions in line with its directory and policy."""
        with self._write_lock:
            entry = self._entries[name]
            src = entry.source
            on_disk = {1: src.base_path} if src.single else version_dirs(src.base_path)
            wanted = src.policy.select(on_disk)
            if not wanted:
                if entry.live and not entry.warned_empty:
                    log.warning("model '%s': no version under %s matches the %s policy; "
                                "still serving version(s) %s", name, src.base_path,
                                src.policy.kind, sorted(entry.live))
                entry.warned_empty = True
                return
            entry.warned_empty = False
            for version in wanted:
                if version in entry.live:
                    continue
                signature = _signature(on_disk[version])
                if entry.failed.get(version) == signature:
                    continue
                self._load(entry, version, on_disk[version], signature)
            if any(v in entry.live for v in wanted):
                for version in [v for v in entry.live if v not in wanted]:
                    self._unload(entry, version)

    def _load(self, entry: _Entry, version: int, path: Path, signature: tuple) -> None:
        name = entry.source.name
        entry.statuses[version] = VersionStatus(version, "LOADING")
        try:
            model_path, weights = (path, None) if entry.source.single else model_file_in(path)
            model = (self._models[name] if name in self._models
                     else load(model_path, weights=weights))
            if self.options.warmup:
                warm_up(model, name, version)
            servable = Servable(name, version, model, self.options, self.metrics)
        except Exception as exc:  # any failure must leave the serving versions untouched
            if not isinstance(exc, (TflessError, OSError)):
                # a bug in a reader: one line like any bad model; the traceback for debugging
                log.debug("model '%s' version %d: loader failed", name, version, exc_info=True)
            entry.failed[version] = signature
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            entry.statuses[version] = VersionStatus(
                version, "END", _load_error_code(exc), message)
            if not getattr(self, "_starting", False):
                log.error("model '%s' version %d failed to load: %s", name, version, message)
            return
        entry.failed.pop(version, None)
        entry.live = {**entry.live, version: servable}
        entry.statuses[version] = VersionStatus(version, "AVAILABLE")
        if self.metrics:
            self.metrics.available.labels(name, str(version)).set(1)
        log.info("model '%s' version %d is available (%s)", name, version, path)

    def _unload(self, entry: _Entry, version: int) -> None:
        name = entry.source.name
        servable = entry.live[version]
        entry.live = {v: s for v, s in entry.live.items() if v != version}
        entry.statuses[version] = VersionStatus(version, "UNLOADING")
        servable.retire(self.options.request_timeout + 5)
        entry.statuses[version] = VersionStatus(version, "END")
        if self.metrics:
            self.metrics.available.labels(name, str(version)).set(0)
        log.info("model '%s' version %d unloaded", name, version)

    # ----- lookups -------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return list(self._entries)

    def _entry(self, name: str, version: int | None) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise not_found(f"Servable not found for request: {_request_name(name, version)}")
        return entry

    def resolve_version(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a request names (a label resolves to its version), None for latest."""
        if label is None:
            return version
        entry = self._entry(name, None)
        if label not in entry.source.labels:
            raise invalid(f"Unrecognized servable version label: {label}")
        return entry.source.labels[label]

    @contextmanager
    def use(self, name: str, version: int | None = None,
            label: str | None = None) -> Iterator[Servable]:
        """The servable a request runs on, held so it is not unloaded under the request."""
        version = self.resolve_version(name, version, label)
        entry = self._entry(name, version)
        for _ in range(3):
            servable = entry.latest() if version is None else entry.live.get(version)
            if servable is None:
                raise not_found(f"Servable not found for request: {_request_name(name, version)}")
            if servable.acquire():
                break
        else:
            raise ServingError("UNAVAILABLE", f"model '{name}' is switching versions; retry")
        try:
            yield servable
        finally:
            servable.release()

    def status(self, name: str, version: int | None = None,
               label: str | None = None) -> list[VersionStatus]:
        entry = self._entries.get(name)
        if entry is None:
            raise not_found(f"Could not find any versions of model {name}")
        version = self.resolve_version(name, version, label)
        statuses = dict(entry.statuses)
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {name}")
            return [statuses[version]]
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        return [statuses[v] for v in sorted(statuses, reverse=True)]

    def available_versions(self, name: str) -> list[int]:
        entry = self._entries.get(name)
        return sorted(entry.live) if entry else []

    def is_ready(self, name: str | None = None, version: int | None = None) -> bool:
        if name is None:
            return all(e.live for e in self._entries.values())
        entry = self._entries.get(name)
        if entry is None:
            return False
        return bool(entry.live) if version is None else version in entry.live


def _request_name(name: str, version: int | None) -> str:
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"
