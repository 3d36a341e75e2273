"""GraLoRA variants of Keras' Dense and EinsumDense layers."""

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense
from keras_gralora.layers.named_adapter import NamedAdapter

__all__ = ["GraLoRAAdapter", "GraLoRADense", "GraLoRAEinsumDense", "NamedAdapter"]
