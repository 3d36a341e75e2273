"""GraLoRA on Keras' int8 / int4 quantized Dense and EinsumDense: both orders, exactness, training, files."""

import keras
import numpy as np
import pytest
from helpers import random_input, randomize, run_python, to_numpy

import keras_gralora
from keras_gralora import enable_gralora
from keras_gralora.layers.quantized import dequantized_kernel, storage_values
from keras_gralora.surgery import inject

# (equation, output_shape, bias_axes, input shape): Dense, KerasHub's, Gemma's and the output projection
LAYOUTS = {
    "dense": (None, 16, None, (3, 5, 16)),
    "btd,dnh->btnh": ("btd,dnh->btnh", (None, 2, 8), "nh", (3, 5, 16)),
    "btd,ndh->btnh": ("btd,ndh->btnh", (None, 2, 8), "h", (3, 5, 16)),
    "btnh,nhd->btd": ("btnh,nhd->btd", (None, 16), "d", (3, 5, 2, 8)),
}


def model_with(layout, seed=0):
    equation, output_shape, bias_axes, x_shape = LAYOUTS[layout]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x_shape[1:])
    if equation is None:
        layer = keras.layers.Dense(output_shape, activation="gelu", bias_initializer="random_normal", name="proj")
    else:
        layer = keras.layers.EinsumDense(
            equation, output_shape, bias_axes=bias_axes, bias_initializer="random_normal", name="proj"
        )
    return keras.Model(inputs, layer(inputs)), random_input(x_shape)


