"""GraLoRADense and GraLoRAEinsumDense against the NumPy reference of GRALORA.md."""

import helpers
import keras
import numpy as np
import pytest
import reference
from helpers import random_input
from hypothesis import given
from hypothesis import strategies as st

from keras_gralora import GraLoRADense, GraLoRAEinsumDense


def to_numpy(x):
    return helpers.to_numpy(x, np.float64)  # references compute in float64


def assert_close(actual, expected, rtol=1e-5):
    """Relative error of the whole tensor, robust to entries near zero."""
    actual, expected = to_numpy(actual), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    error = np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30)
    assert error < rtol, f"relative error {error:.3g} >= {rtol}"


def dense_reference(layer, x):
    """Full output of a GraLoRADense, in float64, from the reference math."""
    kernel, bias = to_numpy(layer._kernel), to_numpy(layer.bias)
    a, b, *hybrid = reference.adapter_arrays(layer)
    base = np.asarray(x, np.float64) @ kernel + bias
    return base + reference.forward(x, a, b, layer.adapter("default").config.scale, *hybrid)


dense_shapes = st.fixed_dictionaries(
    {
        "k": st.integers(1, 4),
        "s": st.integers(1, 3),
        "block_in": st.integers(1, 5),
        "block_out": st.integers(1, 5),
        "hybrid_r": st.integers(0, 3),
        "lead": st.lists(st.integers(1, 3), min_size=1, max_size=3),
    }
)


@given(dense_shapes)
def test_dense_matches_reference(shape):
    k, lead = shape["k"], shape["lead"]
    in_features, units = k * shape["block_in"], k * shape["block_out"]
    layer = GraLoRADense(
        units, r=k * shape["s"], k=k, hybrid_r=shape["hybrid_r"], bias_initializer="random_normal", init_weights=False
    )
    x = random_input((*lead, in_features))
    y = layer(x)
    assert tuple(y.shape) == (*lead, units)
    assert_close(y, dense_reference(layer, x))
    adapter = reference.adapter_arrays(layer)
    delta_kernel = layer.delta_kernel()
    assert_close(delta_kernel, reference.delta(*adapter[:2], layer.adapter("default").config.scale, *adapter[2:]))
    # x @ delta_kernel() is the adapter's own contribution to the output.
    base = x.astype(np.float64) @ to_numpy(layer._kernel) + to_numpy(layer.bias)
    assert_close(x.astype(np.float64) @ to_numpy(delta_kernel), to_numpy(y) - base, rtol=1e-4)


def test_scale_and_parameter_count():
    layer = GraLoRADense(48, r=8, k=4, hybrid_r=4)
    layer.build((None, 32))
    assert layer.adapter("default").config.scale == 2.0
    assert GraLoRADense(48, r=8, k=4, hybrid_r=4, alpha=6).adapter("default").config.scale == 0.5
    shapes = {v.name: tuple(v.shape) for v in layer.weights}
    assert shapes == {
        "kernel": (32, 48),
        "bias": (48,),
        "gralora_a_default": (4, 8, 8),
        "gralora_b_default": (4, 8, 12),
        "gralora_hybrid_a_default": (32, 4),
        "gralora_hybrid_b_default": (4, 48),
    }
    trainable = sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
    assert trainable == 8 * (32 + 48) + 4 * (32 + 48)
    assert {v.name for v in layer.non_trainable_weights} == {"kernel", "bias"}


