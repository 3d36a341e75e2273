"""KerasHub integration: GraLoRA methods on `keras_hub.models.Backbone`.

They mirror KerasHub's own `enable_lora` / `save_lora_weights` /
`load_lora_weights`, so a KerasHub user needs no new vocabulary.
"""

from keras_gralora import inject


def enable_gralora(self, r=32, k=2, hybrid_r=0, alpha=None, dropout=0.0, target_layer_names=None):
    """Enables GraLoRA on this backbone; see `keras_gralora.enable_gralora`."""
    return inject.enable_gralora(self, r, k, hybrid_r, alpha, dropout, target_layer_names)


def merge_gralora(self, safe=False):
    """Folds this backbone's adapters into their kernels; see `keras_gralora.merge_gralora`."""
    inject.merge_gralora(self, safe=safe)


def save_gralora_weights(self, filepath):
    """Saves this backbone's adapters to a `.weights.h5` file."""
    raise NotImplementedError("Adapter files are not implemented yet.")


def load_gralora_weights(self, filepath):
    """Loads adapters saved by `save_gralora_weights` onto this backbone."""
    raise NotImplementedError("Adapter files are not implemented yet.")


METHODS = (enable_gralora, merge_gralora, save_gralora_weights, load_gralora_weights)


def install():
    """Adds the methods to `keras_hub.models.Backbone`; a no-op without keras-hub."""
    try:
        import keras_hub
    except ImportError:
        return False
    for method in METHODS:
        setattr(keras_hub.models.Backbone, method.__name__, method)
    return True