def adapted(layout, mode, quantize_first):
    model, x = model_with(layout)
    if quantize_first:
        model.quantize(mode)
    enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names=["proj"])
    if not quantize_first:
        model.quantize(mode)
    randomize(model.trainable_weights, seed=1, scale=0.1)
    return model, x


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_both_orders_give_the_same_model_and_the_adapter_adds_exactly_its_delta(layout, mode):
    first, x = adapted(layout, mode, quantize_first=True)
    second, _ = adapted(layout, mode, quantize_first=False)
    layer = first.get_layer("proj")
    assert layer.quantization_mode == mode and second.get_layer("proj").quantization_mode == mode
    for a, b in zip(first.weights, second.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    y = to_numpy(first(x))
    np.testing.assert_array_equal(to_numpy(second(x)), y)
    if layout == "dense":  # a nonlinear activation: compare before it
        layer.activation = None
        y = to_numpy(first(x))
    with keras_gralora.disable_gralora(first):
        base = to_numpy(first(x))
    delta = to_numpy(layer.delta_kernel(), np.float64)
    equation = layer.equation if layout != "dense" else "...i,io->...o"
    expected = np.einsum(equation, x.astype(np.float64), delta)
    np.testing.assert_allclose(y - base, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("mode", ["float8"])
def test_modes_gralora_cannot_serve_are_refused_in_both_orders_with_nothing_changed(mode):
    model, _ = model_with("dense")
    model.quantize(mode)
    with pytest.raises(
        ValueError,
        match=rf"quantization mode '{mode}' cannot carry GraLoRA adapters; "
        r"supported modes are \['int8', 'int4'\]",
    ):
        enable_gralora(model, r=4, k=2, target_layer_names=["proj"])
    assert not inject.adapted_layers(model)

    inputs = keras.Input((16,))
    plain = keras.layers.Dense(16, name="plain")
    model = keras.Model(inputs, keras.layers.Dense(16, name="proj")(plain(inputs)))
    enable_gralora(model, r=4, k=2, target_layer_names=["proj"])
    before = {v.path: to_numpy(v).copy() for v in model.weights}
    with pytest.raises(ValueError, match=rf"quantization mode '{mode}' cannot carry GraLoRA adapters"):
        model.quantize(mode)
    assert plain.quantization_mode is None and model.get_layer("proj").quantization_mode is None
    assert {v.path for v in model.weights} == set(before)


# (mode, int4 block size): int8, int4 in groups of 8 inputs (asymmetric, zero point), int4 per output channel
MERGE_CASES = [("int8", None), ("int4", 8), ("int4", -1)]
# The most a requantized entry may move, as a fraction of the kernel's largest |entry|: half a step of
# abs-max int8 (127 levels a side) and per-channel int4 (7 a side); grouped int4 spreads 15 steps over
# [min, max] of a group, and rounding its zero point can add half a step: one step, 2 max / 15.
MOST_MOVED = {("int8", None): 1 / 254, ("int4", -1): 1 / 14, ("int4", 8): 2 / 15}


def quantized_adapted(layout, mode, block_size):
    model, x = model_with(layout)
    config = keras.quantizers.Int4QuantizationConfig(block_size=block_size) if mode == "int4" else None
    model.quantize(mode, config=config)
    enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names=["proj"])
    randomize(model.trainable_weights, seed=1, scale=0.1)
    return model, x


@pytest.mark.parametrize(
    "layout, mode, block_size",
    [  # every layout grouped; every mode on Dense and Gemma's
        *((layout, "int4", 8) for layout in LAYOUTS),
        *((layout, mode, block) for layout in ("dense", "btd,ndh->btnh") for mode, block in MERGE_CASES if block != 8),
    ],
)
def test_merge_requantizes_within_a_step_and_unmerge_restores_the_integers_exactly(layout, mode, block_size):
    model, x = quantized_adapted(layout, mode, block_size)
    layer = model.get_layer("proj")
    original = storage_values(layer)
    adapted_output = to_numpy(model(x))
    target = to_numpy(dequantized_kernel(layer, original)) + to_numpy(layer.delta_kernel())

    keras_gralora.merge_gralora(model)
    merged = storage_values(layer)
    assert layer.merged_adapters == ["default"] and merged.keys() == original.keys()
    assert {name: value.dtype for name, value in merged.items()} == {n: v.dtype for n, v in original.items()}
    error = np.abs(to_numpy(dequantized_kernel(layer, merged)) - target).max()
    assert error <= MOST_MOVED[mode, block_size] * np.abs(target).max() * (1 + 1e-5)
    assert error < np.abs(to_numpy(layer.delta_kernel())).max() / 2  # the delta is in the integers
    merged_output = to_numpy(model(x))
    assert np.abs(merged_output - adapted_output).max() < 0.2 * np.abs(adapted_output).max()

    keras_gralora.unmerge_gralora(model)
    for name, value in storage_values(layer).items():
        np.testing.assert_array_equal(value, original[name], err_msg=name)
    np.testing.assert_array_equal(to_numpy(model(x)), adapted_output)


def test_a_merged_quantized_model_saves_unmerged_and_exports_quantized_and_merged(tmp_path):
    models = {mode: quantized_adapted("btd,ndh->btnh", mode, 8)[0] for mode in ("int8", "int4")}
    x = random_input(LAYOUTS["btd,ndh->btnh"][3])
    np.save(tmp_path / "x.npy", x)
    for mode, model in models.items():
        adapted_output = to_numpy(model(x))
        keras_gralora.merge_gralora(model, adapter_names=["default"])
        merged_output = to_numpy(model(x))
        model.save(tmp_path / f"{mode}.keras")  # the whole model: stored unmerged, reloads unmerged
        loaded = keras.models.load_model(tmp_path / f"{mode}.keras")
        assert loaded.get_layer("proj").merged_adapters == []
        np.testing.assert_array_equal(to_numpy(loaded(x)), adapted_output)
        keras_gralora.export_merged(model, tmp_path / f"{mode}-merged.keras")
        np.save(tmp_path / f"{mode}.npy", merged_output)
    run_python(
        """
        import sys, numpy as np, keras
        x = np.load(sys.argv[1] + "/x.npy")
        for mode in ("int8", "int4"):
            layer = keras.models.load_model(f"{sys.argv[1]}/{mode}-merged.keras").get_layer("proj")
            assert type(layer) is keras.layers.EinsumDense and layer.quantization_mode == mode, layer
            np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), np.load(f"{sys.argv[1]}/{mode}.npy"),
                                       atol=1e-5)
        assert "keras_gralora" not in sys.modules
        """,
        keras.backend.backend(),
        tmp_path,
    )


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_training_moves_only_the_adapters_and_keeps_integer_weights_bit_identical(mode):
    model, x = adapted("btd,dnh->btnh", mode, quantize_first=False)
    frozen = {v.path: to_numpy(v).copy() for v in model.weights if not v.trainable}
    assert any(v.dtype == "int8" for v in model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    target = random_input((3, 5, 2, 8), seed=4)
    history = model.fit(x, target, epochs=5, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for v in model.weights:
        if v.path in frozen:
            np.testing.assert_array_equal(to_numpy(v), frozen[v.path], err_msg=v.path)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_keras_files_and_adapter_files_round_trip_across_float_and_quantized_bases(tmp_path, mode):
    model, x = adapted("btd,ndh->btnh", mode, quantize_first=True)
    expected = to_numpy(model(x))
    model.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert loaded.get_layer("proj").quantization_mode == mode
    np.testing.assert_array_equal(to_numpy(loaded(x)), expected)

    keras_gralora.save_gralora_weights(model, tmp_path / "a.weights.h5")
    float_model, _ = model_with("btd,ndh->btnh")
    keras_gralora.load_gralora_weights(float_model, tmp_path / "a.weights.h5")  # quantized -> float
    float_model.quantize(mode)
    np.testing.assert_array_equal(to_numpy(float_model(x)), expected)
    keras_gralora.save_gralora_weights(float_model, tmp_path / "b.weights.h5")
    quantized, _ = model_with("btd,ndh->btnh")
    quantized.quantize(mode)
    keras_gralora.load_gralora_weights(quantized, tmp_path / "b.weights.h5")  # float-trained file -> quantized
    np.testing.assert_array_equal(to_numpy(quantized(x)), expected)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_mixed_bfloat16_on_a_quantized_base_keeps_float32_adapters(mode):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model, x = adapted("btd,dnh->btnh", mode, quantize_first=False)
    assert keras.ops.dtype(model(x)) == "bfloat16"
    assert {v.dtype for v in model.trainable_weights} == {"float32"}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, random_input((3, 5, 2, 8), seed=4), epochs=3, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
