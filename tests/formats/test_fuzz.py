"""Property-style fuzz test of every reader: a mutated model file either loads and predicts
with well-shaped output, or fails with a TflessError. Never another exception, never a hang,
never memory beyond a bound, and never an answer from a file that links to another file.

Seed files (one tiny model saved by Keras in every format tfless reads) are built once and
cached by content hash. Mutations are generated in this process from a fixed seed, written
to disk, and run one after another in a separate worker process (tfless only, no
TensorFlow) that answers one JSON line per case; the parent waits for each answer with a
timeout, so a hang or a crash of the worker is a failure that names the case.

The number of cases per format is TFLESS_FUZZ_CASES (default 200, a few seconds per format);
`bench/fuzz.py` runs a longer campaign with the same machinery.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

FORMATS = ("keras", "h5", "tf_keras_h5", "json", "savedmodel", "tflite")
CASES = int(os.environ.get("TFLESS_FUZZ_CASES", "200"))
CASE_TIMEOUT = 30.0  # seconds for one load + predict; generous for a loaded CI machine
MAX_RSS_MB = 1024  # the worker's peak resident memory over all its cases
BATCH = 2
SEED_VERSION = "1"  # bump when the seed models change


# ----- seed files --------------------------------------------------------------------------
def _build_seeds(directory: Path) -> None:
    """One small model (Conv1D, BatchNormalization, Dense) saved in every format."""
    import keras
    import tensorflow as tf
    import tf_keras

    def layers_of(k: Any) -> Any:
        inp = k.Input((5, 2), name="seq")
        h = k.layers.Conv1D(3, 2, activation="relu", name="conv")(inp)
        h = k.layers.BatchNormalization(name="bn")(h)
        h = k.layers.Flatten(name="flat")(h)
        return k.Model(inp, k.layers.Dense(2, activation="softmax", name="probs")(h))

    keras.utils.set_random_seed(3)
    model = layers_of(keras)
    model.save(directory / "model.keras")
    model.save(directory / "model.h5")
    (directory / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    tf_keras.utils.set_random_seed(3)
    old = layers_of(tf_keras)
    old.save(directory / "tf_keras.h5")
    (directory / "arch.json").write_text(old.to_json())
    old.save_weights(directory / "weights.h5")
    old.save(directory / "savedmodel", save_format="tf")


@pytest.fixture(scope="module")
def seeds() -> Path:
    import keras
    import tensorflow as tf

    key = hashlib.sha256(
        (inspect_source(_build_seeds) + SEED_VERSION + keras.__version__ + tf.__version__).encode()
    ).hexdigest()[:16]
    # a content-keyed folder under the temp dir, not pytest's cache (CI runs without the
    # cacheprovider plugin); xdist workers share it
    cache = Path(tempfile.gettempdir()) / "tfless-fuzz-seeds" / key
    if not (cache / "done").exists():
        tmp = cache.with_name(f"{key}.{os.getpid()}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _build_seeds(tmp)
        (tmp / "done").write_text("ok")
        try:
            tmp.rename(cache)
        except OSError:  # another xdist worker finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


def inspect_source(fn: Callable[..., Any]) -> str:
    import inspect

    return inspect.getsource(fn)


# ----- mutations ---------------------------------------------------------------------------
INTERESTING_WORDS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**40), 1e308, -1e9, 0.5, "", "x", "float64",
    "relu", [], {}, [1, 2], [None], [[None, 2], [3]], {"a": 1}, {"class_name": "Dense"},
    {"config": None}, "a" * 300,
)


def mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random byte-level damage: flips, truncation, zeroed or duplicated ranges,
    an 'interesting' 32-bit word (offsets and sizes in binary formats are words)."""
    buf = bytearray(data)
    kind = rng.integers(6)
    if not buf:
        return b"\x00", "empty->zero byte"
    if kind == 0:
        n = int(rng.integers(1, 9))
        for pos in rng.integers(0, len(buf), n):
            buf[pos] ^= int(rng.integers(1, 256))
        return bytes(buf), f"flip {n} bytes"
    if kind == 1:
        cut = int(rng.integers(0, len(buf)))
        return bytes(buf[:cut]), f"truncate at {cut}"
    if kind == 2:
        pos, n = int(rng.integers(0, len(buf))), int(rng.integers(1, 65))
        buf[pos:pos + n] = bytes(len(buf[pos:pos + n]))
        return bytes(buf), f"zero {n} at {pos}"
    if kind == 3:
        pos, n = int(rng.integers(0, len(buf))), int(rng.integers(1, 65))
        buf[pos:pos] = buf[pos:pos + n]
        return bytes(buf), f"duplicate {n} at {pos}"
    # words, biased to the first KiB where headers, vtables and offsets live
    span = min(len(buf), 1024) if kind == 4 else len(buf)
    pos = int(rng.integers(0, max(1, span - 4))) & ~3
    word = int(rng.choice(INTERESTING_WORDS))
    buf[pos:pos + 4] = word.to_bytes(4, "little")[:len(buf[pos:pos + 4])]
    return bytes(buf), f"word {word:#x} at {pos}"


