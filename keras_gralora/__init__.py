"""keras_gralora: GraLoRA (Granular Low-Rank Adaptation) for Keras 3 and KerasHub."""

from keras_gralora import hub
from keras_gralora.config import GraLoRAConfig
from keras_gralora.inject import enable_gralora, gralora_summary, merge_gralora, unmerge_gralora
from keras_gralora.layers import GraLoRAAdapter, GraLoRADense, GraLoRAEinsumDense

__version__ = "0.1.0"

__all__ = [
    "GraLoRAAdapter",
    "GraLoRAConfig",
    "GraLoRADense",
    "GraLoRAEinsumDense",
    "enable_gralora",
    "gralora_summary",
    "merge_gralora",
    "unmerge_gralora",
]

hub.install()
