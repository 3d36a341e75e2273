"""Exact and truncated LoRA factors of GraLoRA and Keras-LoRA layers (`lora_factors`, `interop/factors.py`)."""

import keras
import numpy as np
import pytest
import reference
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft.tuners.lora.conversion import _find_cutoff_index

import keras_gralora
from keras_gralora.interop import factors

LAYOUTS = {  # KerasHub's projections: (equation, input shape without batch, output shape without batch)
    "dense": (None, (12,), (8,)),
    "query btd,dnh->btnh": ("btd,dnh->btnh", (3, 12), (3, 2, 4)),
    "gemma ndh": ("btd,ndh->btnh", (3, 12), (3, 2, 4)),
    "output btnh,nhd->btd": ("btnh,nhd->btd", (3, 2, 4), (3, 12)),
    "ellipsis": ("...d,de->...e", (12,), (8,)),
}


def projection(layout, quantize=None):
    equation, input_shape, output_shape = LAYOUTS[layout]
    layer = (
        keras.layers.Dense(8, name="proj")
        if equation is None
        else keras.layers.EinsumDense(equation, output_shape, bias_axes=None, name="proj")
    )
    model = keras.Sequential([keras.Input(input_shape), layer])
    if quantize:
        model.quantize(quantize)
    return model, layer


def randomize(variables, seed=3):
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


@pytest.mark.parametrize("hybrid_r", [0, 2])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_exact_factors_are_the_delta_kernel(layout, hybrid_r):
    model, layer = projection(layout)
    keras_gralora.enable_gralora(model, r=4, k=2, hybrid_r=hybrid_r, alpha=3, target_layer_names=["proj"])
    randomize(model.trainable_weights)
    a, b, error = keras_gralora.lora_factors(layer)
    n_in, n_out = layer.matrix_shape_of(layer)
    assert a.shape == (n_in, 2 * 4 + hybrid_r) and b.shape == (2 * 4 + hybrid_r, n_out)
    delta = keras.ops.convert_to_numpy(layer.delta_kernel())
    shape, perm = layer._kernel_view() or ((n_in, n_out), (0, 1))
    np.testing.assert_allclose((a @ b).reshape(shape).transpose(perm), delta, rtol=1e-5, atol=1e-5)
    assert error < 1e-6


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_quantized_base_gives_the_same_factors(mode):
    model, layer = projection("query btd,dnh->btnh", quantize=mode)
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["proj"])
    randomize(model.trainable_weights)
    a, b, error = keras_gralora.lora_factors(layer)
    np.testing.assert_allclose(a @ b, keras.ops.convert_to_numpy(layer.delta_matrix()), rtol=1e-5, atol=1e-5)
    assert error < 1e-6


@pytest.mark.parametrize("layout", ["dense", "query btd,dnh->btnh", "gemma ndh", "output btnh,nhd->btd"])
def test_keras_lora_factors_are_keras_delta(layout):
    """Keras' LoRA factors only the kernel's last axis: its exact LoRA rank is r per slice sharing B."""
    _model, layer = projection(layout)
    layer.enable_lora(3, lora_alpha=5)
    randomize([layer.lora_kernel_a, layer.lora_kernel_b])
    a, b, error = keras_gralora.lora_factors(layer)
    expected_rank = {"dense": 3, "query btd,dnh->btnh": 2 * 3, "gemma ndh": 2 * 3, "output btnh,nhd->btd": 3}
    assert a.shape[1] == expected_rank[layout] and error < 1e-6
    x = np.random.default_rng(0).normal(size=(2,) + LAYOUTS[layout][1]).astype("float32")
    with_lora = keras.ops.convert_to_numpy(layer(x))
    layer.lora_enabled = False  # the frozen kernel alone
    base = keras.ops.convert_to_numpy(layer(x))
    x_matrix = x.reshape(2, 12) if layout == "dense" else x.reshape(2, 3, -1)  # [..., in], kernel order
    np.testing.assert_allclose((x_matrix @ a @ b).reshape(with_lora.shape), with_lora - base, rtol=1e-4, atol=1e-4)


