"""GraLoRA variants of Keras' Dense, EinsumDense, convolutions and tables; expert weights; a ReversibleEmbedding."""

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.conv import GraLoRAConv, GraLoRAConv1D, GraLoRAConv2D, GraLoRAConv3D
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense
from keras_gralora.layers.embedding import GraLoRAEmbedding, GraLoRAReversibleEmbedding, GraLoRATable
from keras_gralora.layers.experts import GraLoRAExpertWeights
from keras_gralora.layers.kinds import ADAPTED_CLASS, BASE_CLASS
from keras_gralora.layers.named_adapter import NamedAdapter
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding

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
    "GraLoRAExpertWeights",
    "GraLoRAReversibleEmbedding",
    "GraLoRATable",
    "NamedAdapter",
    "ReversibleEmbedding",
]
