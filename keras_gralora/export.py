"""`export_merged`: the model with its active adapters merged, saved as plain Keras layers.

The live model is never changed (forward passes in other threads stay
right): inside `serialization.exporting_plain_layers()`, in this thread
only, each GraLoRA layer serializes as its plain `Dense` / `EinsumDense`
config and saves the variables of a plain twin holding the merged kernel
(`plain_twin`, one layer at a time). Keras names a layer's slot in the
weights file after its class (`saving_lib`, "dense", "dense_1"...) and
writes the class into `config.json`; thin wrappers give it the plain
classes and skip the optimizer during the export, and are inert everywhere
else. The export is for serving: it holds no optimizer or compile state (compile again to
train further), which also keeps Keras from loading optimizer slots of
adapter variables that the export drops.
"""

from __future__ import annotations

import os

import keras
from keras.src.saving import saving_lib  # Keras' own .keras writer: its class-named slots and config
from keras.src.utils import naming

from keras_gralora import files, inject
from keras_gralora.layers import GraLoRADense, GraLoRAEinsumDense
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding
from keras_gralora.layers.serialization import exporting, exporting_plain_layers

PLAIN = {
    GraLoRADense: keras.layers.Dense,
    GraLoRAEinsumDense: keras.layers.EinsumDense,
    ReversibleEmbedding: keras.layers.ReversibleEmbedding,
}
_PLAIN_NAMES = {cls.__name__: plain.__name__ for cls, plain in PLAIN.items()}
_REGISTERED = {keras.saving.get_registered_name(cls): plain for cls, plain in PLAIN.items()}


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
    install()
    with files.replacing_file(filepath, where, suffix=".keras") as tmp, files.naming_errors(filepath, where):
        with exporting_plain_layers():
            saving_lib.save_model(model, tmp)


def _plain_config(config):
    """Keras' serialized `config` with the GraLoRA layers as their plain classes (and no compile state)."""
    if isinstance(config, list):
        return [_plain_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: _plain_config(value) for key, value in config.items() if key != "compile_config"}
    plain = _REGISTERED.get(config.get("registered_name"))
    if plain is not None:
        config.update(module="keras.layers", class_name=plain.__name__, registered_name=None)
    return config


def install():
    """Wraps three names Keras' `.keras` writer looks up (once); inert outside an export."""
    if getattr(saving_lib.serialize_keras_object, "_gralora", False):
        return
    serialize, snake_case, walk = saving_lib.serialize_keras_object, naming.to_snake_case, saving_lib._walk_saveable

    def serialize_keras_object(obj):
        config = serialize(obj)
        return _plain_config(config) if exporting() else config

    def to_snake_case(name):
        return snake_case(_PLAIN_NAMES.get(name, name) if exporting() else name)

    def walk_saveable(saveable):
        for name, child in walk(saveable):
            if not (exporting() and isinstance(child, keras.optimizers.Optimizer)):
                yield name, child

    serialize_keras_object._gralora = True
    saving_lib.serialize_keras_object = serialize_keras_object
    naming.to_snake_case = to_snake_case
    saving_lib._walk_saveable = walk_saveable
