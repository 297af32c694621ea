"""Raw TensorFlow linear-algebra ops on batches of matrices (`tf.linalg`): MatrixInverse,
MatrixDeterminant, Cholesky, MatrixSolve, MatrixTriangularSolve and the main-diagonal forms
of MatrixDiagV3 / MatrixDiagPartV3 / MatrixSetDiagV3 (what `tf.linalg.diag`,
`diag_part` and `set_diag` write by default). NumPy's LAPACK routines do the work.
"""

from __future__ import annotations

import numpy as np

from .common import Compute, TfNode, arr, ints, tf_kernel


def _square(node: TfNode, x: np.ndarray, what: str = "input") -> np.ndarray:
    x = arr(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2] or x.dtype.kind != "f":
        raise node.bad_input(f"{what} must be float square matrices, got {x.dtype} {x.shape}")
    return x


def _adjoint(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _singular(node: TfNode) -> Exception:
    return node.bad_input("the matrix is not invertible")


@tf_kernel("MatrixInverse")
def matrix_inverse(node: TfNode) -> Compute:
    adjoint = bool(node.attr("adjoint", False))

    def compute(x: np.ndarray) -> np.ndarray:
        x = _square(node, x)
        try:
            y = np.linalg.inv(_adjoint(x) if adjoint else x)
        except np.linalg.LinAlgError:
            raise _singular(node) from None
        return y.astype(x.dtype, copy=False)

    return compute


@tf_kernel("MatrixDeterminant")
def matrix_determinant(node: TfNode) -> Compute:
    def compute(x: np.ndarray) -> np.ndarray:
        x = _square(node, x)
        return arr(np.linalg.det(x)).astype(x.dtype, copy=False)

    return compute


@tf_kernel("Cholesky")
def cholesky(node: TfNode) -> Compute:
    def compute(x: np.ndarray) -> np.ndarray:
        x = _square(node, x)
        # TF reads only the lower triangle, as if the matrix were symmetric
        lower = np.tril(x)
        sym = lower + _adjoint(np.tril(x, -1))
        try:
            return np.linalg.cholesky(sym).astype(x.dtype, copy=False)
        except np.linalg.LinAlgError:
            raise node.bad_input("the matrix is not positive definite") from None

    return compute


def _rhs(node: TfNode, matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    rhs = arr(rhs)
    if rhs.ndim < 2 or rhs.shape[-2] != matrix.shape[-1] or rhs.dtype != matrix.dtype:
        raise node.bad_input(f"right-hand side {rhs.dtype} {rhs.shape} does not fit matrices "
                             f"{matrix.dtype} {matrix.shape}")
    return rhs


@tf_kernel("MatrixSolve")
def matrix_solve(node: TfNode) -> Compute:
    adjoint = bool(node.attr("adjoint", False))

    def compute(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        matrix = _square(node, matrix, "matrix")
        rhs = _rhs(node, matrix, rhs)
        try:
            y = np.linalg.solve(_adjoint(matrix) if adjoint else matrix, rhs)
        except np.linalg.LinAlgError:
            raise _singular(node) from None
        return y.astype(matrix.dtype, copy=False)

    return compute


@tf_kernel("MatrixTriangularSolve")
def matrix_triangular_solve(node: TfNode) -> Compute:
    lower, adjoint = bool(node.attr("lower", True)), bool(node.attr("adjoint", False))

    def compute(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        matrix = _square(node, matrix, "matrix")
        rhs = _rhs(node, matrix, rhs)
        # only the named triangle is read; the other is taken as zeros
        tri = np.tril(matrix) if lower else np.triu(matrix)
        if np.any(np.diagonal(tri, axis1=-2, axis2=-1) == 0):
            raise _singular(node)
        shape = np.broadcast_shapes(tri.shape[:-2], rhs.shape[:-2])
        a = np.broadcast_to(_adjoint(tri) if adjoint else tri, shape + tri.shape[-2:])
        b = np.broadcast_to(rhs, shape + rhs.shape[-2:])
        return np.linalg.solve(a, b).astype(matrix.dtype, copy=False)

    return compute


def _main_diagonal(node: TfNode, k: np.ndarray) -> None:
    if ints(k) not in ([0], [0, 0]):
        raise node.refuse("k (input)", ints(k), "0 (the main diagonal)")


@tf_kernel("MatrixDiagV3", "MatrixDiagV2")
def matrix_diag(node: TfNode) -> Compute:
    def compute(diagonal: np.ndarray, k: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                padding: np.ndarray) -> np.ndarray:
        _main_diagonal(node, k)
        d = arr(diagonal)
        n = d.shape[-1] if d.ndim else 1
        r, c = int(np.asarray(rows).reshape(-1)[0]), int(np.asarray(cols).reshape(-1)[0])
        r, c = (n if r == -1 else r), (n if c == -1 else c)
        if min(r, c) != n:
            raise node.bad_input(f"a {r}x{c} matrix does not hold a main diagonal of {n}")
        out = np.full(d.shape[:-1] + (r, c), arr(padding).reshape(()), d.dtype)
        idx = np.arange(n)
        out[..., idx, idx] = d
        return out

    return compute


@tf_kernel("MatrixDiagPartV3", "MatrixDiagPartV2")
def matrix_diag_part(node: TfNode) -> Compute:
    def compute(x: np.ndarray, k: np.ndarray, padding: np.ndarray) -> np.ndarray:
        _main_diagonal(node, k)
        x = arr(x)
        if x.ndim < 2:
            raise node.bad_input(f"input must be a batch of matrices, got shape {x.shape}")
        return np.ascontiguousarray(np.diagonal(x, axis1=-2, axis2=-1))

    return compute


@tf_kernel("MatrixSetDiagV3", "MatrixSetDiagV2")
def matrix_set_diag(node: TfNode) -> Compute:
    def compute(x: np.ndarray, diagonal: np.ndarray, k: np.ndarray) -> np.ndarray:
        _main_diagonal(node, k)
        x, d = arr(x), arr(diagonal)
        n = min(x.shape[-2:]) if x.ndim >= 2 else -1
        if x.ndim < 2 or d.shape != x.shape[:-2] + (n,):
            raise node.bad_input(f"diagonal of shape {d.shape} does not fit matrices {x.shape}")
        out = x.copy()
        idx = np.arange(n)
        out[..., idx, idx] = d
        return out

    return compute
