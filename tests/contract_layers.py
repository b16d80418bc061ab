"""The layer contract of tests/test_contract_layers.py, in the manner of Keras' own
``run_layer_test`` (keras/src/testing/test_case.py): each check takes a layer class, its
constructor arguments and a sample input, and raises AssertionError naming what broke.

* ``registered_classes``: every class the package registers with Keras (``apnet_tf>Name``),
  found by importing every module of the package that registers one, so a class added later is
  found without a list to keep.
* ``check_config_round_trip``: ``from_config(get_config())`` gives the same config and the same
  attributes, ``keras.saving`` serialisation likewise, every constructor argument is in the
  config, and the revived layer gives the same output.
* ``check_symbolic_and_eager``: a call on a symbolic tensor gives the shape (batch left open) and
  dtype of the eager call, and the layer traced in a graph gives the eager numbers.
* ``check_saved_in_model``: a functional model around the layer survives ``.keras`` save and
  load with the same config and the same numbers.
* ``check_mixed_bfloat16``: the layer built with the mixed_bfloat16 policy runs, its eager
  dtype is its symbolic one and its numbers are the float32 ones to bfloat16's precision; in a
  model made bfloat16 the package's way (``precision.computing_in``) its output has the dtype the
  package intends (float32 for the layers it keeps in float32, ``precision.FLOAT32_LAYERS``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pathlib

import numpy as np

__all__ = ["PACKAGE", "LayerCase", "registered_classes", "registering_modules",
           "check_config_round_trip", "check_symbolic_and_eager", "check_saved_in_model",
           "check_mixed_bfloat16", "check_loss_round_trip", "functional_model"]

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "apnet_tf"
_MARK = "register_keras_serializable"
#: bfloat16 keeps 8 significant bits (a relative step of 2**-8); a few roundings add up.
_BF16_RTOL = 0.05


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """How to test one registered layer.

    kwargs: constructor arguments (prefer values other than the defaults: a config that drops
        an argument then changes the numbers). make_input: seed -> the sample input, a float32
        array whose first axis is the batch. name: the name the layer has in the package's
        models (``precision.FLOAT32_LAYERS`` holds such names). bf16_output: the dtype its
        output has in a model made mixed_bfloat16 ("float32" for the layers the package keeps
        in float32, else "bfloat16").
    """

    kwargs: dict
    make_input: object
    name: str
    bf16_output: str


def registering_modules() -> list[str]:
    """The dotted names of the package's modules whose source registers a Keras class."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _MARK in path.read_text() and path.name != "registration.py":
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def registered_classes() -> dict[str, type]:
    """"apnet_tf>Name" -> class, for every class the package registers with Keras."""
    import importlib

    import keras

    for module in registering_modules():
        importlib.import_module(module)
    return {k: v for k, v in keras.saving.get_custom_objects().items()
            if k.startswith("apnet_tf>")}


def _json(config) -> str:
    return json.dumps(config, sort_keys=True, default=repr)


def _run(layer, x) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(layer(x)).astype(np.float64)


def _same(got, want, what: str, rtol: float = 1e-6) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert (np.isnan(got) == np.isnan(want)).all(), f"{what}: NaN in other places"
    ok = np.isclose(got, want, rtol=rtol, atol=rtol * np.nanmax(np.abs(want), initial=0.0),
                    equal_nan=True)
    assert ok.all(), f"{what}: {int((~ok).sum())} of {ok.size} values differ"


def _init_parameters(cls) -> list[str]:
    """The named constructor parameters of ``cls`` and of its bases up to Keras'."""
    names = []
    for klass in cls.__mro__:
        # a subclass defined elsewhere (a test's) counts; Keras' own arguments do not
        if klass.__module__.split(".")[0] in ("keras", "builtins"):
            break
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) \
                    and p.name not in names:
                names.append(p.name)
    return names


def check_config_round_trip(cls, kwargs: dict, x) -> None:
    import keras

    layer = cls(**kwargs)
    want = _run(layer, x)
    config = layer.get_config()
    own = [n for n in _init_parameters(cls) if n in inspect.signature(cls.__init__).parameters]
    dropped = [n for n in own if n not in config]
    assert not dropped, f"{cls.__name__}.get_config() drops constructor argument(s) {dropped}"
    revived = cls.from_config(config)
    assert _json(revived.get_config()) == _json(config), \
        f"{cls.__name__}: from_config(get_config()).get_config() differs"
    assert set(dir(revived)) == set(dir(layer)), \
        f"{cls.__name__}: the revived layer has other attributes"
    _same(_run(revived, x), want, f"{cls.__name__} from its config")
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is cls and _json(again.get_config()) == _json(config), \
        f"{cls.__name__}: keras.saving serialisation does not give it back"
    _same(_run(again, x), want, f"{cls.__name__} deserialised")


