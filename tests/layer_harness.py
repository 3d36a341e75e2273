"""One harness every GraLoRA layer kind runs through, as Keras' `run_layer_test` for its own layers.

A `LayerKind` says how to make the plain Keras layer and its input; the
harness adapts it inside a one-layer model and checks, against Keras' own
plain layer with the kernel plus the adapters' deltas as the reference:
build and call, two named adapters, merge / unmerge, adapter
files into a second build, `.keras` files, `export_merged`, `merge_and_unload`, and an int8
base. A new layer kind adds one `LayerKind`.
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import reference
from helpers import random_input, randomize, to_numpy

import keras_gralora
from keras_gralora.layers.adapter import GraLoRAAdapter


@dataclasses.dataclass
class LayerKind:
    name: str
    make: Callable[[], keras.layers.Layer]  # the plain Keras layer, named "target"
    input_shape: tuple  # with the batch axis
    vocabulary: int = 0  # token ids below this as the input (an embedding), else floats
    apply: Callable = lambda layer, inputs: layer(inputs)  # how the model calls it
    # False: no int8 comparison (a tied table's reverse quantizes its inputs, so an adapter's share is not additive)
    quantized_base: bool = True


def kind_input(kind, seed=1):
    if kind.vocabulary:
        return np.random.default_rng(seed).integers(0, kind.vocabulary, kind.input_shape).astype("int32")
    return random_input(kind.input_shape, seed)


def _table(layer):
    """The plain layer's kernel variable (an embedding's table)."""
    return layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel


def model_of(kind, seed=0):
    """A one-layer functional model around `kind`'s plain layer, base weights set from `seed`."""
    inputs = keras.Input(kind.input_shape[1:], dtype="int32" if kind.vocabulary else "float32")
    model = keras.Model(inputs, kind.apply(kind.make(), inputs))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3 for w in model.get_weights()])
    return model


def plain_output(kind, model, x, names):
    """Keras' own plain layer on `x`, its kernel plus the deltas of `names` (the reference)."""
    layer = model.get_layer("target")
    plain = model_of(kind)
    kernel = to_numpy(layer._kernel) + sum(to_numpy(layer.delta_kernel(name)) for name in names)
    _table(plain.get_layer("target")).assign(kernel)
    if layer.bias is not None:
        plain.get_layer("target").bias.assign(to_numpy(layer.bias))
    return to_numpy(plain(x))


def check_delta(layer, name):
    """The layer's `[in, out]` delta equals the reference math on its own factors."""
    a, b, *hybrid = (np.asarray(to_numpy(v), np.float64) for v in layer.adapter(name).variables)
    expected = reference.delta(a, b, layer.adapter(name).config.scale, *hybrid)
    np.testing.assert_allclose(to_numpy(layer.delta_matrix(name)), expected, rtol=1e-5, atol=1e-5)


def run_layer_test(kind, tmp_path, r=4, k=2, hybrid_r=2):
    x = kind_input(kind)
    model = model_of(kind)
    base = to_numpy(model(x))
    keras_gralora.enable_gralora(model, r=r, k=k, hybrid_r=hybrid_r, alpha=3.0, target_layer_names=["target"])
    layer = model.get_layer("target")
    assert isinstance(layer, GraLoRAAdapter) and isinstance(layer, type(kind.make()))
    np.testing.assert_allclose(to_numpy(model(x)), base, rtol=1e-5, atol=1e-5)  # B starts at zero
    randomize(layer.adapter("default").variables, seed=1, scale=0.2)
    check_delta(layer, "default")
    adapted = to_numpy(model(x))
    np.testing.assert_allclose(adapted, plain_output(kind, model, x, ["default"]), rtol=1e-4, atol=1e-5)

    # named adapters: a second one, both active
    keras_gralora.enable_gralora(model, r=2 * k, k=k, adapter_name="second", target_layer_names=["target"])
    randomize(layer.adapter("second").variables, seed=2, scale=0.2)
    keras_gralora.set_active_adapters(model, ["default", "second"])
    both = to_numpy(model(x))
    np.testing.assert_allclose(both, plain_output(kind, model, x, ["default", "second"]), rtol=1e-4, atol=1e-5)

    # merge / unmerge: the same outputs, the kernel back (float rounding aside)
    kernel = to_numpy(layer._kernel)
    keras_gralora.merge_gralora(model)
    np.testing.assert_allclose(to_numpy(model(x)), both, rtol=1e-4, atol=1e-5)
    keras_gralora.unmerge_gralora(model)
    np.testing.assert_allclose(to_numpy(layer._kernel), kernel, rtol=0, atol=1e-6)  # float: the deltas subtracted

    # adapter files into a second build; `.keras` files; the merged export
    path = str(tmp_path / f"{kind.name}.gralora.weights.h5")
    keras_gralora.save_gralora_weights(model, path)
    second = model_of(kind)
    keras_gralora.load_gralora_weights(second, path)
    keras_gralora.set_active_adapters(second, ["default", "second"])
    np.testing.assert_allclose(to_numpy(second(x)), both, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / f"{kind.name}.keras")
    reloaded = keras.saving.load_model(tmp_path / f"{kind.name}.keras")
    np.testing.assert_allclose(to_numpy(reloaded(x)), both, rtol=1e-5, atol=1e-5)
    keras_gralora.export_merged(model, tmp_path / f"{kind.name}.merged.keras")
    served = keras.saving.load_model(tmp_path / f"{kind.name}.merged.keras")
    assert type(served.get_layer("target")) is type(kind.make())
    np.testing.assert_allclose(to_numpy(served(x)), both, rtol=1e-4, atol=1e-5)
    keras_gralora.merge_and_unload(reloaded)  # plain layers again, holding the merged kernel
    plain = reloaded.get_layer("target")
    assert isinstance(plain, type(kind.make())) and not isinstance(plain, GraLoRAAdapter)
    np.testing.assert_allclose(to_numpy(reloaded(x)), both, rtol=1e-4, atol=1e-5)

    # an int8 base: the adapters add what they add to the float base
    if not kind.quantized_base:
        return
    quantized = model_of(kind)
    quantized.quantize("int8")
    plain_int8 = to_numpy(quantized(x))
    keras_gralora.load_gralora_weights(quantized, path)
    keras_gralora.set_active_adapters(quantized, ["default", "second"])
    np.testing.assert_allclose(to_numpy(quantized(x)) - plain_int8, both - base, rtol=1e-4, atol=1e-4)
