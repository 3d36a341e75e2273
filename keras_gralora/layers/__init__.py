"""GraLoRA variants of Keras' Dense and EinsumDense, and a ReversibleEmbedding with right quantized gradients."""

import keras

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense
from keras_gralora.layers.named_adapter import NamedAdapter
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding

ADAPTED_CLASS = {keras.layers.Dense: GraLoRADense, keras.layers.EinsumDense: GraLoRAEinsumDense}
BASE_CLASS = {adapted: base for base, adapted in ADAPTED_CLASS.items()}

__all__ = [
    "ADAPTED_CLASS",
    "BASE_CLASS",
    "GraLoRAAdapter",
    "GraLoRADense",
    "GraLoRAEinsumDense",
    "NamedAdapter",
    "ReversibleEmbedding",
]
