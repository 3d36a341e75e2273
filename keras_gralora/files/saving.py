"""Adapter files: `save_gralora_weights` / `load_gralora_weights` (the merged export: `export.py`).

Loading reads the file's structure, checks every adapter, layer, bias and
module and every declared shape and dtype against the model, then reads the
data, and only then changes anything; saving builds the whole file, then
writes it beside the old one and renames it (`atomic.py`; format:
`adapter_file.py`).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_gralora.backend import to_numpy
from keras_gralora.files import adapter_file, saved_structure
from keras_gralora.files.adapter_file import FileAdapter, LayerEntry
from keras_gralora.files.loading import Source, load_adapters
from keras_gralora.layers.named_adapter import ROLES
from keras_gralora.lifecycle import adapters
from keras_gralora.surgery import inject, structure


def save_gralora_weights(
    model: keras.Layer, filepath: str | os.PathLike, adapter_names: str | list[str] | None = None
) -> None:
    """Saves adapters of `model` to `filepath` (a `.weights.h5` file), adapters only.

    Weights are keyed by the model's structure, not by auto-generated layer
    names, so the file loads into a second build of the same model (or
    architecture) in another process. The whole file is built first, then
    written beside the old one, fsynced and renamed into place.

    Args:
        model: The model the adapters were enabled on (or one containing it).
        filepath: Ends in `.weights.h5`; an existing file is replaced only
            once the new one is complete.
        adapter_names: A name or list of names; `None` saves every adapter.
            Each adapter travels with its settings, its active state, the
            biases its bias mode trains and its `modules_to_save` weights.

    Returns:
        None.

    Raises:
        ValueError: A file name not ending in `.weights.h5`, a model without
            adapters, an unknown adapter name, or `modules_to_save` the model
            lacks (save from the task, not its backbone).
        OSError: The file could not be written; an existing file is left as
            it was.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "task.gralora.weights.h5")
        >>> keras_gralora.save_gralora_weights(model, path)
        >>> os.path.exists(path)
        True
    """
    where = "save_gralora_weights"
    filepath = adapter_file.check_filename(filepath)
    if not inject.adapted_layers(model):
        raise ValueError(
            f"{where}: model '{model.name}' has no GraLoRA adapters to save. Call `enable_gralora(model, ...)` first."
        )
    names = adapters.adapter_names(model) if adapter_names is None else adapter_names
    names = adapters.check_names(model, [names] if isinstance(names, str) else names, where)
    adapter_file.write(filepath, [collect_adapter(model, name, where) for name in names], where)


def collect_adapter(model, name, where):
    """Adapter `name` of `model` as a `FileAdapter` keyed by structure (`structure.py`)."""
    keys = structure.layer_keys(model)
    variable_keys = structure.variable_keys(model, keys)
    held = [layer for layer in inject.adapted_layers(model) if name in layer.adapter_names]
    layers = {
        structure.key_of(keys, layer): LayerEntry(
            layer.adapter(name).config,
            layer.matrix_shape_of(layer),
            {role: _array(v) for role, v in zip(ROLES, layer.adapter(name).variables)},
        )
        for layer in held
    }
    paths = {structure.key_of(keys, layer): layer.path for layer in held}
    config = held[0].adapter(name).config
    by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    if missing := [path for path in config.modules_to_save if path not in by_path]:
        raise ValueError(
            f"{where}: adapter {name!r} trains modules_to_save {missing}, which model '{model.name}' lacks. "
            "Save from the model the adapter was enabled on (a task, not its backbone)."
        )
    module_variables = [v for path in config.modules_to_save for v in by_path[path].weights]
    arrays = {}
    for kind, variables in (("biases", inject.bias_variables(model, config.bias)), ("modules", module_variables)):
        arrays[kind] = {variable_keys[id(v)]: _array(v) for v in variables}
        paths.update({variable_keys[id(v)]: v.path for v in variables})
    module_keys = tuple(structure.key_of(keys, by_path[path]) for path in config.modules_to_save)
    return FileAdapter(
        name,
        name in inject.active_adapters(model),
        layers,
        arrays["biases"],
        arrays["modules"],
        keyed=True,
        paths=paths,
        module_keys=module_keys,
        model_keys=saved_structure.model_keys(keys),
    )


def _array(variable):
    return np.asarray(to_numpy(variable))


def load_gralora_weights(
    model: keras.Layer,
    filepath: str | os.PathLike,
    adapter_names: str | list[str] | dict[str, str] | None = None,
    check_paths: bool = True,
    allow_partial: bool = False,
) -> list[str]:
    """Loads adapters saved by `save_gralora_weights` onto `model`.

    Every check (the file's structure, each adapter, layer, bias and module,
    every declared shape and dtype) runs before any weight changes, so a
    failed load leaves `model` as it was. Links and references that point
    outside the file are refused, never followed.

    Args:
        model: Any model with the file's layer paths: without adapters, or
            with others (the file's are added beside them, inactive unless
            the model had none), or with the same adapters on the same
            layers and settings (their weights are replaced).
        filepath: A `.weights.h5` adapter file (any format version, 1 to 3).
        adapter_names: `None` loads every adapter of the file; a name or a
            list loads those; a dict `{name in file: name in model}` renames.
        check_paths: Layers are found by the model's structure (as Keras'
            own files find them); each must also carry the name it was saved
            from (auto-generated numbering aside), so a file never lands on
            another layer. `False` loads onto renamed layers.
        allow_partial: A file saved from a model without some of `model`'s
            layers (a smaller configuration: fewer blocks) is refused, as it
            would adapt part of the model only; `True` loads it onto the
            layers it names.

    Returns:
        The paths of the layers that received adapters.

    Raises:
        ValueError: The file does not fit `model` (the message names the
            file, the layer and the fix), is not an adapter file, or holds
            unsafe content.
        FileNotFoundError: `filepath` does not exist.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "task.gralora.weights.h5")
        >>> keras_gralora.save_gralora_weights(model, path)
        >>> fresh_inputs = keras.Input((8,))
        >>> fresh = keras.Model(fresh_inputs, keras.layers.Dense(8, name="query")(fresh_inputs))
        >>> keras_gralora.load_gralora_weights(fresh, path)
        ['query']
    """
    where = "load_gralora_weights"
    filepath = adapter_file.check_filename(filepath)
    with adapter_file.reading(filepath, where) as saved:
        renames = _renames(saved, adapter_names, filepath)
        return load_adapters(model, saved, renames, Source(where, filepath, check_paths, allow_partial))


def _renames(saved, adapter_names, filepath):
    where = "load_gralora_weights"
    if adapter_names is None:
        renames = {name: name for name in saved}
    elif isinstance(adapter_names, dict):
        renames = dict(adapter_names)
    else:
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        renames = {name: name for name in names} if isinstance(names, (list, tuple)) else None
    if not renames or not all(isinstance(k, str) and isinstance(v, str) for k, v in renames.items()):
        raise ValueError(
            f"{where}: adapter_names={adapter_names!r} must be a name, a non-empty list of names, or a dict "
            "{name in file: name in model}."
        )
    if unknown := [name for name in renames if name not in saved]:
        raise ValueError(f"{where}: '{filepath}' has no adapter {unknown}; it holds {list(saved)}.")
    if len(set(renames.values())) < len(renames):
        raise ValueError(f"{where}: adapter_names={adapter_names!r} gives two adapters the same name.")
    return renames
