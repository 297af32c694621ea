"""Unit tests of the serving parts that need no server: config parsing, version policies,
version directories, the batcher, and float encoding."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from tfless.errors import ModelFormatError
from tfless.serve.batching import Batcher
from tfless.serve.errors import ServingError
from tfless.serve.model_config import (
    VersionPolicy,
    model_file_in,
    read_model_config_file,
    sources_from_path,
)
from tfless.serve.tensors import dumps_arrays


def test_text_and_json_config_agree(tmp_path: Path) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    text = tmp_path / "m.config"
    text.write_text("""
# TF Serving's format; logging_config is TF Serving's, ignored here
model_config_list {
  config {
    name: 'a'
    base_path: "a"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 4 } }
    version_labels { key: 'stable' value: 1 }
    logging_config { sampling_config { sampling_rate: 0.5 } }
  }
}
""")
    js = tmp_path / "m.json"
    js.write_bytes(orjson.dumps({"model_config_list": {"config": [{
        "name": "a", "base_path": "a", "modelVersionPolicy": {"specific": {"versions": ["1", 4]}},
        "version_labels": {"stable": 1}}]}}))
    for path in (text, js):
        (src,) = read_model_config_file(path)
        assert src.name == "a" and src.base_path == (tmp_path / "a").resolve()
        assert src.policy == VersionPolicy("specific", versions=(1, 4))
        assert src.labels == {"stable": 1} and not src.single


@pytest.mark.parametrize("body,fragment", [
    ("model_config_list { config { name: 'a' base_path: 'a' } ", "not a valid model_config_list"),
    ("model_config_list { }", "no config entries"),
    ("model_config_list { config { base_path: 'a' } }", "has no name"),
    ("model_config_list { config { name: 'a' base_path: 'nowhere' } }", "does not exist"),
    ("model_config_list { config { name: 'a' base_path: 'a' model_platform: 'pytorch' } }",
     "model_platform 'pytorch'"),
    ("model_config_list { config { name: 'a' base_path: 'a' } config { name: 'a' base_path: 'a' } }",
     "repeated: ['a']"),
])
def test_config_errors(tmp_path: Path, body: str, fragment: str) -> None:
    (tmp_path / "a").mkdir()
    path = tmp_path / "bad.config"
    path.write_text(body)
    with pytest.raises(ModelFormatError) as info:
        read_model_config_file(path)
    assert fragment in str(info.value)


def test_version_policies() -> None:
    on_disk = [1, 5, 3, 10]
    assert VersionPolicy().select(on_disk) == [10]
    assert VersionPolicy("latest", num_versions=2).select(on_disk) == [10, 5]
    assert VersionPolicy("all").select(on_disk) == [10, 5, 3, 1]
    assert VersionPolicy("specific", versions=(3, 7)).select(on_disk) == [3]


def test_version_directory_contents(tmp_path: Path) -> None:
    v = tmp_path / "1"
    v.mkdir()
    (v / "model.keras").write_bytes(b"x")
    assert model_file_in(v) == (v / "model.keras", None)
    (v / "model.keras").unlink()
    (v / "arch.json").write_text("{}")
    (v / "weights.h5").write_bytes(b"x")
    assert model_file_in(v) == (v / "arch.json", v / "weights.h5")
    (v / "other.keras").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="expected one model file"):
        model_file_in(v)
    (tmp_path / "not-a-version").mkdir()
    (tmp_path / ".tmp-2").mkdir()
    assert sources_from_path(tmp_path)[0].base_path == tmp_path.resolve()


def test_floats_round_trip_through_json() -> None:
    values = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 1e3
    values = np.concatenate([values, np.float32([1e-38, 3.4028235e38, 1 / 3, 0.1, -0.0])])
    for arrays in ([values], [np.append(values, np.nan)]):
        text = dumps_arrays({"predictions": arrays[0]}, arrays)
        back = np.asarray(json.loads(text)["predictions"], np.float32)
        np.testing.assert_array_equal(back, arrays[0])
    assert dumps_arrays({"p": np.float32([0.1, np.inf])}, [np.float32([np.inf])]) == \
        b'{"p":[0.1,Infinity]}'


def _run_batcher(batcher: Batcher, requests: list[np.ndarray]) -> list:
    async def go() -> list:
        futures = [batcher.submit([r]) for r in requests]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        return asyncio.run(go())
    finally:
        batcher.close(5)


def test_batcher_merges_concurrent_requests_and_splits_results() -> None:
    calls: list[int] = []

    def run(arrays: list[np.ndarray], chunk: int | None) -> list[np.ndarray]:
        calls.append(arrays[0].shape[0])
        time.sleep(0.01)
        return [arrays[0] * 2]

    batcher = Batcher(run, name="t", max_batch_size=8, timeout=0.2, threads=1)
    reqs = [np.full((1 + i % 3, 2), i, np.float32) for i in range(12)]
    results = _run_batcher(batcher, reqs)
    for r, out in zip(reqs, results):
        np.testing.assert_array_equal(out[0], r * 2)
    assert sum(calls) == sum(len(r) for r in reqs) and max(calls) <= 8 and len(calls) < 12


def test_batcher_keeps_shapes_apart_and_runs_large_requests_alone() -> None:
    seen: list[tuple] = []

    def run(arrays: list[np.ndarray], chunk: int | None) -> list[np.ndarray]:
        seen.append((arrays[0].shape, chunk))
        return [arrays[0].sum(axis=1)]

    batcher = Batcher(run, name="t", max_batch_size=4, timeout=0.02, threads=2)
    reqs = [np.ones((1, 3), np.float32), np.ones((1, 5), np.float32), np.ones((9, 3), np.float32)]
    results = _run_batcher(batcher, reqs)
    assert [r[0].tolist() for r in results] == [[3.0], [5.0], [3.0] * 9]
    assert ((9, 3), 4) in seen and all(s[0][1] in (3, 5) for s in seen)


def test_batcher_bounds_its_queue_and_reports_errors() -> None:
    def run(arrays: list[np.ndarray], chunk: int | None) -> list[np.ndarray]:
        raise ValueError("boom")

    # Requests wait in the open batch for 1 s, so the first two fill the queue.
    batcher = Batcher(run, name="t", max_batch_size=64, timeout=1.0, threads=1, max_queue=2)

    async def go() -> list:
        futures = [batcher.submit([np.zeros((1, 1))]) for _ in range(2)]
        with pytest.raises(ServingError) as info:
            batcher.submit([np.zeros((1, 1))])
        assert info.value.http_status == 429
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(go())
    finally:
        batcher.close(5)
    assert all(isinstance(r, ServingError) and r.http_status == 500 and "boom" in r.message
               for r in results)
