"""KerasHub integration: GraLoRA methods on `keras_hub.models.Backbone`.

They mirror KerasHub's own `enable_lora` / `save_lora_weights` /
`load_lora_weights`, so a KerasHub user needs no new vocabulary.

A backbone's config records its constructor arguments, not our layers, so a
reloaded backbone would come back without adapters. An adapted backbone
therefore also writes its adapters' settings and active state into its own
slot of any Keras weights file (`.keras`, `.weights.h5`, presets), and
re-enables them on load before its layers read their weights.

keras_gralora does not import keras_hub itself (about 4 s): `install` runs
when keras_hub is imported, before or after keras_gralora
(`integration/__init__.py`).

KerasHub 0.32's `Backbone.from_preset` drops a quantized backbone's saved
`DTypePolicyMap` (its task loader keeps it since keras-hub#2367), so the
backbone is rebuilt float and its int8/int4 weights cannot load; `install`
makes the backbone loader keep the saved map too when no `dtype` is given.
"""

import json

import numpy as np

from keras_gralora.config import DEFAULT_ADAPTER, GraLoRAConfig
from keras_gralora.files import saved_structure, saving
from keras_gralora.integration import feeds, guards
from keras_gralora.layers.serialization import exporting
from keras_gralora.lifecycle import adapters, merge
from keras_gralora.serving import swap_lock
from keras_gralora.surgery import inject, structure

SETTINGS_KEY = "gralora_settings"
SETTINGS_VERSION = 3


def enable_gralora(
    self,
    r=32,
    k=2,
    hybrid_r=0,
    alpha=None,
    dropout=0.0,
    target_layer_names=None,
    adapter_name="default",
    bias="none",
    modules_to_save=None,
    layers_to_transform=None,
    layers_pattern=None,
    rank_pattern=None,
    alpha_pattern=None,
    k_pattern=None,
    target_parameters=None,
):
    """`backbone.enable_gralora(...)`: `keras_gralora.enable_gralora(backbone, ...)`, as KerasHub's `enable_lora`.

    The arguments, return value and errors are `keras_gralora.enable_gralora`'s.
    With `target_layer_names=None` the backbone's own
    `default_lora_layer_names()` are adapted, as KerasHub's `enable_lora` does.

    Examples:
        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> sorted(backbone.enable_gralora(r=2, k=2))
        ['transformer_layer_0/self_attention_layer/query', 'transformer_layer_0/self_attention_layer/value']
    """
    return inject.enable_gralora(
        self,
        r,
        k,
        hybrid_r,
        alpha,
        dropout,
        target_layer_names,
        adapter_name,
        bias,
        modules_to_save,
        layers_to_transform,
        layers_pattern,
        rank_pattern,
        alpha_pattern,
        k_pattern,
        target_parameters,
    )


def merge_gralora(self, adapter_names=None, safe=False):
    """`backbone.merge_gralora(...)`: `keras_gralora.merge_gralora(backbone, ...)`.

    Examples:
        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> _ = backbone.enable_gralora(r=2, k=2)
        >>> backbone.merge_gralora(safe=True)
        >>> backbone.get_layer("transformer_layer_0")._self_attention_layer.query_dense.merged
        True
    """
    merge.merge_gralora(self, adapter_names, safe=safe)


def save_gralora_weights(self, filepath, adapter_names=None):
    """`backbone.save_gralora_weights(path)`: `keras_gralora.save_gralora_weights(backbone, path)`.

    Mirrors KerasHub's `save_lora_weights`: the file holds the adapters only.

    Examples:
        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> _ = backbone.enable_gralora(r=2, k=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "bert.gralora.weights.h5")
        >>> backbone.save_gralora_weights(path)
    """
    saving.save_gralora_weights(self, filepath, adapter_names)


def load_gralora_weights(self, filepath, adapter_names=None, check_paths=True, allow_partial=False):
    """`backbone.load_gralora_weights(path)`: `keras_gralora.load_gralora_weights(backbone, path)`.

    Mirrors KerasHub's `load_lora_weights`, except that the backbone needs no
    `enable_gralora` first: the file's adapters are created with their saved
    settings.

    Examples:
        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> _ = backbone.enable_gralora(r=2, k=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "bert.gralora.weights.h5")
        >>> backbone.save_gralora_weights(path)
        >>> fresh = tiny_bert()
        >>> sorted(fresh.load_gralora_weights(path))
        ['transformer_layer_0/self_attention_layer/query', 'transformer_layer_0/self_attention_layer/value']
    """
    return saving.load_gralora_weights(self, filepath, adapter_names, check_paths, allow_partial)


def _settings(backbone):
    """The adapters' settings, layers keyed by structure (`structure.py`), modules_to_save too."""
    keys = structure.layer_keys(backbone)
    key_of_path = {layer.path: key for key, layer in structure.layers_by_key(backbone, keys).items()}

    def entry(layer, name):
        config = layer.adapter(name).config.to_dict()
        return {"name": name, **config, "modules_to_save": [key_of_path[p] for p in config["modules_to_save"]]}

    layers = {
        structure.key_of(keys, layer): [entry(layer, name) for name in layer.adapter_names]
        for layer in inject.adapted_layers(backbone)
    }
    return {
        "version": SETTINGS_VERSION,
        "layers": layers,
        "adapters": adapters.adapter_names(backbone),
        "active": adapters.active_adapters(backbone),
        "paths": {structure.key_of(keys, layer): layer.path for layer in inject.adapted_layers(backbone)},
        "model_layers": saved_structure.model_keys(keys),
    }


