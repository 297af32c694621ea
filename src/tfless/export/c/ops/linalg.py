"""C emitters for matrix products: MatMul (NumPy batching rules) and Gemm.

The inner loops run i-k-j (a row of the output accumulated from rows of B), the order
compilers vectorize at -O2 without any intrinsics.
"""

from __future__ import annotations

from ..dims import Dim, strides
from ..emit import Context, OpNode, broadcast_strides, emits, index, loops


def _matmul_loops(a: str, b: str, y: str, m: Dim, k: Dim, n: Dim, a_rs: Dim, a_cs: Dim,
                  b_rs: Dim, b_cs: Dim, init: str | None = None, alpha: str = "") -> str:
    """y[m, n] (row-major, contiguous) = alpha * a[m, k] @ b[k, n] (+ init expression of c, j)."""
    start = init or "0.0f"
    return (f"for (int i = 0; i < {m}; ++i) {{\n"
            f"    float* yr = {y} + (size_t)i * {n};\n"
            f"    for (int j = 0; j < {n}; ++j) yr[j] = 0.0f;\n"
            f"    for (int p = 0; p < {k}; ++p) {{\n"
            f"        const float av = {alpha}{a}[{_at('i', a_rs)} + {_at('p', a_cs)}];\n"
            f"        const float* br = {b} + {_at('p', b_rs)};\n"
            f"        for (int j = 0; j < {n}; ++j) yr[j] += av * br[{_at('j', b_cs)}];\n"
            f"    }}\n"
            + (f"    for (int j = 0; j < {n}; ++j) yr[j] += {start};\n" if init else "")
            + "}")


def _at(i: str, stride: Dim) -> str:
    return i if isinstance(stride, int) and stride == 1 else f"(size_t){i} * {stride}"


@emits("MatMul")
def emit_matmul(node: OpNode, ctx: Context) -> str:
    a, b = node.inputs[:2]
    y = node.outputs[0]
    if a.ctype != "float" or b.ctype != "float":
        raise node.fail(f"MatMul of {a.dtype.name} x {b.dtype.name}; the C emitter multiplies float32")
    a_shape = (1, *a.shape) if a.rank == 1 else a.shape
    b_shape = (*b.shape, 1) if b.rank == 1 else b.shape
    m, k = a_shape[-2:]
    n = b_shape[-1]
    batch = tuple(y.shape[:len(y.shape) - (a.rank > 1) - (b.rank > 1)])
    a_bs = broadcast_strides(a_shape[:-2], batch) if batch else []
    b_bs = broadcast_strides(b_shape[:-2], batch) if batch else []
    a_bs = [st * (m * k) for st in a_bs]
    b_bs = [st * (k * n) for st in b_bs]
    idx = [f"i{q}" for q in range(len(batch))]
    pa, pb = ctx.data(a), ctx.data(b)
    body = (f"const float* A = {_plus(pa, index(idx, a_bs))};\n"
            f"const float* B = {_plus(pb, index(idx, b_bs))};\n"
            f"float* Y = {_plus(y.ref, index(idx, [s * m * n for s in strides(batch)]))};\n"
            + _matmul_loops("A", "B", "Y", m, k, n, k, 1, n, 1))
    return loops(batch, body) if batch else _indent(body)


def _plus(ptr: str, offset: str) -> str:
    return ptr if offset == "0" else f"{ptr} + {offset}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))


@emits("Gemm")
def emit_gemm(node: OpNode, ctx: Context) -> str:
    a, b = node.inputs[:2]
    c = node.input(2)
    y = node.outputs[0]
    ta, tb = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    a_rs, a_cs = (1, m) if ta else (k, 1)
    b_rs, b_cs = (1, k) if tb else (n, 1)
    init = None
    if c is not None:
        cs = broadcast_strides(c.shape, (m, n))
        scale = "" if beta == 1.0 else f"{beta!r}f * "
        init = f"{scale}{ctx.data(c)}[(size_t)i * {cs[0]} + (size_t)j * {cs[1]}]"
    body = _matmul_loops(ctx.data(a), ctx.data(b), y.ref, m, k, n, a_rs, a_cs, b_rs, b_cs, init,
                         "" if alpha == 1.0 else f"{alpha!r}f * ")
    return _indent(body)
