"""The column mapping every batch-scoring route shares: --columns spellings, batches from
pyarrow/pandas/dicts to model inputs (values exact), outputs as columns, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import tfless
from tfless.errors import InputError
from tfless.graph import TensorSpec
from tfless.scale.columns import flat_columns, output_columns, parse_columns, to_arrow

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.keras"


class Specs:
    """Anything with `.inputs`/`.outputs` is a model to the column mapping."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec] | None = None) -> None:
        self.inputs = inputs
        self.outputs = outputs or []


ONE = Specs([TensorSpec("x", (None, 3), "float32")])
TWO = Specs([TensorSpec("a", (None, 2), "float32"), TensorSpec("b", (None, 2, 2), "float32")])
IDS = Specs([TensorSpec("ids", (None, 3), "int32")])


@pytest.fixture(scope="module")
def digits() -> tfless.Model:
    return tfless.load(DIGITS)


def _rows(n: int = 5, width: int = 64) -> np.ndarray:
    return np.arange(n * width, dtype=np.float32).reshape(n, width) / 7


def test_digits_list_column_reshaped_exactly(digits: tfless.Model) -> None:
    x = _rows()
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 64)
    variable = pa.array(list(x))
    for col in (fixed, variable):
        table = pa.table({"id": np.arange(5), "px": col})
        cmap = parse_columns(None, digits, exclude=["id"])
        (got,) = cmap.to_inputs(table)
        assert got.shape == (5, 8, 8, 1) and got.dtype == np.float32
        assert np.array_equal(got, x.reshape(5, 8, 8, 1))
        assert cmap.columns == ["px"]
        (again,) = parse_columns("px", digits).to_inputs(table.to_batches()[0])
        assert np.array_equal(again, got)


def test_scalar_columns_stacked_in_order(digits: tfless.Model) -> None:
    x = _rows()
    df = pd.DataFrame({f"p{i}": x[:, i] for i in range(64)})
    (auto,) = parse_columns(None, digits).to_inputs(df)
    assert np.array_equal(auto, x.reshape(5, 8, 8, 1))
    reversed_cols = ",".join(f"p{i}" for i in reversed(range(64)))
    (rev,) = parse_columns(reversed_cols, digits).to_inputs(pa.Table.from_pandas(df))
    assert np.array_equal(rev, x[:, ::-1].reshape(5, 8, 8, 1))


def test_pandas_list_column_and_dict_of_arrays(digits: tfless.Model) -> None:
    x = _rows()
    (a,) = parse_columns("px", digits).to_inputs(pd.DataFrame({"px": list(x)}))
    (b,) = parse_columns("image=px", digits).to_inputs({"px": x.reshape(5, 8, 8, 1)})
    (c,) = parse_columns(None, digits).to_inputs({"image": x.reshape(5, 8, 8, 1)})
    assert np.array_equal(a, b) and np.array_equal(b, c)


def test_per_input_mapping_two_inputs() -> None:
    b = np.arange(20, dtype=np.float32).reshape(5, 4)
    table = pa.table({"a0": np.arange(5.0), "a1": -np.arange(5.0),
                      "bb": pa.array([[r[:2].tolist(), r[2:].tolist()] for r in b])})
    a_in, b_in = parse_columns("b=bb; a=a0,a1", TWO).to_inputs(table)
    assert np.array_equal(a_in, np.stack([np.arange(5.0), -np.arange(5.0)], 1))
    assert np.array_equal(b_in, b.reshape(5, 2, 2))
    # by name when the columns are named like the inputs, flat or nested lists alike
    named = pa.table({"b": pa.array(list(b)), "a": pa.array(list(a_in))})
    a2, b2 = parse_columns(None, TWO).to_inputs(named)
    assert np.array_equal(a2, a_in) and np.array_equal(b2, b_in)


def test_integer_inputs_keep_their_dtype() -> None:
    (got,) = parse_columns(None, IDS).to_inputs(pa.table({"ids": pa.array([[1, 2, 3], [4, 5, 6]])}))
    assert got.dtype == np.int32 and got.tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InputError, match=r"row 1 has fractional values"):
        parse_columns(None, IDS).to_inputs({"ids": np.array([[1.0, 2, 3], [1.5, 2, 3]])})


def test_free_axis_is_inferred_from_row_width() -> None:
    seq = Specs([TensorSpec("seq", (None, None, 2), "float32")])
    (got,) = parse_columns("s", seq).to_inputs(pa.table({"s": pa.array([[1.0] * 6, [2.0] * 6])}))
    assert got.shape == (2, 3, 2)


