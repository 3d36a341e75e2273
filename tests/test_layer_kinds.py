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
]


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_every_layer_kind_passes_the_layer_harness(kind, tmp_path):
    run_layer_test(kind, tmp_path)
