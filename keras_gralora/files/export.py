"""`export_merged`: the model with its active adapters merged, saved as plain Keras layers.

The live model is never changed (forward passes in other threads stay
right): inside `serialization.exporting_plain_layers()`, in this thread
only, each GraLoRA layer serializes as its plain `Dense` / `EinsumDense`
config and saves the variables of a plain twin holding the merged kernel
(`plain_twin`, one layer at a time). Keras names a layer's slot in the
weights file after its class (`saving_lib`, "dense", "dense_1"...) and
writes the class into `config.json`; thin wrappers of Keras' writer give it
the plain classes and skip the optimizer during the export, and are inert
everywhere else (`integration/keras_saving.py`). The export is for
serving: it holds no optimizer or compile state (compile again to train
further), which also keeps Keras from loading optimizer slots of adapter
variables that the export drops.
"""

from __future__ import annotations

import os

import keras
from keras.src.saving import saving_lib  # Keras' own .keras writer: its class-named slots and config

from keras_gralora.files import atomic
from keras_gralora.layers.serialization import exporting_plain_layers
from keras_gralora.surgery import inject


def export_merged(model: keras.Layer, filepath: str | os.PathLike) -> None:
    """Saves `model` with its active adapters merged into plain Dense/EinsumDense layers, as `.keras`.

    The file loads with `keras.saving.load_model` where keras_gralora is
    not installed. `model` itself is never changed, so other threads may
    run it meanwhile. A merge into an int8/int4 kernel requantizes it
    (see `merge_gralora`). The file is written beside the old one and
    renamed into place; it holds no optimizer or compile state.

    Args:
        model: A model with GraLoRA adapters (or without: saved as is).
        filepath: Ends in `.keras`.

    Returns:
        None.

    Raises:
        ValueError: A file name not ending in `.keras`, or a call inside
            `disable_gralora()` or `adapter_routing`.
        OSError: The file could not be written (it names `filepath`); an
            existing file is left as it was.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "merged.keras")
        >>> keras_gralora.export_merged(model, path)
        >>> [type(layer).__name__ for layer in keras.saving.load_model(path).layers]
        ['InputLayer', 'Dense']
    """
    where = "export_merged"
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"{where}: the file name must end in '.keras', got '{filepath}'.")
    inject.check_enabled(model, where)
    with atomic.replacing_file(filepath, where, suffix=".keras") as tmp, atomic.naming_errors(filepath, where):
        with exporting_plain_layers():
            saving_lib.save_model(model, tmp)
