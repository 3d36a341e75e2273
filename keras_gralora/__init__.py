"""keras_gralora: GraLoRA (Granular Low-Rank Adaptation) for Keras 3 and KerasHub."""

import sys

__version__ = "0.3.0"


def _locating_command_line():
    """True while `python -m keras_gralora` imports this package to find its `__main__` (argv[0] is "-m" then).

    The command line converts PEFT directories with numpy and safetensors
    alone, so Keras (and a backend) is not imported for it.
    """
    argv = getattr(sys, "orig_argv", [])
    return sys.argv[:1] == ["-m"] and "-m" in argv and argv[argv.index("-m") + 1 :][:1] == ["keras_gralora"]


if not _locating_command_line():
    from keras_gralora import guards, hub
    from keras_gralora.adapters import (
        active_adapters,
        adapter_names,
        delete_adapter,
        disable_gralora,
        set_active_adapters,
    )
    from keras_gralora.config import GraLoRAConfig
    from keras_gralora.export import export_merged
    from keras_gralora.hotswap import hotswap_adapter, prepare_model_for_compiled_hotswap
    from keras_gralora.inject import enable_gralora
    from keras_gralora.interop.lora import lora_factors, save_lora_adapter
    from keras_gralora.interop.peft import load_peft_adapter, save_peft_adapter
    from keras_gralora.layers import GraLoRAAdapter, GraLoRADense, GraLoRAEinsumDense, NamedAdapter
    from keras_gralora.merge import merge_and_unload, merge_gralora, unload_gralora, unmerge_gralora
    from keras_gralora.quantized_gradients import fix_quantized_gradients
    from keras_gralora.routing import adapter_routing
    from keras_gralora.saving import load_gralora_weights, save_gralora_weights
    from keras_gralora.summary import gralora_summary

    hub.install_when_imported()  # keras_hub stays unimported until the user imports it
    guards.install()

__all__ = [
    "GraLoRAAdapter",
    "GraLoRAConfig",
    "GraLoRADense",
    "GraLoRAEinsumDense",
    "NamedAdapter",
    "active_adapters",
    "adapter_names",
    "adapter_routing",
    "delete_adapter",
    "disable_gralora",
    "enable_gralora",
    "export_merged",
    "fix_quantized_gradients",
    "gralora_summary",
    "hotswap_adapter",
    "load_gralora_weights",
    "load_peft_adapter",
    "lora_factors",
    "merge_and_unload",
    "merge_gralora",
    "prepare_model_for_compiled_hotswap",
    "save_gralora_weights",
    "save_lora_adapter",
    "save_peft_adapter",
    "set_active_adapters",
    "unload_gralora",
    "unmerge_gralora",
]
