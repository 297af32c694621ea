"""Coverage of everything Keras can put in a model file: every public Keras 3 layer class,
every tf_keras 2.x layer class, and every keras.ops operation Keras records as a node in a
functional model either has a registered tfless op or a documented refusal
(`tfless.refusals`) whose reason the reader raises. A new Keras release that adds a
class fails this test until the class gets one or the other."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tfless
from tfless.errors import UnsupportedLayer
from tfless.ops import REGISTRY, get_op
from tfless.refusals import REFUSALS

# The reader turns these into graph inputs / inlined sub-graphs; they never become nodes.
READER_HANDLED = {"InputLayer", "Sequential", "Functional", "Model"}


def _layer_classes(base: type, *modules: object) -> set[str]:
    names = set()
    for module in modules:
        for attr in dir(module):
            value = getattr(module, attr)
            if inspect.isclass(value) and issubclass(value, base):
                names.add(value.__name__)
    return names


def keras3_layers() -> set[str]:
    import keras

    return _layer_classes(keras.layers.Layer, keras.layers)


def tf_keras_layers() -> set[str]:
    import tf_keras

    experimental = tf_keras.layers.experimental
    return _layer_classes(tf_keras.layers.Layer, tf_keras.layers, experimental,
                          experimental.preprocessing)


def keras_operations() -> set[str]:
    """`keras.ops.<Class>` for each Operation subclass in keras.src.ops: the classes the
    public keras.ops functions instantiate when called on symbolic tensors (their
    `symbolic_call` path), which is what a functional model records."""
    import keras.src.ops as kops
    from keras.src.ops.operation import Operation

    names = set()
    for info in pkgutil.iter_modules(kops.__path__):
        if info.name.endswith("_test"):
            continue
        module = importlib.import_module(f"keras.src.ops.{info.name}")
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Operation) \
                    and value is not Operation and value.__module__ == module.__name__:
                names.add(f"keras.ops.{value.__name__}")
    return names


def _uncovered(names: set[str]) -> list[str]:
    return sorted(n for n in names if n not in REGISTRY and n not in REFUSALS
                  and n not in READER_HANDLED)


def test_every_keras3_layer_has_an_op_or_a_refusal() -> None:
    names = keras3_layers()
    assert len(names) > 100  # the enumeration really saw Keras's layer list
    assert _uncovered(names) == []


def test_every_tf_keras_layer_has_an_op_or_a_refusal() -> None:
    names = tf_keras_layers()
    assert len(names) > 100
    assert _uncovered(names) == []


def test_every_recorded_keras_operation_has_an_op_or_a_refusal() -> None:
    names = keras_operations()
    assert len(names) > 300
    assert _uncovered(names) == []


def test_refusals_and_ops_do_not_overlap() -> None:
    assert sorted(set(REFUSALS) & set(REGISTRY)) == []
    for reason in REFUSALS.values():
        assert len(reason) > 20  # a reason a user can act on, not a placeholder


@pytest.mark.parametrize("name", sorted(REFUSALS)[:: max(1, len(REFUSALS) // 12)])
def test_refusal_error_carries_the_reason(name: str) -> None:
    with pytest.raises(UnsupportedLayer) as info:
        get_op(name, "some/layer")
    assert REFUSALS[name] in str(info.value)
    assert "some/layer" in str(info.value)


def test_reader_raises_the_refusal_for_a_recorded_operation(tmp_path) -> None:
    import keras

    inp = keras.Input((3, 3))
    out = keras.ops.linalg.eigh(inp)[0]
    model = keras.Model(inp, out)
    model.save(tmp_path / "eigh.keras")
    with pytest.raises(UnsupportedLayer, match="unique only up to sign"):
        tfless.load(tmp_path / "eigh.keras")


def test_reader_raises_the_refusal_for_a_layer(tmp_path) -> None:
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    keras.Model(inp, out).save(tmp_path / "lambda.keras")
    with pytest.raises(tfless.TflessError, match="Lambda"):
        tfless.load(tmp_path / "lambda.keras")