def check_symbolic_and_eager(cls, kwargs: dict, x) -> None:
    import keras
    import tensorflow as tf

    eager = cls(**kwargs)(x)
    symbolic = cls(**kwargs)(keras.KerasTensor((None, *x.shape[1:]), dtype="float32"))
    assert symbolic.shape[0] is None, f"{cls.__name__}: the symbolic batch is {symbolic.shape}"
    assert tuple(symbolic.shape[1:]) == tuple(eager.shape[1:]), \
        f"{cls.__name__}: symbolic shape {symbolic.shape}, eager {tuple(eager.shape)}"
    assert keras.backend.standardize_dtype(symbolic.dtype) == \
        keras.backend.standardize_dtype(eager.dtype), \
        f"{cls.__name__}: symbolic dtype {symbolic.dtype}, eager {eager.dtype}"
    layer = cls(**kwargs)
    graph = tf.function(lambda t: layer(t), input_signature=[
        tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    _same(graph(tf.constant(x)).numpy(), keras.ops.convert_to_numpy(eager),
          f"{cls.__name__} in a graph")


def functional_model(cls, kwargs: dict, x, name: str):
    """Input -> the layer (named ``name``) -> output, for inputs shaped like ``x``."""
    import keras

    inp = keras.Input(shape=x.shape[1:], name="x", dtype="float32")
    return keras.Model(inp, cls(**kwargs, name=name)(inp), name=f"contract_{name}")


def check_saved_in_model(cls, kwargs: dict, x, name: str, path) -> None:
    import keras

    model = functional_model(cls, kwargs, x, name)
    want = keras.ops.convert_to_numpy(model(x))
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer(name)
    assert type(layer) is cls, f"{cls.__name__}: loaded as {type(layer).__name__}"
    assert _json(layer.get_config()) == _json(model.get_layer(name).get_config()), \
        f"{cls.__name__}: its config changed in the .keras file"
    _same(keras.ops.convert_to_numpy(loaded(x)), want, f"{cls.__name__} saved and loaded")


def check_mixed_bfloat16(cls, kwargs: dict, x, name: str, bf16_output: str) -> None:
    import keras

    from apnet_tf.model.precision import FLOAT32_LAYERS, computing_in

    want = _run(cls(**kwargs), x)
    layer = cls(**kwargs, dtype="mixed_bfloat16")
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    try:
        out = layer(x)
        symbolic = layer(keras.KerasTensor((None, *x.shape[1:]), dtype="float32"))
    except Exception as exc:  # TensorFlow's dtype errors come in several types
        raise AssertionError(f"{cls.__name__} does not run under mixed_bfloat16: "
                             f"{str(exc).splitlines()[0][:200]}") from None
    dtype = keras.backend.standardize_dtype(out.dtype)
    assert dtype == keras.backend.standardize_dtype(symbolic.dtype), \
        f"{cls.__name__} in mixed_bfloat16: eager {dtype}, symbolic {symbolic.dtype}"
    _same(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), want,
          f"{cls.__name__} in mixed_bfloat16", rtol=_BF16_RTOL)
    intended = "float32" if name in FLOAT32_LAYERS else "bfloat16"
    assert bf16_output == intended, \
        (f"{cls.__name__} named {name!r}: the contract says {bf16_output} in a bfloat16 model, "
         f"precision.FLOAT32_LAYERS makes it {intended}")
    twin = computing_in(functional_model(cls, kwargs, x, name), "mixed_bfloat16")
    got = twin(x)
    assert keras.backend.standardize_dtype(got.dtype) == bf16_output, \
        f"{cls.__name__} in a mixed_bfloat16 model: {got.dtype}, intended {bf16_output}"
    _same(keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")), want,
          f"{cls.__name__} in a mixed_bfloat16 model", rtol=_BF16_RTOL)


def check_loss_round_trip(cls, kwargs: dict, y_true, y_pred) -> None:
    """A registered loss: its config round trip and its value from the revived loss."""
    import keras

    loss = cls(**kwargs)
    want = float(loss(y_true, y_pred))
    config = loss.get_config()
    dropped = [n for n in _init_parameters(cls) if n not in config]
    assert not dropped, f"{cls.__name__}.get_config() drops constructor argument(s) {dropped}"
    revived = cls.from_config(config)
    assert _json(revived.get_config()) == _json(config)
    again = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(loss))))
    for other in (revived, again):
        assert type(other) is cls
        _same(float(other(y_true, y_pred)), want, f"{cls.__name__} revived")
