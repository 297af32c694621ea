"""Every ONNX op type the converters can write has a C emitter, and the tensor-op emitters
(Einsum, CumSum, TopK, GatherElements) compile to C that matches Keras.

How the op types are found (statically, so a converter nobody has a test model for still
counts): every module that builds ONNX nodes for the lowering (export/onnx_builder.py,
export/onnx_lower.py, export/onnx_ops/*.py) is parsed with `ast`, and
 1. the first argument of every node-building call, `<x>.op(...)`, `<x>.reduce(...)` and
    `make_node(...)`, when it is a string literal, is an op type;
 2. a first argument that is not a literal (`b.op(kind, ...)`, `c.op(op_type, ...)`) comes
    from a table the converter indexes, so every other string literal in the module that
    names an ONNX op (`onnx.defs.has`) counts too, except where such a string cannot be an
    ONNX op type the module writes: dict keys (the tables map Keras/TF/TFLite names to ONNX
    ones), arguments of decorators and of `converter(...)` calls, and the names a `for` loop
    hands to `converter(...)` (all three name the Keras layers being converted, such as
    LSTM or Attention, which are also ONNX op names).
The scan is checked against itself: it must find ops written both ways (literal Conv, table
Acosh/MaxPool), and it must not pick up the Keras layer names LSTM/GRU/Attention.

A guard keeps the module list honest: every other module under tfless/ that calls `make_node`
or `.op(` must be one of the ONNX post-passes the C export never runs (onnx_float16.py casts
weights to float16, onnx_quantize.py writes QuantizeLinear/DequantizeLinear pairs) or the C
backend itself.

Op types the C backend handles without an emitter: views (Reshape, Flatten, Squeeze,
Unsqueeze; emit.VIEWS) and shape ops that are always folded (Shape, Size; lower.SHAPE_OPS).
"""

from __future__ import annotations

import ast
import functools
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, keras_predict, randomize_weights
from tfless.export.c import export_c
from tfless.export.c.emit import VIEWS
from tfless.export.c.lower import SHAPE_OPS
from tfless.export.c.ops import load_emitters

EXPORT = Path(tfless.__file__).parent / "export"
BUILDERS = {"op", "reduce", "make_node"}
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def _converter_modules() -> list[Path]:
    return [EXPORT / "onnx_builder.py", EXPORT / "onnx_lower.py",
            *sorted((EXPORT / "onnx_ops").glob("*.py"))]


def _call_name(call: ast.Call) -> str | None:
    fn = call.func
    return fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)


def _excluded_strings(tree: ast.AST) -> set[int]:
    """ids of string nodes that name Keras layers or source ops, never ONNX op types."""
    out: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Dict):
            out.update(id(k) for k in n.keys if k is not None)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.update(id(s) for d in n.decorator_list for s in ast.walk(d))
        elif isinstance(n, ast.Call) and _call_name(n) == "converter":
            out.update(id(s) for a in n.args for s in ast.walk(a))
        elif isinstance(n, ast.For) and any(isinstance(c, ast.Call) and _call_name(c) == "converter"
                                            for s in n.body for c in ast.walk(s)):
            out.update(id(s) for s in ast.walk(n.iter))
    return out


@functools.cache
def written_op_types() -> dict[str, set[str]]:
    """ONNX op type -> modules that can write it."""
    import onnx.defs

    found: dict[str, set[str]] = {}
    for path in _converter_modules():
        tree = ast.parse(path.read_text(), str(path))
        excluded = _excluded_strings(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and _call_name(n) in BUILDERS and n.args:
                first = n.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.setdefault(first.value, set()).add(path.name)
            elif (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in excluded
                  and n.value.isidentifier() and onnx.defs.has(n.value)):
                found.setdefault(n.value, set()).add(path.name)
    return found


def test_the_scan_reads_every_module_that_builds_lowering_nodes() -> None:
    post_passes = {EXPORT / "onnx_float16.py", EXPORT / "onnx_quantize.py"}
    scanned = set(_converter_modules())
    builders = set()
    for path in Path(tfless.__file__).parent.rglob("*.py"):
        if EXPORT / "c" in path.parents:
            continue
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(n, ast.Call) and _call_name(n) in {"make_node", "op"} and n.args
               and isinstance(n.func, ast.Attribute) for n in ast.walk(tree)):
            builders.add(path)
    assert builders - post_passes <= scanned, sorted(map(str, builders - post_passes - scanned))
    assert EXPORT / "onnx_builder.py" in builders  # the scan sees the builder's own calls