def test_truncation_and_energy_by_rank_argument():
    model, layer = projection("dense")
    keras_gralora.enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names=["proj"])
    randomize(model.trainable_weights)
    sigma = np.linalg.svd(keras.ops.convert_to_numpy(layer.delta_matrix()).astype("float64"), compute_uv=False)
    a, _, error = keras_gralora.lora_factors(layer, rank=3)
    assert a.shape == (12, 3) and error == pytest.approx(np.sqrt((sigma[3:] ** 2).sum() / (sigma**2).sum()), 1e-5)
    a, _, _ = keras_gralora.lora_factors(layer, rank=0.9)
    assert a.shape[1] == _find_cutoff_index(torch.tensor(sigma), 0.9)
    with pytest.raises(ValueError, match=r"rank=16 is above .*'.*proj' can have \(12 -> 8 features: at most 8\)"):
        keras_gralora.lora_factors(layer, rank=16)  # no update of a 12 x 8 matrix has a rank above 8
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(ValueError, match=f"rank={bad!r} must be None"):
            keras_gralora.lora_factors(layer, rank=bad)
    layer.adapter("default").variables[0].assign(np.full(layer.adapter("default").variables[0].shape, np.nan))
    with pytest.raises(ValueError, match="layer '.*proj'.*NaN or infinite values"):
        keras_gralora.lora_factors(layer)
    with pytest.raises(ValueError, match="neither a GraLoRA adapter nor Keras' LoRA"):
        keras_gralora.lora_factors(projection("dense")[1])


@settings(max_examples=25, deadline=None)
@given(
    k=st.sampled_from([1, 2, 4]),
    s=st.integers(1, 3),
    hybrid_r=st.integers(0, 3),
    blocks_in=st.integers(1, 4),
    blocks_out=st.integers(1, 4),
    keep=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_truncation_is_the_svd_optimum(k, s, hybrid_r, blocks_in, blocks_out, keep, seed):
    """Eckart-Young: the error of the best rank-t approximation is the tail of the dense SVD."""
    rng = np.random.default_rng(seed)
    r, n_in, n_out = k * s, k * blocks_in, k * blocks_out
    a, b = rng.normal(size=(k, n_in // k, r)), rng.normal(size=(k, r, n_out // k))
    hybrid = (rng.normal(size=(n_in, hybrid_r)), rng.normal(size=(hybrid_r, n_out))) if hybrid_r else ()
    left, right = factors.gralora_factors(a, b, 0.5, *hybrid)
    delta = reference.delta(a, b, 0.5, *hybrid)
    assert left.shape[1] == k * r + hybrid_r
    np.testing.assert_allclose(left.astype("float64") @ right, delta, rtol=1e-5, atol=1e-5)
    sigma = np.linalg.svd(delta, compute_uv=False)
    small_left, small_right, _kept, _ = factors.truncate(left, right, rank=keep)
    optimum = np.sqrt((sigma[keep:] ** 2).sum() / (sigma**2).sum())
    assert small_left.shape[1] == keep
    error = factors.relative_error(small_left, small_right, left, right)  # from the factors: no [in, out] matrix
    dense = np.linalg.norm(small_left.astype("float64") @ small_right - delta) / np.linalg.norm(delta)
    assert error == pytest.approx(optimum, rel=1e-4, abs=1e-6) and error == pytest.approx(dense, rel=1e-4, abs=1e-6)
    assert factors.relative_error(left, right, left, right) < 1e-6
    energy = float(rng.uniform(0.05, 1.0))
    assert factors.truncate(left, right, energy=energy)[0].shape[1] == min(
        _find_cutoff_index(torch.tensor(sigma), energy), sigma.size
    )
