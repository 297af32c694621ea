"""Sizes in the generated C: Python ints, or polynomials in the run-time sequence length.

A model with one free (sequence) axis is exported for any length up to a maximum: every
size that depends on it is a `Poly` in the C variable `steps`, fitted from probes of the
lowered graph at several lengths. Emitters build loop bounds, strides and offsets from
`Dim`s with ordinary `+ - *` and exact `//`; printing a Dim gives its C expression.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...errors import UnsupportedLayer

STEPS = "steps"  # the C variable holding the run-time length


class Poly:
    """An integer polynomial in `steps`: {power: coefficient}, never a constant (see `dim`)."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[int, int]) -> None:
        self.terms = {p: c for p, c in terms.items() if c}

    # arithmetic (results that lose `steps` collapse back to int)
    def __add__(self, other: Dim) -> Dim:
        terms = dict(self.terms)
        for p, c in _terms(other).items():
            terms[p] = terms.get(p, 0) + c
        return dim(terms)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return dim({p: -c for p, c in self.terms.items()})

    def __sub__(self, other: Dim) -> Dim:
        return self + (-_as_poly(other))

    def __rsub__(self, other: Dim) -> Dim:
        return (-self) + other

    def __mul__(self, other: Dim) -> Dim:
        terms: dict[int, int] = {}
        for p1, c1 in self.terms.items():
            for p2, c2 in _terms(other).items():
                terms[p1 + p2] = terms.get(p1 + p2, 0) + c1 * c2
        return dim(terms)

    __rmul__ = __mul__

    def __floordiv__(self, other: Dim) -> Dim:
        if not isinstance(other, int) or other == 0 or any(c % other for c in self.terms.values()):
            raise UnsupportedLayer(f"the C export cannot divide the length-dependent size {self} "
                                   f"by {other} exactly; export with a fixed length (--steps)")
        return dim({p: c // other for p, c in self.terms.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.terms.items())))

    def at(self, steps: int) -> int:
        return sum(c * steps ** p for p, c in self.terms.items())

    def __str__(self) -> str:
        parts = []
        for p in sorted(self.terms, reverse=True):
            c = self.terms[p]
            var = "*".join([STEPS] * p)
            if p == 0:
                parts.append(str(c))
            elif c == 1:
                parts.append(var)
            else:
                parts.append(f"{c}*{var}")
        return "(" + " + ".join(parts).replace("+ -", "- ") + ")"

    __repr__ = __str__


Dim = int | Poly
Shape = tuple[Dim, ...]


def _terms(d: Dim) -> dict[int, int]:
    return d.terms if isinstance(d, Poly) else {0: int(d)}


def _as_poly(d: Dim) -> Poly:
    return d if isinstance(d, Poly) else Poly({0: int(d)})


def dim(terms: dict[int, int]) -> Dim:
    """A Dim from polynomial terms: an int when `steps` cancels out."""
    terms = {p: c for p, c in terms.items() if c}
    if all(p == 0 for p in terms):
        return int(terms.get(0, 0))
    return Poly(terms)


def at(d: Dim, steps: int) -> int:
    return d.at(steps) if isinstance(d, Poly) else int(d)


def prod(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = out * d
    return out


def strides(shape: Sequence[Dim]) -> list[Dim]:
    """Row-major element strides of `shape`."""
    out: list[Dim] = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        out[i] = out[i + 1] * shape[i + 1]
    return out


def is_static(d: Dim) -> bool:
    return not isinstance(d, Poly)


def fit(values: Sequence[int], lengths: Sequence[int], what: str) -> Dim:
    """The Dim (constant or affine in `steps`) that takes `values` at probe `lengths`
    (the first two fix it, the others check it)."""
    if all(v == values[0] for v in values):
        return int(values[0])
    (t0, t1), (v0, v1) = lengths[:2], values[:2]
    a, rem = divmod(v0 - v1, t0 - t1)
    b = v0 - a * t0
    if rem or any(a * t + b != v for t, v in zip(lengths, values)):
        raise UnsupportedLayer(
            f"{what} does not grow linearly with the sequence length (sizes {list(values)} at "
            f"lengths {list(lengths)}, e.g. a strided window over time); export with a fixed "
            "length: --steps N")
    return dim({1: a, 0: b})
