"""Two checks that must run before Keras changes anything: training merged adapters, unsupported quantization.

- A merged adapter lives in its kernel; training would never move it (it
  gets no gradient), so `fit` would run and the training be silently lost.
  Keras' `fit` and `train_on_batch` ask the model for its train function
  first, on every backend, before they read or clear any variable (Keras'
  JAX trainer clears the model's variables before the first step and cannot
  put them back if that step fails), so the check wraps
  `keras.Model.make_train_function`. `GraLoRAAdapter.call` repeats it for
  custom training loops.
- `keras.Model.quantize` quantizes layer after layer and turns a layer's
  refusal into a warning. A GraLoRA layer refuses modes it cannot serve, so
  the wrapper checks the mode against every GraLoRA layer first: the model
  is left unchanged, with an error.
"""

import keras

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.quantized import check_quantization_mode


def check_no_merged_training(model):
    """Raises `ValueError` if `model` would train an adapter that is merged into its kernel."""
    stuck = {
        layer.path: names
        for layer in _gralora_layers(model)
        if (names := [n for n in layer._gralora.merged_active if any(v.trainable for v in layer.adapter(n).variables)])
    }
    if stuck and model.trainable:
        raise ValueError(
            f"Model '{model.name}' would train adapters that are merged into their kernels {stuck}: a merged "
            "adapter gets no gradient, so the training would be lost. Call `keras_gralora.unmerge_gralora(model)` "
            "before training (merge again afterwards), or make those adapters inactive."
        )


def check_quantizable(model, mode):
    """Raises `ValueError` if `model` has GraLoRA layers and `mode` cannot carry them."""
    if layers := _gralora_layers(model):
        check_quantization_mode(mode, f"{model.name}.quantize (GraLoRA on {layers[0].path} and others)")


def _gralora_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, GraLoRAAdapter)]


def install():
    """Wraps `keras.Model.quantize` and, where the backend trains, `make_train_function` with the checks (once)."""
    make, quantize = getattr(keras.Model, "make_train_function", None), keras.Model.quantize
    if getattr(quantize, "_gralora_guard", False):
        return

    def make_train_function(self, force=False):
        check_no_merged_training(self)
        return make(self, force=force)

    def quantize_model(self, mode=None, **kwargs):
        check_quantizable(self, mode)
        return quantize(self, mode, **kwargs)

    quantize_model._gralora_guard = True
    keras.Model.quantize = quantize_model
    if make is not None:  # Keras' numpy backend only runs inference: it has no train function to guard
        keras.Model.make_train_function = make_train_function
