"""State changes that must never half-apply or go unseen: disable_gralora, refusals, compiled functions, empty
batches."""

import keras
import numpy as np
import pytest
import reference
from helpers import X, adapted_model, assert_unchanged, base_model, randomize, snapshot, to_numpy

import keras_gralora
from keras_gralora import GraLoRADense, GraLoRAEinsumDense
from keras_gralora.surgery import inject


def numpy_forward(model, deltas, x):
    """`base_model`'s forward pass in float64 NumPy, each kernel plus its `[in, out]` delta."""
    weights = {v.path: np.asarray(to_numpy(v), np.float64) for v in model.weights}
    kq = weights["query/kernel"] + np.reshape(deltas.get("query", 0), (16, 2, 8) if "query" in deltas else ())
    q = np.einsum("btd,dnh->btnh", x, kq) + weights["query/bias"]
    f = np.maximum(q.reshape(3, 4, 16) @ (weights["ffn/kernel"] + deltas.get("ffn", 0)) + weights["ffn/bias"], 0)
    return f @ (weights["value/kernel"] + deltas.get("value", 0)) + weights["value/bias"]


def adapter_deltas(model, name):
    deltas = {}
    for layer in inject.adapted_layers(model):
        if name in layer.adapter_names:
            a, b, *hybrid = (np.asarray(to_numpy(v), np.float64) for v in layer.adapter(name).variables)
            deltas[layer.path] = reference.delta(a, b, layer.adapter(name).config.scale, *hybrid)
    return deltas


def two_adapter_model():
    model = adapted_model()
    keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b", target_layer_names=["ffn", "value"])
    rng = np.random.default_rng(9)
    for layer in inject.adapted_layers(model):
        if "b" in layer.adapter_names:
            for v in layer.adapter("b").variables:
                v.assign(rng.standard_normal(v.shape).astype("float32") * 0.3)
    return model


def test_every_state_change_inside_disable_gralora_is_refused_and_the_exit_restores_base_plus_deltas(tmp_path):
    model = two_adapter_model()
    base = base_model()  # the same frozen weights
    expected, expected_base = numpy_forward(base, adapter_deltas(model, "default"), X), numpy_forward(base, {}, X)
    keras_gralora.save_gralora_weights(model, tmp_path / "both.weights.h5")
    keras_gralora.merge_gralora(model)
    refused = {
        "load_gralora_weights": lambda: keras_gralora.load_gralora_weights(model, tmp_path / "both.weights.h5"),
        "delete_adapter": lambda: keras_gralora.delete_adapter(model, "b"),
        "merge_gralora": lambda: keras_gralora.merge_gralora(model, ["b"]),
        "unmerge_gralora": lambda: keras_gralora.unmerge_gralora(model),
        "set_active_adapters": lambda: keras_gralora.set_active_adapters(model, ["b"]),
        "enable_gralora": lambda: keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="c"),
        "merge_and_unload": lambda: keras_gralora.merge_and_unload(model),
        "unload_gralora": lambda: keras_gralora.unload_gralora(model),
        "export_merged": lambda: keras_gralora.export_merged(model, tmp_path / "served.keras"),
        "tiny.quantize": lambda: model.quantize("int8"),
    }
    with keras_gralora.disable_gralora(model):
        np.testing.assert_allclose(to_numpy(model(X)), expected_base, rtol=1e-5, atol=1e-5)
        inside = snapshot(model)
        for name, call in refused.items():
            with pytest.raises(ValueError, match=rf"{name}: model 'tiny' is inside `disable_gralora\(\)`"):
                call()
            assert_unchanged(model, inside)
        with keras_gralora.disable_gralora(model):  # nested: still the base
            np.testing.assert_allclose(to_numpy(model(X)), expected_base, rtol=1e-5, atol=1e-5)
        keras_gralora.save_gralora_weights(model, tmp_path / "inside.weights.h5")  # reads only
        np.testing.assert_allclose(to_numpy(model(X)), expected_base, rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "served.keras").exists()
    np.testing.assert_allclose(to_numpy(model(X)), expected, rtol=1e-5, atol=1e-5)
    keras_gralora.unmerge_gralora(model)
    np.testing.assert_allclose(to_numpy(model(X)), expected, rtol=1e-5, atol=1e-5)
    for layer in inject.adapted_layers(model):  # the frozen base is the base again
        np.testing.assert_allclose(to_numpy(layer._kernel), to_numpy(base.get_layer(layer.name).kernel), atol=1e-6)
    fresh = base_model()
    keras_gralora.load_gralora_weights(fresh, tmp_path / "inside.weights.h5")
    np.testing.assert_allclose(to_numpy(fresh(X)), expected, rtol=1e-5, atol=1e-5)


def test_quantize_after_a_merge_is_refused_before_any_layer_changes():
    inputs = keras.Input((4, 16))
    pre = keras.layers.Dense(16, name="pre")(inputs)
    inner = base_model()
    model = keras.Model(inputs, inner(pre), name="outer")
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["ffn"])
    keras_gralora.merge_gralora(model)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"adapters are merged into the float kernels of \['.*ffn'\].*nothing was"):
        model.quantize("int8")
    assert_unchanged(model, before)
    assert all(layer.quantization_mode is None for layer in model._flatten_layers() if hasattr(layer, "kernel"))


