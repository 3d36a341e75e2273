"""keras_gralora: GraLoRA (Granular Low-Rank Adaptation) for Keras 3 and KerasHub.

The public names load on first use (module `__getattr__`), so importing the
package imports no Keras: `python -m keras_gralora convert` runs on numpy and
safetensors alone. What the package changes in Keras and KerasHub is made
when they are imported (`keras_gralora/integration/`).
"""

import importlib

from keras_gralora import integration, moved

__version__ = "0.3.0"

_HOMES = {
    "keras_gralora.lifecycle.adapters": [
        "active_adapters",
        "adapter_names",
        "delete_adapter",
        "disable_gralora",
        "set_active_adapters",
    ],
    "keras_gralora.config": ["GraLoRAConfig"],
    "keras_gralora.files.export": ["export_merged"],
    "keras_gralora.serving.hotswap": ["hotswap_adapter", "prepare_model_for_compiled_hotswap"],
    "keras_gralora.surgery.inject": ["enable_gralora"],
    "keras_gralora.interop.lora": ["lora_factors", "save_lora_adapter"],
    "keras_gralora.interop.peft": ["load_peft_adapter", "save_peft_adapter"],
    "keras_gralora.layers": [
        "GraLoRAAdapter",
        "GraLoRAConv1D",
        "GraLoRAConv2D",
        "GraLoRAConv3D",
        "GraLoRADense",
        "GraLoRAEinsumDense",
        "GraLoRAEmbedding",
        "GraLoRAExpertWeights",
        "GraLoRAReversibleEmbedding",
        "NamedAdapter",
    ],
    "keras_gralora.lifecycle.merge": ["merge_and_unload", "merge_gralora", "unload_gralora", "unmerge_gralora"],
    "keras_gralora.surgery.quantized_gradients": ["fix_quantized_gradients"],
    "keras_gralora.serving.routing": ["adapter_routing"],
    "keras_gralora.files.saving": ["load_gralora_weights", "save_gralora_weights"],
    "keras_gralora.lifecycle.summary": ["gralora_summary"],
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'keras_gralora' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__():
    return sorted({*globals(), *__all__})


moved.install()  # `keras_gralora.merge` and the other paths of the reference before the subpackages
integration.install_when_imported()  # Keras and KerasHub change when they are imported, not before