def test_the_scan_finds_ops_both_ways_and_skips_layer_names() -> None:
    found = written_op_types()
    assert {"Conv", "MatMul", "Scan", "TopK", "Einsum"} <= set(found)  # literal first arguments
    assert {"Acosh", "MaxPool", "AveragePool", "ArgMax"} <= set(found)  # from indexed tables
    assert not {"LSTM", "GRU", "RNN", "Attention"} & set(found)  # Keras layer names


def test_every_written_onnx_op_has_a_c_emitter() -> None:
    emitters = load_emitters()
    missing = {op: sorted(mods) for op, mods in sorted(written_op_types().items())
               if op not in emitters and op not in VIEWS and op not in SHAPE_OPS}
    assert not missing, f"ONNX op types the converters write without a C emitter: {missing}"


# ----- the tensor-op emitters against Keras -------------------------------------------------
def _compile_and_run(model_path: Path, out: Path, xs: list[np.ndarray],
                     check: bool = True) -> subprocess.CompletedProcess:
    export_c(tfless.load(model_path), out)
    built = subprocess.run(["make", "-s", "all", "test"], cwd=out, env=CLEAN_ENV,
                           capture_output=True, text=True)
    assert built.returncode == 0, f"make failed:\n{built.stdout[-2000:]}{built.stderr[-3000:]}"
    n = xs[0].shape[0]
    raw = np.concatenate([x.reshape(n, -1).astype("<f4") for x in xs], axis=1).tobytes()
    return subprocess.run([str(out / "model")], input=raw, capture_output=True, check=check,
                          env=CLEAN_ENV, timeout=120)


def _flat(ys: list[np.ndarray], n: int) -> np.ndarray:
    return np.concatenate([y.reshape(n, -1) for y in ys], axis=1)


