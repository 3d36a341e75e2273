"""GraLoRA variants of Keras' Dense, EinsumDense and convolutions; a ReversibleEmbedding (quantized gradients)."""

import keras

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.conv import GraLoRAConv, GraLoRAConv1D, GraLoRAConv2D, GraLoRAConv3D
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense
from keras_gralora.layers.embedding import GraLoRAEmbedding, GraLoRAReversibleEmbedding
from keras_gralora.layers.named_adapter import NamedAdapter
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding

ADAPTED_CLASS = {
    keras.layers.Dense: GraLoRADense,
    keras.layers.EinsumDense: GraLoRAEinsumDense,
    keras.layers.Conv1D: GraLoRAConv1D,
    keras.layers.Conv2D: GraLoRAConv2D,
    keras.layers.Conv3D: GraLoRAConv3D,
    keras.layers.Embedding: GraLoRAEmbedding,
    keras.layers.ReversibleEmbedding: GraLoRAReversibleEmbedding,
    ReversibleEmbedding: GraLoRAReversibleEmbedding,  # last: an adapted table unadapts into ours (its gradient fix)
}
BASE_CLASS = {adapted: base for base, adapted in ADAPTED_CLASS.items()}

__all__ = [
    "ADAPTED_CLASS",
    "BASE_CLASS",
    "GraLoRAAdapter",
    "GraLoRAConv",
    "GraLoRAConv1D",
    "GraLoRAConv2D",
    "GraLoRAConv3D",
    "GraLoRADense",
    "GraLoRAEinsumDense",
    "GraLoRAEmbedding",
    "GraLoRAReversibleEmbedding",
    "NamedAdapter",
    "ReversibleEmbedding",
]