def _enable_from_settings(backbone, settings):
    version = settings.get("version", 1)
    if version == 1:  # keras_gralora 0.1: {path: config}, one adapter
        settings = {
            "layers": {path: [{"name": DEFAULT_ADAPTER, **c}] for path, c in settings.items()},
            "adapters": [DEFAULT_ADAPTER],
            "active": [DEFAULT_ADAPTER],
        }
    by_name, _ = structure.places(backbone, keyed=version >= 3)  # version 3: keys; before: paths
    adaptable = sorted(name for name, layer in by_name.items() if inject.adapted_class(layer))
    if missing := sorted(set(settings["layers"]) - set(adaptable)):
        raise ValueError(
            f"Backbone '{backbone.name}': the weights file has GraLoRA adapters for {missing}, which this "
            f"backbone lacks (another architecture or configuration). Its Dense/EinsumDense layers are {adaptable}."
        )
    adaptable = {name: by_name[name] for name in adaptable}
    moved = saved_structure.moved(settings.get("paths", {}), adaptable)
    unsaved = saved_structure.unsaved(settings.get("model_layers", adaptable), adaptable)
    if moved or unsaved:
        found = f"would land on other layers: {moved[:5]} (saved -> here)" if moved else f"lacked layers {unsaved[:5]}"
        raise ValueError(
            f"Backbone '{backbone.name}': the weights file was saved from another model, which {found}. A "
            "whole-model file loads into the model it was saved from. To move its adapters, save them with "
            "`save_gralora_weights` and load them with `load_gralora_weights(..., check_paths=False)` (renamed "
            "layers) or `allow_partial=True` (a larger model)."
        )
    plan = [
        (by_name[name], entry["name"], _config(entry, by_name, version))
        for name, entries in settings["layers"].items()
        for entry in entries
        if not isinstance(by_name[name], inject.GraLoRAAdapter) or entry["name"] not in by_name[name].adapter_names
    ]
    if plan:  # added in the saved creation order
        inject.enable_on_layers(backbone, sorted(plan, key=lambda item: settings["adapters"].index(item[1])))
    adapters.set_active_adapters(backbone, settings["active"])


def _config(entry, by_name, version):
    fields = {k: v for k, v in entry.items() if k != "name"}
    if version >= 3:
        fields["modules_to_save"] = [by_name[key].path for key in fields.get("modules_to_save", ())]
    return GraLoRAConfig(**fields)


def _wrap_saving(backbone_class):
    save, load = backbone_class.save_own_variables, backbone_class.load_own_variables

    def save_own_variables(self, store):
        save(self, store)
        if inject.adapted_layers(self) and not exporting():  # a merged export holds plain layers
            store[SETTINGS_KEY] = np.frombuffer(json.dumps(_settings(self)).encode(), dtype=np.uint8)

    def load_own_variables(self, store):
        if store is not None and SETTINGS_KEY in store.keys():
            _enable_from_settings(self, json.loads(bytes(np.asarray(store[SETTINGS_KEY])).decode()))
            store = {key: store[key] for key in store.keys() if key != SETTINGS_KEY}
        load(self, store)

    backbone_class.save_own_variables = save_own_variables
    backbone_class.load_own_variables = load_own_variables


def _keep_saved_quantization(loader_class):
    load_backbone = loader_class.load_backbone

    def load_backbone_keeping_quantization(self, cls, load_weights, **kwargs):
        saved = self.config.get("config", {}).get("dtype")
        if kwargs.get("dtype") is None and isinstance(saved, dict) and saved.get("class_name") == "DTypePolicyMap":
            kwargs["dtype"] = saved  # what KerasHub's task loader does (`_resolve_dtype`)
        return load_backbone(self, cls, load_weights, **kwargs)

    loader_class.load_backbone = load_backbone_keeping_quantization


METHODS = (enable_gralora, merge_gralora, save_gralora_weights, load_gralora_weights)


def generating_tasks(keras_hub):
    """The task classes that make KerasHub's compiled `generate` (`CausalLM`, `TextToImage`, `ImageToImage`,
    `Inpaint`). Their subclasses' own `generate` (Gemma 3's, Stable Diffusion 3's...) prepare the inputs and call
    `super().generate`, so wrapping these four reaches every task."""
    classes = {cls for cls in vars(keras_hub.models).values() if isinstance(cls, type)}
    return sorted((cls for cls in classes if {"make_generate_function", "generate"} <= set(vars(cls))), key=str)


def install(keras_hub):
    """Adds the methods to `keras_hub.models.Backbone` (once)."""
    backbone_class = keras_hub.models.Backbone
    if getattr(backbone_class, "_gralora_installed", False):
        return True
    for method in METHODS:
        setattr(backbone_class, method.__name__, method)
    _wrap_saving(backbone_class)
    from keras_hub.src.utils.preset_utils import KerasPresetLoader

    _keep_saved_quantization(KerasPresetLoader)
    for task in generating_tasks(keras_hub):
        task.make_generate_function = guards.refreshing_generate(vars(task)["make_generate_function"])
        generate = vars(task)["generate"]
        if issubclass(task, keras_hub.models.CausalLM):  # one adapter name per prompt: routing
            generate = feeds.routed_generate(generate)
        task.generate = swap_lock.reading(generate)  # a pass, as `guards.PASSES`
    from keras_hub.src.utils.pipeline_model import PipelineModel

    PipelineModel.predict = feeds.preprocessing_predict(PipelineModel.predict)
    backbone_class._gralora_installed = True
    return True