def _json_slots(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield path + (k,)
            yield from _json_slots(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield path + (i,)
            yield from _json_slots(v, path + (i,))


def mutate_json(doc: Any, rng: np.random.Generator) -> tuple[Any, str]:
    """Replace, delete or duplicate one value anywhere in a JSON document."""
    doc = copy.deepcopy(doc)
    slots = list(_json_slots(doc))
    if not slots:
        return None, "document -> null"
    path = slots[int(rng.integers(len(slots)))]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    action = rng.integers(5)
    shown = "/".join(map(str, path))
    if action == 0:
        del parent[last]
        return doc, f"delete {shown}"
    if action == 1 and isinstance(parent, list):
        parent.insert(int(last), copy.deepcopy(parent[last]))
        return doc, f"duplicate {shown}"
    if action == 2:
        nested: Any = 1
        for _ in range(int(rng.integers(20, 200))):
            nested = [nested]
        parent[last] = nested
        return doc, f"deep list at {shown}"
    value = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    parent[last] = copy.deepcopy(value)
    return doc, f"{shown} = {str(value)[:20]}"


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _objects_with_attrs(f: h5py.File) -> list[str]:
    names = ["/"]
    f.visititems(lambda name, obj: names.append(name) if len(obj.attrs) else None)
    return names


@dataclass
class H5Mutation:
    note: str
    must_fail: bool = False  # the file reaches outside itself: loading it must be refused


def mutate_h5(path: Path, rng: np.random.Generator, outside: Path) -> H5Mutation:
    """One structural change made with h5py: an attribute, a dataset's shape, dtype or kind,
    a deleted object, a soft link, an external link, a virtual dataset."""
    with h5py.File(path, "r+") as f:
        datasets = _datasets(f)
        kind = int(rng.integers(9))
        if kind <= 1 and datasets:  # reshape / retype a weight
            name = datasets[int(rng.integers(len(datasets)))]
            old = f[name]
            shape = old.shape
            choice = int(rng.integers(5))
            del f[name]
            if choice == 0:
                f[name] = np.float32(0.5)
                return H5Mutation(f"{name} -> scalar")
            if choice == 1:
                f[name] = np.ones(tuple(int(d) + 1 for d in shape) or (2,), np.float32)
                return H5Mutation(f"{name} -> grown")
            if choice == 2:
                f[name] = np.array([b"abc"] * 3)
                return H5Mutation(f"{name} -> strings")
            if choice == 3:
                f[name] = np.ones(shape, np.int64)
                return H5Mutation(f"{name} -> int64")
            f.create_group(name)
            return H5Mutation(f"{name} -> group")
        if kind == 2 and datasets:
            name = datasets[int(rng.integers(len(datasets)))]
            del f[name]
            return H5Mutation(f"delete {name}")
        if kind == 3 and datasets:  # a dangling or a real soft link in place of a weight
            name = datasets[int(rng.integers(len(datasets)))]
            target = "/" + datasets[int(rng.integers(len(datasets)))]
            del f[name]
            f[name] = h5py.SoftLink(target if rng.integers(2) else "/no/such/object")
            return H5Mutation(f"{name} -> soft link", must_fail=True)
        if kind == 4 and datasets:  # an external link to a real file with real data
            name = datasets[int(rng.integers(len(datasets)))]
            shape = f[name].shape
            with h5py.File(outside, "a") as o:
                if "w" in o:
                    del o["w"]
                o["w"] = np.full(shape, 7.0, np.float32)
            del f[name]
            f[name] = h5py.ExternalLink(str(outside), "/w")
            return H5Mutation(f"{name} -> external link", must_fail=True)
        if kind == 5 and datasets:  # a virtual dataset mapping another file
            name = datasets[int(rng.integers(len(datasets)))]
            shape = f[name].shape or (1,)
            with h5py.File(outside, "a") as o:
                if "v" in o:
                    del o["v"]
                o["v"] = np.full(shape, 3.0, np.float32)
            layout = h5py.VirtualLayout(shape=shape, dtype="f4")
            layout[...] = h5py.VirtualSource(str(outside), "v", shape=shape)
            del f[name]
            f.create_virtual_dataset(name, layout)
            return H5Mutation(f"{name} -> virtual dataset", must_fail=True)
        holders = _objects_with_attrs(f)
        obj = f[holders[int(rng.integers(len(holders)))]]
        keys = list(obj.attrs)
        if not keys:
            obj.attrs["junk"] = 1
            return H5Mutation("junk attribute")
        key = keys[int(rng.integers(len(keys)))]
        value = obj.attrs[key]
        if key == "model_config":  # JSON inside an attribute
            doc, note = mutate_json(json.loads(value), rng)
            obj.attrs[key] = json.dumps(doc)
            return H5Mutation(f"model_config: {note}")
        choice = int(rng.integers(4))
        if choice == 0:
            del obj.attrs[key]
            return H5Mutation(f"delete attribute {obj.name}@{key}")
        if choice == 1 and isinstance(value, np.ndarray) and value.size:
            obj.attrs[key] = value[::-1] if rng.integers(2) else value[:-1]
            return H5Mutation(f"reorder/shorten {obj.name}@{key}")
        if choice == 2:
            obj.attrs[key] = np.array([b"1", b"nope", b"../x"])
            return H5Mutation(f"{obj.name}@{key} -> odd names")
        obj.attrs[key] = 42
        return H5Mutation(f"{obj.name}@{key} -> 42")


def _rezip(src: Path, dst: Path, replace: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename in replace:
                data = replace[info.filename]
                if data is not None:
                    zout.writestr(info.filename, data)
            else:
                zout.writestr(info.filename, zin.read(info))


@dataclass
class Case:
    fmt: str
    index: int
    note: str
    model: Path
    weights: Path | None = None
    must_fail: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.fmt}#{self.index}: {self.note}"


def make_case(fmt: str, index: int, seeds: Path, root: Path) -> Case:
    """The index-th mutation of the seed of `fmt`, written under root."""
    rng = np.random.default_rng([index, FORMATS.index(fmt)])
    d = root / f"{fmt}-{index}"
    d.mkdir(parents=True)
    outside = root / f"outside-{fmt}-{index}.h5"
    if fmt == "keras":
        model = d / "model.keras"
        choice = int(rng.integers(6))
        with zipfile.ZipFile(seeds / "model.keras") as z:
            members = {n: z.read(n) for n in z.namelist()}
        if choice == 0:
            model.write_bytes(mutate_bytes((seeds / "model.keras").read_bytes(), rng)[0])
            return Case(fmt, index, "zip bytes", model)
        if choice in (1, 2):
            name = "config.json" if choice == 1 else "metadata.json"
            doc, note = mutate_json(json.loads(members[name]), rng)
            _rezip(seeds / "model.keras", model, {name: json.dumps(doc).encode()})
            return Case(fmt, index, f"{name}: {note}", model)
        if choice == 3:
            victim = sorted(members)[int(rng.integers(len(members)))]
            _rezip(seeds / "model.keras", model, {victim: None})
            return Case(fmt, index, f"drop {victim}", model)
        weights = d / "w.h5"
        weights.write_bytes(members["model.weights.h5"])
        if choice == 4:
            weights.write_bytes(mutate_bytes(weights.read_bytes(), rng)[0])
            note, must_fail = "weights member bytes", False
        else:
            m = mutate_h5(weights, rng, outside)
            note, must_fail = f"weights member: {m.note}", m.must_fail
        _rezip(seeds / "model.keras", model, {"model.weights.h5": weights.read_bytes()})
        weights.unlink()
        return Case(fmt, index, note, model, must_fail=must_fail)
    if fmt in ("h5", "tf_keras_h5"):
        model = d / "model.h5"
        shutil.copy(seeds / ("model.h5" if fmt == "h5" else "tf_keras.h5"), model)
        if rng.integers(3) == 0:
            data, note = mutate_bytes(model.read_bytes(), rng)
            model.write_bytes(data)
            return Case(fmt, index, note, model)
        m = mutate_h5(model, rng, outside)
        return Case(fmt, index, m.note, model, must_fail=m.must_fail)
    if fmt == "json":
        arch, weights = d / "arch.json", d / "weights.h5"
        shutil.copy(seeds / "arch.json", arch)
        shutil.copy(seeds / "weights.h5", weights)
        choice = int(rng.integers(4))
        if choice == 0:
            doc, note = mutate_json(json.loads(arch.read_text()), rng)
            arch.write_text(json.dumps(doc))
            return Case(fmt, index, f"arch: {note}", arch, weights)
        if choice == 1:
            data, note = mutate_bytes(weights.read_bytes(), rng)
            weights.write_bytes(data)
            return Case(fmt, index, f"weights: {note}", arch, weights)
        if choice == 2:
            data, note = mutate_bytes(arch.read_bytes(), rng)
            arch.write_bytes(data)
            return Case(fmt, index, f"arch: {note}", arch, weights)
        m = mutate_h5(weights, rng, outside)
        return Case(fmt, index, f"weights: {m.note}", arch, weights, must_fail=m.must_fail)
    if fmt == "savedmodel":
        model = d / "savedmodel"
        shutil.copytree(seeds / "savedmodel", model)
        files = sorted(p for p in model.rglob("*") if p.is_file())
        target = files[int(rng.integers(len(files)))]
        data, note = mutate_bytes(target.read_bytes(), rng)
        target.write_bytes(data)
        return Case(fmt, index, f"{target.relative_to(model)}: {note}", model)
    model = d / "model.tflite"
    data, note = mutate_bytes((seeds / "model.tflite").read_bytes(), rng)
    model.write_bytes(data)
    return Case(fmt, index, note, model)


# ----- the worker ----------------------------------------------------------------------------
WORKER = r"""
import json, sys, traceback
import numpy as np
import tfless

def inputs_for(model):
    arrays = []
    for spec in model.inputs:
        shape = (BATCH,) + tuple(3 if d is None else int(d) for d in spec.shape[1:])
        if int(np.prod(shape, dtype=np.float64)) > 1_000_000:
            return None  # a mutated config declaring a huge input: loading was the test
        arrays.append(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return arrays

for line in sys.stdin:
    case = json.loads(line)
    try:
        model = tfless.load(case["model"], weights=case["weights"])
        x = inputs_for(model)
        if x is None:
            answer = {"r": "ok", "note": "huge input, loaded only"}
        else:
            ys = model.predict(x, structured=False)
            ys = ys if isinstance(ys, list) else [ys]
            bad = [getattr(y, "shape", type(y).__name__) for y in ys
                   if not isinstance(y, np.ndarray) or y.ndim == 0 or y.shape[0] != BATCH]
            answer = {"r": "bug", "tb": f"outputs not batch-shaped: {bad}"} if bad else \
                {"r": "ok", "shapes": [list(y.shape) for y in ys]}
    except tfless.TflessError as exc:
        message = str(exc)
        answer = {"r": "error", "type": type(exc).__name__, "msg": message[:400]}
        if not message.strip() or "\n" in message.strip():
            answer = {"r": "bug", "tb": f"error message is not one line: {message!r}"}
    except BaseException:
        answer = {"r": "bug", "tb": traceback.format_exc()[-3000:]}
    # VmHWM, not ru_maxrss: the latter survives exec and starts at the parent's peak
    status = open("/proc/self/status").read()
    answer["rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class Worker:
    """A tfless-only Python process answering one JSON line per case, restarted after a
    hang (killed) or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   TFLESS_MAX_WEIGHT_BYTES=str(256 * 1024**2), PYTHONFAULTHANDLER="1")
        return subprocess.Popen(
            [sys.executable, "-c", f"BATCH = {BATCH}\n" + WORKER], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)

    def run(self, case: Case, timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin and self.proc.stdout
        weights = str(case.weights) if case.weights else None
        self.proc.stdin.write(json.dumps({"model": str(case.model), "weights": weights}) + "\n")
        self.proc.stdin.flush()
        # the worker imports tfless before its first answer: allow for that too
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return json.loads(line)
                code = self.proc.wait()
                self.proc = None
                return {"r": "bug", "tb": f"worker died (exit {code})", "rss_mb": 0}
            if left <= 0:
                self.close()
                return {"r": "bug", "tb": f"no answer within {timeout} s (hang)", "rss_mb": 0}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def run_campaign(fmt: str, seeds: Path, root: Path, cases: int,
                 timeout: float = CASE_TIMEOUT, first: int = 0) -> dict[str, Any]:
    """Every case of one format; returns counts, failures and the worker's peak memory."""
    worker = Worker()
    results: dict[str, Any] = {"ok": 0, "error": 0, "failures": [], "rss_mb": 0.0, "kinds": {}}
    try:
        for i in range(first, first + cases):
            case = make_case(fmt, i, seeds, root)
            answer = worker.run(case, timeout + (20 if i == first else 0))
            results["rss_mb"] = max(results["rss_mb"], float(answer.get("rss_mb", 0)))
            if answer["r"] == "ok" and case.must_fail:
                results["failures"].append(f"{case.label}: loaded and predicted, but the file "
                                           "reads outside itself and must be refused")
            elif answer["r"] == "bug":
                results["failures"].append(f"{case.label}:\n{answer['tb']}")
            else:
                results[answer["r"]] += 1
                if answer["r"] == "error":
                    results["kinds"][answer["type"]] = results["kinds"].get(answer["type"], 0) + 1
            shutil.rmtree(case.model.parent, ignore_errors=True)
    finally:
        worker.close()
    return results


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_fail_cleanly(fmt: str, seeds: Path, tmp_path: Path) -> None:
    results = run_campaign(fmt, seeds, tmp_path, CASES)
    failures = results["failures"]
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n\n" + "\n\n".join(failures[:5])
    assert results["rss_mb"] < MAX_RSS_MB, results
    # the mutations must reach the readers, not only the file-type check: both outcomes occur
    assert results["error"] > 0 and results["ok"] > 0, results


def test_seeds_load_and_agree(seeds: Path) -> None:
    """The unmutated seeds are valid and give the same answers (so 'ok' cases are real)."""
    import tfless

    x = np.random.default_rng(0).standard_normal((BATCH, 5, 2)).astype(np.float32)
    want = tfless.load(seeds / "model.keras").predict(x)
    for name, weights in (("model.h5", None), ("model.tflite", None), ("savedmodel", None)):
        np.testing.assert_allclose(tfless.load(seeds / name, weights=weights).predict(x), want,
                                   atol=1e-5, rtol=1e-4, err_msg=name)
    old = tfless.load(seeds / "tf_keras.h5").predict(x)
    np.testing.assert_allclose(tfless.load(seeds / "arch.json", weights=seeds / "weights.h5")
                               .predict(x), old, atol=1e-6)
    assert old.shape == (BATCH, 2)

