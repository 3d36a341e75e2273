"""GraLoRA on convolutions: the numpy math, Keras LoRA at k = 1, and the refusals.

The layer harness (`test_layer_kinds.py`) runs every convolution kind
through adapters, merging, files and exports; here the layout itself is
checked against an independent computation.
"""

import keras
import numpy as np
import pytest
import reference
from helpers import random_input, randomize, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_gralora

CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}


def _adapted(rank, filters, window, channels, space, r, k, hybrid_r=0, **kwargs):
    inputs = keras.Input((*(space,) * rank, channels))
    model = keras.Model(inputs, CONV[rank](filters, window, name="target", **kwargs)(inputs))
    randomize(model.weights, seed=0, scale=0.3)
    keras_gralora.enable_gralora(model, r=r, k=k, hybrid_r=hybrid_r, alpha=3.0, target_layer_names=["target"])
    layer = model.get_layer("target")
    randomize(layer.adapter("default").variables, seed=1, scale=0.3)
    return model, layer


def _patches(x, window):
    """Valid, stride-1 patches of `x [N, *space, C]` flattened input channel outermost: `[N, *space', C * window]`."""
    out = [s - window + 1 for s in x.shape[1:-1]]
    rows = []
    for index in np.ndindex(*out):
        box = x[(slice(None), *(slice(i, i + window) for i in index))]  # [N, *window, C]
        rows.append(np.moveaxis(box, -1, 1).reshape(x.shape[0], -1))
    return np.stack(rows, axis=1).reshape(x.shape[0], *out, -1)


@settings(max_examples=6, deadline=None)
@given(rank=st.sampled_from([1, 2, 3]), k=st.sampled_from([1, 2, 4]), s=st.integers(1, 2), hybrid=st.booleans())
def test_conv_output_is_the_numpy_grid_on_patches(rank, k, s, hybrid):
    """Each output position: its patch (channel-major) times `kernel matrix + delta`, delta from the reference."""
    channels, filters, window = 2 * k, 3 * k, 2
    model, layer = _adapted(rank, filters, window, channels, 4, r=s * k, k=k, hybrid_r=2 if hybrid else 0)
    x = random_input((2, *(4,) * rank, channels))
    a, b, *pair = (np.asarray(to_numpy(v), np.float64) for v in layer.adapter("default").variables)
    delta = reference.delta(a, b, layer.adapter("default").config.scale, *pair)
    kernel = to_numpy(layer._kernel).astype(np.float64)
    matrix = np.moveaxis(kernel, -2, 0).reshape(-1, filters)  # [Cin * window, Cout], input channel outermost
    expected = _patches(x.astype(np.float64), window) @ (matrix + delta) + to_numpy(layer.bias)
    np.testing.assert_allclose(to_numpy(model(x)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_k1_equals_keras_lora_convolution(rank):
    """GraLoRA with k = 1 and Keras' `enable_lora` compute the same output from the same factors."""
    channels, filters, window, r = 4, 6, 3, 4
    model, layer = _adapted(rank, filters, window, channels, 5, r=r, k=1, padding="same", strides=2)
    x = random_input((2, *(5,) * rank, channels))
    inputs = keras.Input(x.shape[1:])
    lora = CONV[rank](filters, window, padding="same", strides=2)
    lora_model = keras.Model(inputs, lora(inputs))
    lora.kernel.assign(to_numpy(layer._kernel))
    lora.bias.assign(to_numpy(layer.bias))
    lora.enable_lora(r, lora_alpha=3.0)
    a, b = (to_numpy(v) for v in layer.adapter("default").variables)  # (1, Cin * window, r), (1, r, Cout)
    keras_a = np.moveaxis(a[0].reshape(channels, *(window,) * rank, r), 0, -2)  # [*window, Cin, r]
    lora.lora_kernel_a.assign(keras_a)
    lora.lora_kernel_b.assign(b[0])
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(lora_model(x)), rtol=1e-5, atol=1e-5)
    keras_delta = to_numpy(lora.kernel) - to_numpy(layer._kernel)  # Keras' LoRA kernel minus the frozen one
    np.testing.assert_allclose(to_numpy(layer.delta_kernel()), keras_delta, rtol=1e-5, atol=1e-6)


def test_conv_trains_only_its_adapters():
    model, layer = _adapted(2, 4, 3, 4, 5, r=4, k=2)
    model.compile("adam", "mse")
    x = random_input((4, 5, 5, 4))
    kernel = to_numpy(layer._kernel)
    before = [to_numpy(v) for v in layer.adapter("default").variables]
    model.fit(x, np.zeros((4, 3, 3, 4), "float32"), epochs=2, verbose=0)
    np.testing.assert_array_equal(to_numpy(layer._kernel), kernel)
    assert all(not np.array_equal(to_numpy(v), old) for v, old in zip(layer.adapter("default").variables, before))


def test_grouped_convolution_is_refused_by_name():
    inputs = keras.Input((5, 5, 4))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, groups=2, name="grouped")(inputs))
    with pytest.raises(ValueError, match=r"Conv2D 'grouped'.*groups=2.*groups=1"):
        keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=["grouped"])
    assert type(model.get_layer("grouped")) is keras.layers.Conv2D