def test_a_task_sees_every_adapter_change_of_the_model_inside_it_in_predict():
    """A compiled predict of an outer model (a task holding its backbone) follows merge, disable and switches."""
    inner = two_adapter_model()
    inputs = keras.Input((4, 16))
    outer = keras.Model(inputs, inner(inputs))
    adapted = numpy_forward(base_model(), adapter_deltas(inner, "default"), X)
    switched = numpy_forward(base_model(), adapter_deltas(inner, "b"), X)
    base = numpy_forward(base_model(), {}, X)

    def predicted():
        return outer.predict(X, verbose=0)

    np.testing.assert_allclose(predicted(), adapted, rtol=1e-5, atol=1e-5)
    keras_gralora.merge_gralora(inner)
    np.testing.assert_allclose(predicted(), adapted, rtol=1e-5, atol=1e-5)
    with keras_gralora.disable_gralora(inner):
        np.testing.assert_allclose(predicted(), base, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predicted(), adapted, rtol=1e-5, atol=1e-5)
    keras_gralora.unmerge_gralora(inner)
    keras_gralora.set_active_adapters(inner, ["b"])
    np.testing.assert_allclose(predicted(), switched, rtol=1e-5, atol=1e-5)
    keras_gralora.delete_adapter(inner, "default")
    np.testing.assert_allclose(predicted(), switched, rtol=1e-5, atol=1e-5)
    keras_gralora.set_active_adapters(inner, [])
    np.testing.assert_allclose(predicted(), base, rtol=1e-5, atol=1e-5)


def test_an_adapter_change_rebuilds_the_compiled_functions_of_the_models_holding_the_layer_only():
    """Each layer has its own state version: switching adapters on one model keeps another model's compiled
    predict (no retrace), while the model holding the layer, and a model wrapping it, rebuild theirs."""
    first, second = two_adapter_model(), adapted_model(seed=1)
    inputs = keras.Input((4, 16))
    outer = keras.Model(inputs, first(inputs))
    for model in (first, second, outer):
        model.predict(X, verbose=0)
    functions = {id(model): model.predict_function for model in (first, second, outer)}
    keras_gralora.set_active_adapters(first, ["b"])
    switched = numpy_forward(base_model(), adapter_deltas(first, "b"), X)
    for model in (first, outer):
        np.testing.assert_allclose(model.predict(X, verbose=0), switched, rtol=1e-5, atol=1e-5)
        assert model.predict_function is not functions[id(model)]
    before = second.predict(X, verbose=0)
    assert second.predict_function is functions[id(second)]
    keras_gralora.merge_gralora(second)
    np.testing.assert_allclose(second.predict(X, verbose=0), before, rtol=1e-5, atol=1e-5)
    assert second.predict_function is not functions[id(second)]
    kept = first.predict_function
    first.predict(X, verbose=0)
    assert first.predict_function is kept


def test_a_causal_lm_generates_with_the_adapter_state_of_its_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=48, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
    )
    lm = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    lm.compile(sampler="greedy")
    prompt = {
        "token_ids": np.array([[5, 9, 0, 0, 0, 0, 0, 0]] * 2, "int32"),
        "padding_mask": np.array([[1, 1, 0, 0, 0, 0, 0, 0]] * 2, bool),
    }

    def generated():
        return np.asarray(lm.generate(prompt, stop_token_ids=None)["token_ids"])

    base = generated()
    backbone.enable_gralora(r=4, k=2)
    randomize(backbone.trainable_weights, seed=0, scale=2.0)
    adapted = generated()
    assert (adapted != base).any()  # the adapter matters
    keras_gralora.merge_gralora(backbone)
    np.testing.assert_array_equal(generated(), adapted)
    with keras_gralora.disable_gralora(backbone):
        np.testing.assert_array_equal(generated(), base)
    keras_gralora.unmerge_gralora(backbone)
    keras_gralora.set_active_adapters(backbone, [])
    np.testing.assert_array_equal(generated(), base)


def test_the_export_of_a_compiled_trained_model_loads_and_serves_without_optimizer_state(tmp_path):
    model = adapted_model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, np.zeros((3, 4, 16), "float32"), epochs=2, verbose=0)
    keras_gralora.export_merged(model, tmp_path / "served.keras")
    served = keras.saving.load_model(tmp_path / "served.keras")
    assert not served.compiled and type(served.get_layer("query")) is keras.layers.EinsumDense
    np.testing.assert_allclose(to_numpy(served(X)), to_numpy(model(X)), rtol=1e-5, atol=1e-5)
    model.fit(X, np.zeros((3, 4, 16), "float32"), epochs=1, verbose=0)  # the live model trains on


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: GraLoRADense(8, r=4, k=2, hybrid_r=2), (0, 16)),
        (lambda: GraLoRADense(8, r=4, k=2), (0, 3, 16)),
        (lambda: GraLoRAEinsumDense("btd,dnh->btnh", (None, 2, 4), bias_axes="nh", r=4, k=2), (0, 5, 16)),
        (lambda: GraLoRAEinsumDense("btnh,nhd->btd", (None, 8), r=4, k=2), (0, 5, 2, 4)),
    ],
    ids=["dense", "dense-3d", "btd,dnh->btnh", "btnh,nhd->btd"],
)
def test_an_empty_batch_gives_an_empty_output_as_keras_layers_do(make, shape, quantize):
    layer = make()
    layer.build((None,) + shape[1:])
    if quantize:
        layer.quantize(quantize)
    y = layer(np.zeros(shape, "float32"))
    plain = (
        keras.layers.Dense(8)
        if isinstance(layer, GraLoRADense)
        else keras.layers.EinsumDense(layer.equation, layer.partial_output_shape)
    )
    assert tuple(y.shape) == tuple(plain(np.zeros(shape, "float32")).shape)
