"""Checks and refreshes that must run before Keras acts: merged training, quantization, stale compiled functions.

- A merged adapter lives in its kernel; training would never move it (it
  gets no gradient), so `fit` would run and the training be silently lost.
  Keras' `fit` and `train_on_batch` ask the model for its train function
  first, on every backend, before they read or clear any variable (Keras'
  JAX trainer clears the model's variables before the first step and cannot
  put them back if that step fails), so the check wraps
  `keras.Model.make_train_function`. `GraLoRAAdapter.call` repeats it for
  custom training loops.
- `keras.Model.quantize` quantizes layer after layer and turns a layer's
  refusal into a warning. The wrapper checks the mode, merged adapters and
  `disable_gralora` against every GraLoRA layer first: the model is left
  unchanged, with an error.
- A model's forward passes (`__call__`, `predict`, `evaluate`, `fit` and
  their `*_on_batch`) hold the swap lock's shared side, so a hot-swap in
  another thread is all or nothing to them (`swap_lock.py`).
- Compiled functions (jax's and tensorflow's `predict`, `evaluate`, `fit`
  and KerasHub's `generate`) trace the layers as they are. Every change of
  what a GraLoRA layer computes moves that layer's own version (its
  `_refresh`), and adapting a layer or fixing a reverse embedding changes
  its class; each `make_*_function` compares the model's `traced_state`
  (those versions and classes, over the model's own layers) with the one it
  was built at and rebuilds when it moved. So every model holding the layer
  (a backbone and its task) sees the change, and no other model rebuilds.
"""

import keras

from keras_gralora.integration import feeds
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.quantized import check_quantization_mode
from keras_gralora.layers.reversible_embedding import KERAS_REVERSIBLE_EMBEDDING
from keras_gralora.serving import swap_lock
from keras_gralora.surgery.inject import check_enabled, check_not_routed
from keras_gralora.surgery.quantized_gradients import fix_quantized_gradients
from keras_gralora.surgery.selection import adapted_layers

KERAS_FUNCTIONS = ("make_train_function", "make_test_function", "make_predict_function")
PASSES = ("__call__", "predict", "predict_on_batch", "evaluate", "test_on_batch", "fit", "train_on_batch")


def check_no_merged_training(model):
    """Raises `ValueError` if `model` would train an adapter that is merged into its kernel."""
    stuck = {
        layer.path: names
        for layer in adapted_layers(model)
        if (names := [n for n in layer._gralora.merged_active if any(v.trainable for v in layer.adapter(n).variables)])
    }
    if stuck and model.trainable:
        raise ValueError(
            f"Model '{model.name}' would train adapters that are merged into their kernels {stuck}: a merged "
            "adapter gets no gradient, so the training would be lost. Call `keras_gralora.unmerge_gralora(model)` "
            "before training (merge again afterwards), or make those adapters inactive."
        )


def check_quantizable(model, mode):
    """Raises `ValueError`, before any layer changes, if `model` has GraLoRA layers that cannot take `mode`."""
    if not (layers := adapted_layers(model)):
        return
    where = f"{model.name}.quantize"
    check_quantization_mode(mode, f"{where} (GraLoRA on {layers[0].path} and others)")
    check_enabled(model, where)
    if merged := [layer.path for layer in layers if layer.merged and not getattr(layer, "EXPERTS", False)]:
        raise ValueError(
            f"{where}: adapters are merged into the float kernels of {merged[:3]}...; quantizing would freeze "
            "them into the integer kernels. Call `unmerge_gralora(model)` first; nothing was quantized."
        )


def traced_state(model):
    """What a compiled function of `model` traced of GraLoRA: each adapter layer's version, each layer's class."""
    return tuple(
        (id(layer), type(layer), layer._gralora.version if isinstance(layer, GraLoRAAdapter) else None)
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (GraLoRAAdapter, KERAS_REVERSIBLE_EMBEDDING))
    )


def is_stale(model, kind):
    """Whether `model`'s compiled `kind` function predates a change of its layers (and notes it is fresh now)."""
    built = model.__dict__.setdefault("_gralora_built_at", {})  # plain dict: no Keras tracking
    state = traced_state(model)
    stale = built.get(kind) != state
    built[kind] = state
    return stale


def _refreshing(make, kind, check=None):
    def make_function(self, force=False):
        if check is not None:
            check(self)
        stale = is_stale(self, kind)
        if kind == "make_predict_function":  # its step reads a routing's rows: `feeds.py`
            stale = feeds.install_step(self, "predict_step") or stale
        return make(self, force=stale or force)

    make_function._gralora_guard = True
    return make_function


def refreshing_generate(make):
    """KerasHub's `make_generate_function`, rebuilt when adapters changed since it was built."""

    def make_generate_function(self, *args, **kwargs):
        stale = is_stale(self, "generate")
        if feeds.install_step(self, "generate_step") or stale:
            self.generate_function = None
        make(self, *args, **kwargs)
        if not getattr(self.generate_function, "_gralora_feeding", False):
            self.generate_function = feeds.feeding(self.generate_function)
        return self.generate_function

    make_generate_function._gralora_guard = True
    return make_generate_function


def install():
    """Wraps `keras.Model.quantize` and the backend's `make_*_function`s (once)."""
    quantize = keras.Model.quantize
    if getattr(quantize, "_gralora_guard", False):
        return

    def quantize_model(self, mode=None, **kwargs):
        check_quantizable(self, mode)
        result = quantize(self, mode, **kwargs)
        if adapted_layers(self):  # layers added since `enable_gralora` fixed the model's reverse embeddings
            fix_quantized_gradients(self)
        return result

    quantize_model._gralora_guard = True
    keras.Model.quantize = quantize_model
    for name in KERAS_FUNCTIONS:  # Keras' numpy backend only runs inference: it has no train function
        if (make := getattr(keras.Model, name, None)) is not None:
            setattr(keras.Model, name, _refreshing(make, name, CHECKS.get(name)))
    for name in ("predict", "predict_on_batch"):
        setattr(keras.Model, name, feeds.predicting(getattr(keras.Model, name), name))
    for name in PASSES:  # a hot-swap waits for the passes running, and they never see half of one: `swap_lock.py`
        if (method := getattr(keras.Model, name, None)) is not None:
            setattr(keras.Model, name, swap_lock.reading(method))


def _check_training(model):
    check_not_routed(model, "training")
    check_no_merged_training(model)


CHECKS = {
    "make_train_function": _check_training,
    "make_test_function": lambda model: check_not_routed(model, "evaluation"),
}