def test_channels_that_do_not_split_are_refused_and_skipped_by_all():
    inputs = keras.Input((5, 5, 3))
    hidden = keras.layers.Conv2D(4, 3, name="rgb")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="inner")(hidden))
    with pytest.raises(ValueError, match="rgb"):
        keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=["rgb"])
    assert type(model.get_layer("rgb")) is keras.layers.Conv2D


def test_routing_refuses_convolutions():
    model, _ = _adapted(2, 4, 3, 4, 5, r=2, k=2)
    with pytest.raises(ValueError, match="convolutions"):
        with keras_gralora.adapter_routing(model, ["default"]):
            pass


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("keras_lora", [False, True])
def test_lora_factors_load_into_peft_conv_lora_with_the_same_outputs(rank, keras_lora):
    """`lora_factors` of a convolution, reshaped as its docstring says, is PEFT's conv LoRA: equal outputs."""
    import peft
    import torch

    channels, filters, window = 4, 6, 3
    if keras_lora:
        inputs = keras.Input((*(5,) * rank, channels))
        layer = CONV[rank](filters, window, padding="same", name="target")
        model = keras.Model(inputs, layer(inputs))
        randomize(model.weights, seed=0, scale=0.3)
        layer.enable_lora(3, lora_alpha=5.0)
        randomize([layer.lora_kernel_a, layer.lora_kernel_b], seed=1, scale=0.3)
    else:
        model, layer = _adapted(rank, filters, window, channels, 5, r=4, k=2, hybrid_r=2, padding="same")
    a, b, error = keras_gralora.lora_factors(layer)
    assert error < 1e-6
    torch_class = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[rank]
    torch_conv = torch_class(channels, filters, window, padding=1)
    kernel = np.moveaxis(to_numpy(layer._kernel), (-1, -2), (0, 1))  # [Cout, Cin, *window]
    torch_conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel))
    torch_conv.bias.data = torch.from_numpy(to_numpy(layer.bias))
    wrapper = torch.nn.Sequential()
    wrapper.add_module("target", torch_conv)
    lora_rank = a.shape[1]
    peft_model = peft.get_peft_model(
        wrapper, peft.LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=["target"], init_lora_weights=False)
    )
    module = peft_model.base_model.model.target
    module.lora_A["default"].weight.data = torch.from_numpy(
        np.ascontiguousarray(a.T.reshape(lora_rank, channels, *(window,) * rank))
    )
    module.lora_B["default"].weight.data = torch.from_numpy(
        np.ascontiguousarray(b.T.reshape(filters, lora_rank, *(1,) * rank))
    )
    x = random_input((2, *(5,) * rank, channels))
    with torch.no_grad():
        found = peft_model(torch.from_numpy(np.moveaxis(x, -1, 1))).numpy()
    np.testing.assert_allclose(np.moveaxis(found, 1, -1), to_numpy(model(x)), rtol=1e-4, atol=1e-5)


FACTORED_CASES = {
    "causal_1d_hybrid": (1, dict(padding="causal", dilation_rate=2), 2),
    "causal_1d_channels_first": (1, dict(padding="causal", data_format="channels_first"), 0),
    "strided_2d": (2, dict(strides=2), 0),
    "channels_first_2d_hybrid": (2, dict(data_format="channels_first", padding="same"), 2),
    "same_3d": (3, dict(padding="same"), 0),
}


@pytest.mark.parametrize("case", FACTORED_CASES)
def test_the_adapters_own_pass_equals_the_folded_kernel(case):
    """The grouped-convolution pass (bfloat16, dropout) and the float32 kernel-plus-delta pass agree."""
    from keras_gralora.layers import GraLoRAAdapter

    rank, kwargs, hybrid_r = FACTORED_CASES[case]
    channels_first = kwargs.get("data_format") == "channels_first"
    inputs = keras.Input((4, *(6,) * rank) if channels_first else (*(6,) * rank, 4))
    model = keras.Model(inputs, CONV[rank](6, 3, name="target", **kwargs)(inputs))
    randomize(model.weights, seed=0, scale=0.3)
    keras_gralora.enable_gralora(model, r=4, k=2, hybrid_r=hybrid_r, alpha=3.0, target_layer_names=["target"])
    layer = model.get_layer("target")
    randomize(layer.adapter("default").variables, seed=1, scale=0.3)
    x = random_input((2, *inputs.shape[1:]))
    factored = to_numpy(GraLoRAAdapter.call(layer, keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(factored, to_numpy(layer(x)), rtol=1e-5, atol=1e-5)


def test_k_auto_and_rank_pattern_read_the_channels():
    """`k="auto"` picks a k dividing the channels (an RGB input's convolution: 1); patterns match conv paths."""
    inputs = keras.Input((6, 6, 3))
    hidden = keras.layers.Conv2D(8, 3, name="rgb")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(8, 1, name="inner")(hidden))
    keras_gralora.enable_gralora(model, r=4, k="auto", target_layer_names=["rgb", "inner"], rank_pattern={"inner": 8})
    rgb, inner = model.get_layer("rgb").adapter("default").config, model.get_layer("inner").adapter("default").config
    assert (rgb.k, rgb.r, inner.k, inner.r) == (1, 4, 2, 8)