def test_outputs_as_columns_and_arrow_table() -> None:
    model = Specs([], [TensorSpec("p", (None, 3), "float32"), TensorSpec("s", (None,), "float32"),
                       TensorSpec("p", (None, 2, 2), "float32")])
    outs = [np.ones((4, 3), np.float32), np.arange(4, dtype=np.float32),
            np.arange(16, dtype=np.float32).reshape(4, 2, 2)]
    cols = output_columns(model, outs)
    assert list(cols) == ["p", "s", "p_2"]
    table = to_arrow({"id": pa.array(["w", "x", "y", "z"]), **cols})
    assert table.schema.field("p").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("s").type == pa.float32()
    assert table.schema.field("p_2").type == pa.list_(pa.list_(pa.float32(), 2), 2)
    back = np.array(table.column("p_2").to_pylist(), np.float32)
    assert np.array_equal(back, outs[2])
    flat = flat_columns(cols)
    assert list(flat)[:4] == ["p_0", "p_1", "p_2", "s"] and np.array_equal(flat["p_2_3"], outs[2][:, 1, 1])


BAD_BATCHES = [
    ("q", ONE, pa.table({"x": [1.0]}), r"^f\.parquet row group 2: column 'q' is missing .*\['x'\]"),
    ("x", ONE, pa.table({"x": pa.array([[1.0, 2.0, 3.0], [1.0, 2.0]])}),
     r"ragged lists: row 100 has 3 values, row 101 has 2"),
    ("x", ONE, pa.table({"x": pa.array([[1.0, 2.0]] * 2)}),
     r"has 2 values per row; input 'x' of shape \(3,\) needs 3"),
    ("x", ONE, pa.table({"x": pa.array([[1.0, 2.0, 3.0], None])}), r"column 'x' has a null value in row 101"),
    ("x", ONE, pa.table({"x": pa.array([[1.0, None, 3.0]])}), r"null value inside the list of row 100"),
    ("x", ONE, pa.table({"x": pa.array([["a", "b", "c"]])}), r"holds lists of string"),
    ("a,b,c", ONE, pa.table({"a": [1.0, 2.0], "b": [1.0, np.nan], "c": [0.0, 0.0]}),
     r"column 'b' has a NaN/null value in row 101"),
    ("a,b,c", ONE, pd.DataFrame({"a": [1.0], "b": ["x"], "c": [0.0]}), r"column 'b' has dtype"),
    ("a,b,c", ONE, pa.table({"a": [1.0], "b": pa.array([None], pa.float64()), "c": [0.0]}),
     r"column 'b' has a null value in row 100"),
    (None, ONE, pa.table({"u": [1.0], "v": [2.0]}), r"2 column\(s\) \['u', 'v'\] give 2 per row"),
    (None, TWO, pa.table({"a": [[1.0, 2.0]]}), r"no columns named like the model's inputs \['a', 'b'\]"),
    (None, ONE, pa.table({"l1": pa.array([[1.0]]), "l2": pa.array([[1.0]])}), r"several list columns"),
    ("x", ONE, pd.DataFrame({"x": [[1.0, 2.0, 3.0], [1.0, 2.0]]}), r"ragged rows"),
]


@pytest.mark.parametrize("spec,model,batch,message", BAD_BATCHES)
def test_bad_batches_are_one_line_errors(spec, model, batch, message) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_columns(spec, model).to_inputs(batch, "f.parquet row group 2", offset=100)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec,message", [
    ("a=x", r"no columns for input\(s\) \['b'\]"),
    ("a=x;c=y", r"the model has no input 'c'; its inputs are \['a', 'b'\]"),
    ("a=x;a=y;b=z", r"input 'a' is mapped twice"),
    ("a=x,y,z;b=w", r"input 'a' takes rows of shape \(2,\) \(2 values\), but 3 column"),
    ("x,y", r"the model has 2 inputs"),
    ("a=x;b=y,", r"empty column name"),
    ("a=x;b", r"'b' has no '='"),
])
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_columns(spec, TWO)


def test_text_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="numeric inputs only"):
        parse_columns(None, Specs([TensorSpec("t", (None,), "string")]))


def test_auto_binding_is_kept_for_later_batches(digits: tfless.Model) -> None:
    cmap = parse_columns(None, digits)
    cmap.to_inputs(pa.table({"px": pa.array(list(_rows(2)))}))
    with pytest.raises(InputError, match=r"column 'px' is missing .*\['other'\]"):
        cmap.to_inputs(pa.table({"other": pa.array(list(_rows(2)))}), "f.csv rows 2-3")