def _rand(*shape: int, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.slow
def test_einsum_cumsum_topk_gather_elements_match_keras(tmp_path: Path) -> None:
    import keras

    o = keras.ops
    x = keras.Input((4, 6))
    dense = keras.layers.EinsumDense("abc,cd->abd", output_shape=(4, 5), bias_axes="d")(x)
    heads = keras.layers.EinsumDense("abc,cde->abde", output_shape=(4, 2, 3))(x)
    outs = [
        dense, heads,
        o.einsum("...ij,jk->...ik", x, o.ones((6, 2))),  # ellipsis, broadcast constant
        o.einsum("bij->bj", x),  # summed label
        o.einsum("bii->bi", x[:, :, :4]),  # diagonal: a label repeated in one term
        keras.layers.Activation("sparsemax")(x),  # TopK (sorted, largest) + CumSum
        o.cumsum(x, axis=1),
        o.take_along_axis(x, o.argmax(x, axis=1, keepdims=True), axis=1),  # GatherElements
        o.take_along_axis(x, o.argmin(x, axis=2, keepdims=True), axis=2),
    ]
    mha_q = keras.Input((3, 4))
    mha, scores = keras.layers.MultiHeadAttention(2, 3)(mha_q, x[:, :, :4],
                                                        return_attention_scores=True)
    model = keras.Model([x, mha_q], outs + [mha, scores])
    randomize_weights(model)
    xs = [_rand(3, 4, 6), _rand(3, 3, 4, seed=6)]
    xs[0][0, 1, :3] = xs[0][0, 1, 3:]  # ties (TopK keeps lower indices first)
    want = keras_predict(model, xs)
    model.save(tmp_path / "m.keras")
    done = _compile_and_run(tmp_path / "m.keras", tmp_path / "c", xs)
    got = np.frombuffer(done.stdout, "<f4").reshape(3, -1)
    assert_close([got], [_flat(want, 3)], "C tensor ops")


@pytest.mark.slow
def test_gather_elements_wraps_negative_ids_and_flags_out_of_range(tmp_path: Path) -> None:
    import keras

    x, ids = keras.Input((3, 4)), keras.Input((2, 4), dtype="int32")
    model = keras.Model([x, ids], keras.ops.take_along_axis(x, ids, axis=1))
    model.save(tmp_path / "m.keras")
    data = _rand(2, 3, 4)
    good = np.array([[[0, 1, 2, -1], [-3, 0, 1, 2]]] * 2, np.int32)
    done = _compile_and_run(tmp_path / "m.keras", tmp_path / "c", [data, good])
    got = np.frombuffer(done.stdout, "<f4").reshape(2, 2, 4)
    np.testing.assert_array_equal(got, np.take_along_axis(data, good % 3, axis=1))
    bad = good.copy()
    bad[1, 0, 2] = 3
    n = 2
    raw = np.concatenate([data.reshape(n, -1), bad.reshape(n, -1).astype("<f4")], axis=1)
    failed = subprocess.run([str(tmp_path / "c" / "model")], input=raw.astype("<f4").tobytes(),
                            capture_output=True, env=CLEAN_ENV, timeout=60)
    assert failed.returncode == 1 and b"sample 1" in failed.stderr and b"out of range" in failed.stderr


@pytest.mark.slow
def test_einsum_implicit_output_matches_onnx_runtime(tmp_path: Path) -> None:
    """An equation without '->' (ONNX and NumPy: the labels used once, sorted, so 'bji' is
    a transpose) checked against ONNX Runtime on the same lowered graph. (Keras on the TF
    backend reads 'bji' as the identity, so Keras is not the reference here.)"""
    import keras

    x = keras.Input((4, 6))
    model = keras.Model(x, keras.ops.einsum("bji", x))
    model.save(tmp_path / "m.keras")
    xs = [_rand(2, 4, 6)]
    want = tfless.load(tmp_path / "m.keras", backend="onnxruntime").predict(xs[0])
    np.testing.assert_array_equal(want, xs[0].transpose(0, 2, 1))
    done = _compile_and_run(tmp_path / "m.keras", tmp_path / "c", xs)
    assert_close([np.frombuffer(done.stdout, "<f4").reshape(2, -1)], [_flat([want], 2)],
                 "C implicit einsum")


@pytest.mark.slow
def test_einsum_attention_over_a_free_sequence_axis(tmp_path: Path) -> None:
    """Einsum loop bounds that follow the run-time length (`steps`): attention scores over
    a sequence compiled for up to 9 steps, run at 5."""
    import keras

    q = keras.Input((None, 4))
    out, scores = keras.layers.MultiHeadAttention(2, 3)(q, q, return_attention_scores=True)
    model = keras.Model(q, [out, scores])
    randomize_weights(model)
    xs = [_rand(2, 5, 4)]
    want = keras_predict(model, xs[0])
    model.save(tmp_path / "m.keras")
    out_dir = tmp_path / "c"
    export_c(tfless.load(tmp_path / "m.keras"), out_dir, max_steps=9)
    built = subprocess.run(["make", "-s", "all", "test"], cwd=out_dir, env=CLEAN_ENV,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    code = (out_dir / "model.c").read_text()
    assert "Einsum" in code and "steps" in code
    done = subprocess.run([str(out_dir / "model"), "--steps", "5"],
                          input=xs[0].astype("<f4").tobytes(), capture_output=True, check=True,
                          env=CLEAN_ENV, timeout=60)
    assert_close([np.frombuffer(done.stdout, "<f4").reshape(2, -1)], [_flat(want, 2)],
                 "C attention at 5 of 9 steps")


@pytest.mark.slow
def test_topk_helper_matches_onnx_runtime_values_and_tie_order(tmp_path: Path) -> None:
    """The TopK indices no converter exposes yet: the C helper against ONNX Runtime's TopK
    (ties: the lower index first) on (outer, n, inner) blocks with repeated values."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from tfless.export.c.ops.tensor import TOPK_C

    outer, n, inner, k = 2, 7, 3, 4
    x = np.round(_rand(outer, n, inner, seed=9) * 2) / 2  # few distinct values: many ties
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=1, sorted=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("i", TensorProto.INT64, None)],
        [onnx.numpy_helper.from_array(np.array([k], np.int64), "k")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want_v, want_i = sess.run(None, {"x": x})
    main = (f"#include <math.h>\n#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n"
            f"{TOPK_C}\nint main(void) {{\n"
            f"    static float x[{x.size}], v[{outer * k * inner}]; static int64_t ix[{outer * k * inner}];\n"
            f"    if (fread(x, sizeof(float), {x.size}, stdin) != {x.size}) return 1;\n"
            f"    topk_axis(x, v, ix, {outer}, {n}, {inner}, {k}, 1);\n"
            f"    fwrite(v, sizeof(float), {outer * k * inner}, stdout);\n"
            f"    fwrite(ix, sizeof(int64_t), {outer * k * inner}, stdout);\n    return 0;\n}}\n")
    (tmp_path / "topk.c").write_text(main)
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-std=c99", "-o", "topk", "topk.c"],
                   cwd=tmp_path, check=True, env=CLEAN_ENV, capture_output=True)
    done = subprocess.run([str(tmp_path / "topk")], input=x.astype("<f4").tobytes(),
                          capture_output=True, check=True, env=CLEAN_ENV, timeout=60)
    size = outer * k * inner
    got_v = np.frombuffer(done.stdout[:4 * size], "<f4").reshape(want_v.shape)
    got_i = np.frombuffer(done.stdout[4 * size:], "<i8").reshape(want_i.shape)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_i, want_i)
