"""keras_gralora: GraLoRA (Granular Low-Rank Adaptation) for Keras 3 and KerasHub."""

from keras_gralora import hub
from keras_gralora.config import GraLoRAConfig
from keras_gralora.inject import enable_gralora, gralora_summary, merge_gralora, unmerge_gralora
from keras_gralora.layers import GraLoRAAdapter, GraLoRADense, GraLoRAEinsumDense
from keras_gralora.saving import export_merged, load_gralora_weights, save_gralora_weights

__version__ = "0.1.0"

__all__ = [
    "GraLoRAAdapter",
    "GraLoRAConfig",
    "GraLoRADense",
    "GraLoRAEinsumDense",
    "enable_gralora",
    "export_merged",
    "load_gralora_weights",
    "save_gralora_weights",
    "gralora_summary",
    "merge_gralora",
    "unmerge_gralora",
]

hub.install()
