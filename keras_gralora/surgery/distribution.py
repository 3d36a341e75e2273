"""Adapters under `keras.distribution`: where new adapter variables go.

Keras places every variable it creates under the active distribution
(`keras.distribution.set_distribution(d)`, or inside `d.scope()`):
`ModelParallel` by the first `LayoutMap` key that `re.search`es the
variable's path, else replicated; `DataParallel` replicated. Adapter
variables are created by Keras like any other (`<layer path>/gralora_a_<adapter>`, ...), so:

- by default they are replicated on every device: GraLoRA's factors are
  small (r x (in + out) per layer, like LoRA's); sharded like their kernels,
  XLA re-partitions them in the backward pass ("Involuntary full
  rematerialization") and gathers more (measured: README, "Sharded
  training"). The adapter's rank-r features carry a sharding hint
  (`backend.keep_tokens_sharded`) so that their tokens stay split like the
  batch's;
- a user's layout map keys for adapter paths (e.g. `".*gralora_b_.*"`) are
  honoured, and KerasHub's own keys (`...query.kernel`) do not match them
  (the names contain no "kernel"), unlike Keras LoRA's `lora_kernel_a`.

New variables land where the model's are only if the distribution that
built the model is active when they are created: `check_placement` refuses
the calls that would split a model between a device mesh and one device.
"""

import keras

from keras_gralora.backend import lays_out_variables


def check_placement(model, where):
    """Raises `ValueError` when adapter variables created now would not sit on the model's devices."""
    if not lays_out_variables():
        return
    active = keras.distribution.distribution()
    laid_out = [v.path for v in model.weights if getattr(v, "_layout", None) is not None]
    if laid_out and active is None:
        raise ValueError(
            f"{where}: model '{model.name}' was built under a keras.distribution ('{laid_out[0]}' is laid out "
            "on a device mesh) but no distribution is active now, so new adapter variables would sit on one "
            "device. Call it inside `distribution.scope()`, or after `keras.distribution.set_distribution("
            "distribution)`, with the distribution the model was built under."
        )
    if active is not None and model.weights and not laid_out:
        raise ValueError(
            f"{where}: model '{model.name}' was built without a keras.distribution, but {type(active).__name__} "
            "is active now, so new adapter variables would be laid out on its device mesh and the model's own "
            "weights would not. Build (or load) the model under the distribution, or call this outside it."
        )
