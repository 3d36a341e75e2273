"""Refuses to train through a merged adapter, before Keras touches any state.

A merged adapter lives in its kernel; training would never move it (it gets
no gradient), so `fit` would run and the training be silently lost. Keras'
`fit` and `train_on_batch` ask the model for its train function first, on
every backend, before they read or clear any variable (Keras' JAX trainer
clears the model's variables before the first step and cannot put them
back if that step fails). `install` wraps `keras.Model.make_train_function`
so the check runs there; `GraLoRAAdapter.call` repeats it for custom
training loops.
"""

import keras

from keras_gralora.layers.adapter import GraLoRAAdapter


def check_no_merged_training(model):
    """Raises `ValueError` if `model` would train an adapter that is merged into its kernel."""
    stuck = {
        layer.path: names
        for layer in model._flatten_layers(include_self=False) if isinstance(layer, GraLoRAAdapter)
        if (names := [n for n in layer._gralora.merged_active if any(v.trainable for v in layer.adapter(n).variables)])
    }
    if stuck and model.trainable:
        raise ValueError(
            f"Model '{model.name}' would train adapters that are merged into their kernels {stuck}: a merged "
            "adapter gets no gradient, so the training would be lost. Call `keras_gralora.unmerge_gralora(model)` "
            "before training (merge again afterwards), or make those adapters inactive."
        )


def install():
    """Wraps `keras.Model.make_train_function` with `check_no_merged_training` (once)."""
    make = keras.Model.make_train_function
    if getattr(make, "_gralora_guard", False):
        return

    def make_train_function(self, force=False):
        check_no_merged_training(self)
        return make(self, force=force)

    make_train_function._gralora_guard = True
    keras.Model.make_train_function = make_train_function
