"""Every layer kind, on 2-D, 3-D and 4-D inputs, through the one layer harness (`layer_harness.py`)."""

import keras
import pytest
from layer_harness import LayerKind, run_layer_test

KINDS = [
    LayerKind("dense_2d", lambda: keras.layers.Dense(8, name="target"), (3, 12)),
    LayerKind("dense_3d", lambda: keras.layers.Dense(8, name="target"), (2, 3, 12)),
    LayerKind("dense_4d", lambda: keras.layers.Dense(6, use_bias=False, name="target"), (2, 2, 3, 8)),
    LayerKind("einsum_2d", lambda: keras.layers.EinsumDense("ab,bc->ac", 8, bias_axes="c", name="target"), (3, 12)),
    LayerKind(
        "einsum_heads_out",
        lambda: keras.layers.EinsumDense("btd,dnh->btnh", (None, 2, 4), bias_axes="nh", name="target"),
        (2, 3, 12),
    ),
    LayerKind(
        "einsum_heads_in",
        lambda: keras.layers.EinsumDense("btnh,nhd->btd", (None, 8), bias_axes="d", name="target"),
        (2, 3, 2, 4),
    ),
    LayerKind(
        "conv1d_causal", lambda: keras.layers.Conv1D(6, 3, padding="causal", dilation_rate=2, name="target"), (2, 9, 4)
    ),
    LayerKind("conv2d", lambda: keras.layers.Conv2D(8, 3, padding="same", name="target"), (2, 6, 5, 4)),
    LayerKind(
        "conv2d_strided", lambda: keras.layers.Conv2D(4, (3, 2), strides=2, use_bias=False, name="target"), (2, 7, 6, 6)
    ),
    LayerKind(
        "conv2d_channels_first",
        lambda: keras.layers.Conv2D(6, 3, data_format="channels_first", name="target"),
        (2, 4, 6, 5),
    ),
    LayerKind("embedding", lambda: keras.layers.Embedding(12, 8, name="target"), (2, 5), vocabulary=12),
    LayerKind(
        "reversible_embedding_tied",
        lambda: keras.layers.ReversibleEmbedding(12, 8, name="target"),
        (2, 5),
        vocabulary=12,
        apply=lambda layer, inputs: layer(layer(inputs), reverse=True),
        quantized_base=False,
    ),
    LayerKind("conv3d", lambda: keras.layers.Conv3D(4, 2, padding="same", name="target"), (1, 4, 3, 4, 4)),
]


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_every_layer_kind_passes_the_layer_harness(kind, tmp_path):
    run_layer_test(kind, tmp_path)
