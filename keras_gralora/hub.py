"""KerasHub integration: GraLoRA methods on `keras_hub.models.Backbone`.

They mirror KerasHub's own `enable_lora` / `save_lora_weights` /
`load_lora_weights`, so a KerasHub user needs no new vocabulary.

A backbone's config records its constructor arguments, not our layers, so a
reloaded backbone would come back without adapters. An adapted backbone
therefore also writes its adapter settings into its own slot of any Keras
weights file (`.keras`, `.weights.h5`), and re-enables them on load before
its layers read their weights.
"""

import json

import numpy as np

from keras_gralora import inject, saving
from keras_gralora.config import GraLoRAConfig

SETTINGS_KEY = "gralora_settings"


def enable_gralora(self, r=32, k=2, hybrid_r=0, alpha=None, dropout=0.0, target_layer_names=None):
    """Enables GraLoRA on this backbone; see `keras_gralora.enable_gralora`."""
    return inject.enable_gralora(self, r, k, hybrid_r, alpha, dropout, target_layer_names)


def merge_gralora(self, safe=False):
    """Folds this backbone's adapters into their kernels; see `keras_gralora.merge_gralora`."""
    inject.merge_gralora(self, safe=safe)


def save_gralora_weights(self, filepath):
    """Saves this backbone's adapters to a `.weights.h5` file."""
    saving.save_gralora_weights(self, filepath)


def load_gralora_weights(self, filepath):
    """Loads adapters saved by `save_gralora_weights`, enabling GraLoRA first if needed."""
    return saving.load_gralora_weights(self, filepath)


def _settings(backbone):
    return {layer.path: layer.gralora_config.to_dict() for layer in inject.adapted_layers(backbone)}


def _enable_from_settings(backbone, settings):
    by_path = {layer.path: layer for layer in inject.adaptable_layers(backbone)}
    if missing := sorted(set(settings) - set(by_path)):
        raise ValueError(
            f"Backbone '{backbone.name}': the weights file has GraLoRA adapters for {missing}, "
            "which this backbone lacks."
        )
    pending = [
        (by_path[path], GraLoRAConfig(**config))
        for path, config in settings.items()
        if not isinstance(by_path[path], inject.GraLoRAAdapter)
    ]
    if pending:
        inject.enable_on_layers(backbone, pending)


def _wrap_saving(backbone_class):
    save, load = backbone_class.save_own_variables, backbone_class.load_own_variables

    def save_own_variables(self, store):
        save(self, store)
        if settings := _settings(self):
            store[SETTINGS_KEY] = np.frombuffer(json.dumps(settings).encode(), dtype=np.uint8)

    def load_own_variables(self, store):
        if store is not None and SETTINGS_KEY in store.keys():
            _enable_from_settings(self, json.loads(bytes(np.asarray(store[SETTINGS_KEY])).decode()))
            store = {key: store[key] for key in store.keys() if key != SETTINGS_KEY}
        load(self, store)

    backbone_class.save_own_variables = save_own_variables
    backbone_class.load_own_variables = load_own_variables


METHODS = (enable_gralora, merge_gralora, save_gralora_weights, load_gralora_weights)


def install():
    """Adds the methods to `keras_hub.models.Backbone`; a no-op without keras-hub."""
    try:
        import keras_hub
    except ImportError:
        return False
    backbone_class = keras_hub.models.Backbone
    if getattr(backbone_class, "_gralora_installed", False):
        return True
    for method in METHODS:
        setattr(backbone_class, method.__name__, method)
    _wrap_saving(backbone_class)
    backbone_class._gralora_installed = True
    return True
