"""Which GraLoRA layer kind adapts which Keras layer class, and back.

A module of its own (not the package's `__init__`), so that code importing
it while the package is still initializing finds the tables complete.
"""

import keras

from keras_gralora.layers.conv import GraLoRAConv1D, GraLoRAConv2D, GraLoRAConv3D
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense
from keras_gralora.layers.embedding import GraLoRAEmbedding, GraLoRAReversibleEmbedding
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
