"""Thread policy and batch sharding of the NumPy runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.parity import randomize_weights
from tfless.graph import Graph, Node, TensorSpec
from tfless.runtime import plan as plan_module
from tfless.runtime import threads
from tfless.runtime.plan import Plan

PROBE = ("import json, numpy, tfless; from tfless.runtime import threads; "
         "from tfless.runtime.plan import Plan; from tfless.graph import Graph; "
         "Plan(Graph([], [], [], [])); "
         "print(json.dumps([threads.env_threads(), threads.blas_threads(), "
         "threads.worker_count()]))")


def _probe(env_updates: dict[str, str]) -> list:
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARS}
    env.update(env_updates)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("var", threads.THREAD_VARS)
def test_thread_variable_is_honoured(var: str) -> None:
    env_count, blas, workers = _probe({var: "1"})
    assert env_count == 1 and workers == 1
    assert blas == 1  # BLAS itself is capped once a plan was built


def test_smallest_thread_variable_wins() -> None:
    env_count, _, workers = _probe({"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"})
    assert env_count == 1 and workers == 1


def test_default_is_every_usable_cpu() -> None:
    env_count, blas, workers = _probe({})
    assert env_count is None
    assert workers == min(threads.cpu_count(), blas)


def test_single_threaded_blas_nests_and_restores() -> None:
    before = threads.blas_threads()
    with threads.single_threaded_blas():
        with threads.single_threaded_blas():
            assert threads.blas_threads() == 1
        assert threads.blas_threads() == 1
    assert threads.blas_threads() == before


def _conv_graph(extra: Node | None = None) -> Graph:
    rng = np.random.default_rng(0)
    w = {"kernel": rng.normal(size=(3, 3, 3, 8)).astype(np.float32),
         "bias": rng.normal(size=8).astype(np.float32)}
    dense = {"kernel": rng.normal(size=(8, 5)).astype(np.float32),
             "bias": np.zeros(5, np.float32)}
    nodes = [
        Node("conv", "Conv2D", {"name": "conv", "filters": 8, "kernel_size": [3, 3],
                                "padding": "same", "activation": "relu"}, w, ["x"], ["c"]),
        Node("pool", "GlobalAveragePooling2D", {"name": "pool"}, {}, ["c"], ["p"]),
        Node("dense", "Dense", {"name": "dense", "units": 5, "activation": "softmax"}, dense,
             ["p"], ["y"]),
    ]
    if extra is not None:
        nodes.append(extra)
    return Graph([TensorSpec("x", (None, 10, 10, 3), "float32")], nodes, ["y"], ["y"])


def _record_runs(monkeypatch: pytest.MonkeyPatch, plan: Plan, cost=None) -> list[int]:
    """Record the batch size of every inner run; with `cost`, a fake clock advances by
    cost(rows) per inner run, so which way is faster is decided by the test."""
    calls: list[int] = []
    original = plan._run
    clock = [0.0]

    def run(xs, keep_all=False):
        calls.append(len(xs[0]))
        if cost is not None:
            clock[0] += cost(len(xs[0]))
        return original(xs, keep_all)

    monkeypatch.setattr(plan, "_run", run)
    if cost is not None:
        monkeypatch.setattr(plan_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return calls


def _two_workers_one_blas_thread(monkeypatch: pytest.MonkeyPatch, min_work: float = 0.0) -> None:
    # the ways compared are then whole and sharded (single-threaded BLAS equals whole)
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    monkeypatch.setattr(threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(plan_module, "SHARD_MIN_SECONDS", 0.0)
    monkeypatch.setattr(plan_module, "SHARD_MIN_WORK", min_work)


def test_sharded_run_equals_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = Plan(_conv_graph())
    assert plan.separable
    x = np.random.default_rng(1).random((11, 10, 10, 3), dtype=np.float32)
    blas_before = threads.blas_threads()
    _two_workers_one_blas_thread(monkeypatch)
    calls = _record_runs(monkeypatch, plan)
    plan.run([x])  # the bucket's first call warms up, whole and unmeasured
    whole = plan.run([x])[0]  # then whole, measured
    sharded = plan.run([x])[0]  # then the alternative, measured too
    assert calls == [11, 11, 4, 4, 3]
    assert set(plan.choices[x.shape[0].bit_length()].seconds) == {"whole", "sharded"}
    # BLAS may round a matmul over fewer rows differently in the last bit
    np.testing.assert_allclose(sharded, whole, rtol=1e-5, atol=1e-7)
    monkeypatch.undo()
    assert threads.blas_threads() == blas_before


def test_layers_that_may_mix_the_batch_are_never_sharded() -> None:
    mixing = Node("sum", "keras.ops.Sum", {"name": "sum", "axis": 0}, {}, ["y"], ["z"])
    assert not Plan(_conv_graph(mixing)).separable
    concat = Node("cat", "Concatenate", {"name": "cat", "axis": 0}, {}, ["y", "y"], ["z"])
    assert not Plan(_conv_graph(concat)).separable


def test_a_cheap_model_runs_whole_and_tries_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    # a whole batch that takes under SHARD_MIN_SECONDS keeps its latency: no alternative is
    # even measured (the fake clock makes each run cost 1 ms)
    plan = Plan(_conv_graph())
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    calls = _record_runs(monkeypatch, plan, cost=lambda rows: 0.001)
    x = np.random.default_rng(2).random((11, 10, 10, 3), dtype=np.float32)
    for _ in range(5):
        plan.run([x])
    assert calls == [11] * 5
    assert set(plan.choices[4].seconds) == {"whole"}


def test_shards_hold_the_minimum_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # cheap per item: shards are as large as SHARD_MIN_WORK needs, never 4 rows
    plan = Plan(_conv_graph())
    _two_workers_one_blas_thread(monkeypatch, min_work=0.002)
    calls = _record_runs(monkeypatch, plan, cost=lambda rows: rows * 1e-4)  # 0.1 ms per item
    x = np.random.default_rng(3).random((64, 10, 10, 3), dtype=np.float32)
    for _ in range(3):  # warm-up, whole, sharded
        plan.run([x])
    assert calls == [64, 64, 20, 20, 20, 4]
    # too few items for two such shards: the batch is never split
    calls.clear()
    y = x[:30]
    for _ in range(3):
        plan.run([y])
    assert calls == [30, 30, 30]


def test_the_choice_is_measured_and_re_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = Plan(_conv_graph())
    _two_workers_one_blas_thread(monkeypatch)
    monkeypatch.setattr(plan_module, "RECHECK_EVERY", 4)
    shard_cost = [0.01]
    calls = _record_runs(monkeypatch, plan,
                         cost=lambda rows: 1.0 if rows == 12 else shard_cost[0])
    x = np.random.default_rng(4).random((12, 10, 10, 3), dtype=np.float32)
    plan.run([x])  # the unmeasured warm-up
    calls.clear()
    ways = []

    def run() -> None:
        before = len(calls)
        plan.run([x])
        ways.append("whole" if calls[before:] == [12] else "sharded")

    for _ in range(4):
        run()
    # whole measured, sharded measured and faster: sharded from then on
    assert ways == ["whole", "sharded", "sharded", "sharded"]
    shard_cost[0] = 1.0  # sharding became slow (another process took the cores)
    for _ in range(4):
        run()
    # one slow sharded run (its mean now above whole's), then a due re-check of the way
    # not chosen (sharded again), then whole
    assert ways[4:] == ["sharded", "sharded", "whole", "whole"]
    shard_cost[0] = 0.01  # and fast again: a later re-check finds that
    for _ in range(12):
        run()
    # re-checks every 4th call: the first one halves sharded's mean, the second brings it
    # below whole's
    assert ways[8:] == ["whole", "sharded", "whole", "whole", "whole", "sharded",
                        "sharded", "sharded", "sharded", "whole", "sharded", "sharded"]
    # another batch size is another bucket, measured on its own
    calls.clear()
    plan.run([x[:3]])
    plan.run([x[:3]])
    assert calls == [3, 3] and set(plan.choices[2].seconds) == {"whole"}


def _sequence_model(tmp_path: Path, kind: str):
    import keras

    L = keras.layers
    tokens = keras.Input((12,), dtype="int32")
    h = L.Embedding(50, 8, mask_zero=True)(tokens)
    if kind == "attention":
        h = L.LayerNormalization()(L.Add()([h, L.MultiHeadAttention(2, 4)(h, h)]))
        h = L.GlobalAveragePooling1D()(h)
    elif kind == "time_distributed":
        h = L.TimeDistributed(L.Dense(5, activation="tanh"))(h)
        h = L.GlobalAveragePooling1D()(h)
    else:
        h = L.LSTM(6)(h)
    model = keras.Model(tokens, L.Dense(3, activation="softmax")(h))
    randomize_weights(model, seed=3)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    return model, path


@pytest.mark.parametrize("kind, sharded", [("attention", True), ("time_distributed", True),
                                           ("lstm", False)])
def test_sequence_models_shard_except_recurrent_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     kind: str, sharded: bool) -> None:
    # masks travel inside each shard; recurrent layers stay whole-batch (GIL-bound steps)
    import tfless

    model, path = _sequence_model(tmp_path, kind)
    loaded = tfless.load(path)
    assert loaded.plan.separable is sharded
    x = np.random.default_rng(4).integers(0, 50, (9, 12)).astype(np.int32)
    x[:, 8:] = 0  # padded tails: the mask matters
    _two_workers_one_blas_thread(monkeypatch)
    calls = _record_runs(monkeypatch, loaded.plan)
    got = [loaded.predict(x) for _ in range(3)]  # warm-up, whole, then sharding if it may
    assert calls == ([9, 9, 4, 4, 1] if sharded else [9, 9, 9])
    want = model.predict(x, verbose=0)
    for g in got:
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5)


def test_batch_one_tries_single_threaded_blas_when_it_costs_enough(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # batch 1 cannot be sharded, but two BLAS threads may lose to one: measured like any
    # other bucket once a call costs ONE_THREAD_MIN_SECONDS; the fake clock makes the
    # single-threaded runs cheaper, so they are kept
    plan = Plan(_conv_graph())
    monkeypatch.setattr(threads, "blas_threads", lambda: 2)
    limits: list[int] = []
    clock = [0.0]
    original = plan._run

    def run(xs, keep_all=False):
        one = threads._single_users > 0
        limits.append(1 if one else 2)
        clock[0] += 0.003 if one else 0.005
        return original(xs, keep_all)

    monkeypatch.setattr(plan, "_run", run)
    monkeypatch.setattr(plan_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    x = np.random.default_rng(5).random((1, 10, 10, 3), dtype=np.float32)
    want = original([x])[0]
    outs = [plan.run([x])[0] for _ in range(4)]
    assert limits == [2, 2, 1, 1]  # warm-up, whole measured, then the faster single thread
    assert set(plan.choices[1].seconds) == {"whole", "one-thread"}
    for got in outs:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # a cheap batch-1 model (under ONE_THREAD_MIN_SECONDS) only ever runs whole
    cheap = Plan(_conv_graph())
    calls = _record_runs(monkeypatch, cheap, cost=lambda rows: 0.0005)
    for _ in range(4):
        cheap.run([x])
    assert calls == [1] * 4 and set(cheap.choices[1].seconds) == {"whole"}