def test_init_matches_peft():
    layer = GraLoRADense(64, r=16, k=4, hybrid_r=4)
    layer.build((None, 128))
    a, b, hybrid_a, hybrid_b = reference.adapter_arrays(layer)
    assert np.abs(a).max() <= 1 / np.sqrt(128 // 4) and np.abs(a).max() > 0.9 / np.sqrt(128 // 4)
    assert np.abs(hybrid_a).max() <= 1 / np.sqrt(128) and np.abs(hybrid_a).max() > 0.9 / np.sqrt(128)
    assert not b.any() and not hybrid_b.any()


def test_fresh_layer_equals_base_layer():
    base = keras.layers.Dense(24, bias_initializer="random_normal")
    x = random_input((3, 5, 16))
    expected = to_numpy(base(x))
    layer = GraLoRADense(24, r=4, k=2, hybrid_r=2, bias_initializer="random_normal")
    layer.build((None, 5, 16))
    layer._kernel.assign(base.kernel)
    layer.bias.assign(base.bias)
    np.testing.assert_array_equal(to_numpy(layer(x)), expected)


@pytest.mark.parametrize(
    "in_features, out_features, r, k, expected_rank",
    [(32, 32, 4, 2, 8), (32, 32, 4, 4, 16), (16, 48, 16, 2, 16), (12, 12, 6, 3, 12), (24, 36, 6, 1, 6)],
)
def test_update_rank_reaches_k_times_r(in_features, out_features, r, k, expected_rank):
    layer = GraLoRADense(out_features, r=r, k=k, init_weights=False)
    layer.build((None, in_features))
    assert expected_rank == min(k * r, in_features, out_features)
    delta = to_numpy(layer.delta_kernel())
    float32_noise = np.linalg.norm(delta, 2) * max(delta.shape) * np.finfo(np.float32).eps
    assert np.linalg.matrix_rank(delta, tol=float32_noise) == expected_rank


@pytest.mark.parametrize(
    "layer_factory, x_shape",
    [
        (lambda: GraLoRADense(12, r=4, k=2, hybrid_r=2, init_weights=False), (2, 3, 8)),
        (lambda: GraLoRAEinsumDense("btd,ndh->btnh", (None, 2, 6), r=4, k=2, init_weights=False), (2, 3, 8)),
    ],
)
def test_merge_and_unmerge_round_trip(layer_factory, x_shape):
    layer = layer_factory()
    x = random_input(x_shape)
    expected = to_numpy(layer(x))
    kernel = to_numpy(layer._kernel)
    assert not layer.merged
    layer.merge()
    layer.merge()  # a second merge must not add the delta twice
    assert layer.merged
    assert_close(layer._kernel, kernel + to_numpy(layer.delta_kernel()), rtol=1e-6)
    assert_close(layer(x), expected, rtol=1e-6)
    layer.unmerge()
    layer.unmerge()
    assert not layer.merged
    assert_close(layer._kernel, kernel, rtol=1e-6)
    assert_close(layer(x), expected, rtol=1e-6)


def test_safe_merge_refuses_non_finite_kernel():
    layer = GraLoRADense(8, r=2, k=2, init_weights=False)
    layer.build((None, 8))
    kernel = to_numpy(layer._kernel)
    layer.adapter("default").variables[1].assign(np.full((2, 2, 4), np.inf, "float32"))
    with pytest.raises(ValueError, match=r"GraLoRADense '.*': merging \['default'\] would make the kernel non-finite"):
        layer.merge(safe=True)
    np.testing.assert_array_equal(to_numpy(layer._kernel), kernel)
    assert not layer.merged


# (equation, output_shape, bias_axes, input shape, kernel shape, kernel axes in [in..., out...] order)
EINSUM_LAYOUTS = [
    ("btd,dnh->btnh", (None, 4, 6), "nh", (2, 3, 8), (8, 4, 6), (0, 1, 2)),
    ("btd,ndh->btnh", (None, 4, 6), "h", (2, 3, 8), (4, 8, 6), (1, 0, 2)),
    ("btnh,nhd->btd", (None, 12), "d", (2, 3, 4, 6), (4, 6, 12), (0, 1, 2)),
    ("...d,de->...e", (12,), "e", (2, 3, 5, 8), (8, 12), (0, 1)),
    ("btd,hdn->bnth", (4, None, 6), "h", (2, 3, 8), (6, 8, 4), (1, 0, 2)),
]


def einsum_reference(layer, equation, x, matrix_axes):
    """Full output from the reference delta placed in the kernel's own layout."""
    kernel = to_numpy(layer._kernel)
    matrix_axes = list(matrix_axes)
    permuted_shape = tuple(kernel.shape[i] for i in matrix_axes)
    adapter = reference.adapter_arrays(layer)
    delta = reference.delta(*adapter[:2], layer.adapter("default").config.scale, *adapter[2:])
    delta_kernel = delta.reshape(permuted_shape).transpose(np.argsort(matrix_axes))
    y = np.einsum(equation, np.asarray(x, np.float64), kernel + delta_kernel)
    return y + to_numpy(layer.bias), delta_kernel


# Each layout meets one (k, r, hybrid_r); the Dense test above covers the settings broadly.
SETTINGS = [(1, 4, 0), (2, 4, 2), (4, 8, 0), (2, 8, 1), (4, 4, 2)]


@pytest.mark.parametrize(
    "equation, output_shape, bias_axes, x_shape, kernel_shape, matrix_axes, k, r, hybrid_r",
    [layout + settings for layout, settings in zip(EINSUM_LAYOUTS, SETTINGS)],
)
def test_einsum_dense_matches_reference(
    equation, output_shape, bias_axes, x_shape, kernel_shape, matrix_axes, k, r, hybrid_r
):
    layer = GraLoRAEinsumDense(
        equation,
        output_shape,
        r=r,
        k=k,
        hybrid_r=hybrid_r,
        bias_axes=bias_axes,
        bias_initializer="random_normal",
        init_weights=False,
    )
    x = random_input(x_shape)
    y = layer(x)
    assert tuple(layer.kernel.shape) == kernel_shape
    expected, expected_delta = einsum_reference(layer, equation, x, matrix_axes)
    assert_close(y, expected)
    assert_close(layer.delta_kernel(), expected_delta)
    trainable = sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
    n_in, n_out = layer._kernel_matrix_shape()
    assert n_in * n_out == int(np.prod(kernel_shape))
    assert trainable == (r + hybrid_r) * (n_in + n_out)


@pytest.mark.parametrize(
    "equation, output_shape, x_shape, message",
    [
        ("bnd,ndh->bnh", (4, 6), (2, 4, 8), "appear in both input and output"),
        ("btd,dh->bh", (6,), (2, 3, 8), "summed without the kernel"),
        ("ab...,bc->ac...", (6, 5), (2, 8, 5), "cannot adapt equation"),
    ],
)
def test_einsum_dense_rejects_equations_it_cannot_adapt(equation, output_shape, x_shape, message):
    layer = GraLoRAEinsumDense(equation, output_shape, r=2, k=1)
    with pytest.raises(ValueError, match=rf"GraLoRAEinsumDense '.*'.*{message}"):
        layer.build(x_shape)


def test_kernel_is_what_the_forward_pass_applies():
    """As Keras' LoRA: `kernel` adds the unmerged active adapters (layers that matmul by a sublayer's kernel
    themselves, as Gemma 4's feed-forward, so train them); `_kernel` is the frozen storage."""
    layer = GraLoRAEinsumDense("btd,ndh->btnh", (None, 2, 6), r=4, k=2, hybrid_r=2, init_weights=False)
    x = random_input((2, 3, 8))
    y = to_numpy(layer(x))
    frozen = to_numpy(layer._kernel)
    assert_close(layer.kernel, frozen + to_numpy(layer.delta_kernel()), rtol=1e-6)
    assert_close(np.einsum("btd,ndh->btnh", x, to_numpy(layer.kernel)), y, rtol=1e-5)  # no bias_axes: no bias
    layer.merge()
    np.testing.assert_array_equal(to_numpy(layer.kernel), to_numpy(layer._kernel))
    layer.unmerge()
    layer.enable_adapters(False)
    np.testing.assert_array_equal(to_numpy(layer.kernel), to_numpy(layer._kernel))
    assert_close(layer.kernel, frozen, rtol=1e-6)
