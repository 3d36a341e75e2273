"""Adapter files (`.weights.h5`) and the merged export.

An adapter file holds only the adapter variables, keyed by each layer's
`path` (never by position, see keras-hub issue 2701), with the settings that
re-create them. Loading validates the whole file against the model before it
assigns anything; saving writes a temporary file and renames it.

Layout (HDF5):

    attrs: format="keras_gralora.adapters", format_version=1
    layers/<i>/ attrs: path, in_features, out_features, config (JSON)
                datasets: gralora_a, gralora_b[, gralora_hybrid_a, gralora_hybrid_b]
"""

import contextlib
import json
import os
import tempfile

import h5py
import numpy as np
from keras import ops

from keras_gralora import inject
from keras_gralora.config import GraLoRAConfig

FORMAT = "keras_gralora.adapters"
FORMAT_VERSION = 1
SUFFIX = ".weights.h5"


def save_gralora_weights(model, filepath):
    """Saves the adapters of `model` to `filepath` (a `.weights.h5` file).

    Refuses, leaving any existing file untouched, when the name does not end
    in `.weights.h5` or the model has no adapters.
    """
    filepath = _check_filename(filepath)
    layers = inject.adapted_layers(model)
    if not layers:
        raise ValueError(
            f"save_gralora_weights: model '{model.name}' has no GraLoRA adapters to save. "
            "Call `enable_gralora(model, ...)` first."
        )
    with _atomic_write(filepath, SUFFIX) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for i, layer in enumerate(layers):
                group = f.create_group(f"layers/{i}")
                in_features, out_features = layer.matrix_shape_of(layer)
                group.attrs.update(
                    path=layer.path, in_features=in_features, out_features=out_features,
                    config=json.dumps(layer.gralora_config.to_dict()),
                )
                for variable in layer.adapter_variables:
                    group.create_dataset(variable.name, data=ops.convert_to_numpy(variable))


def load_gralora_weights(model, filepath):
    """Loads adapters saved by `save_gralora_weights` onto `model`.

    A model without adapters gets GraLoRA enabled with the file's settings on
    the file's layers first; an adapted model must match the file. Every
    check runs before any weight changes.
    """
    filepath = _check_filename(filepath)
    entries = read_adapter_file(filepath)
    plan = _match(model, entries, filepath)
    to_enable = [(layer, entry["config"]) for layer, entry in plan if not isinstance(layer, inject.GraLoRAAdapter)]
    if to_enable:
        inject.enable_on_layers(model, to_enable)
    for layer, entry in plan:
        merged = layer.merged
        layer.unmerge()
        for variable in layer.adapter_variables:
            variable.assign(entry["arrays"][variable.name])
        if merged:
            layer.merge()
    inject.reset_compiled_functions(model)
    return [layer.path for layer, _ in plan]


def export_merged(model, filepath):
    """Saves `model` with every adapter merged into a plain Dense/EinsumDense, as `.keras`.

    The file loads with `keras.models.load_model` where keras_gralora is not
    installed. `model` itself is left exactly as it was.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"export_merged: the file name must end in '.keras', got '{filepath}'.")
    layers = inject.adapted_layers(model)
    saved = [(layer, type(layer), layer.merged, ops.convert_to_numpy(layer._kernel)) for layer in layers]
    try:
        for layer in layers:
            layer.merge()
            layer.__class__ = inject.BASE_CLASS[type(layer)]  # plain layer: config and weights drop the adapter
        with _atomic_write(filepath, ".keras") as tmp:
            model.save(tmp)
    finally:
        for layer, cls, merged, kernel in saved:
            layer.__class__ = cls
            layer._kernel.assign(kernel)
            layer._gralora_merged = merged


def read_adapter_file(filepath):
    """Reads and checks a whole adapter file into memory: `{path: entry}`."""
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"load_gralora_weights: no adapter file at '{filepath}'.")
    try:
        with h5py.File(filepath, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(
                    f"load_gralora_weights: '{filepath}' is an HDF5 file but not a keras_gralora adapter "
                    f"file (format attribute {f.attrs.get('format')!r}, expected {FORMAT!r}). Adapter files "
                    "come from `save_gralora_weights`; whole-model weights load with `model.load_weights`."
                )
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"load_gralora_weights: '{filepath}' has format version {version}; this keras_gralora "
                    f"reads version {FORMAT_VERSION}. Use the keras_gralora release that wrote it."
                )
            return dict(_read_entry(group) for group in f.get("layers", {}).values())
    except OSError as error:  # h5py's word for "not HDF5", "truncated", "unreadable"
        raise ValueError(
            f"load_gralora_weights: cannot read '{filepath}' as HDF5 (not an HDF5 file, or truncated): {error}"
        ) from error


def _read_entry(group):
    attrs = group.attrs
    entry = {
        "config": GraLoRAConfig(**json.loads(attrs["config"])),
        "shape": (int(attrs["in_features"]), int(attrs["out_features"])),
        "arrays": {name: np.asarray(data) for name, data in group.items()},
    }
    return str(attrs["path"]), entry


def _match(model, entries, filepath):
    """Pairs each file entry with the model's layer, raising on any mismatch."""
    by_path = {layer.path: layer for layer in inject.adaptable_layers(model)}
    if missing := sorted(set(entries) - set(by_path)):
        raise ValueError(
            f"load_gralora_weights: '{filepath}' has adapters for layer paths {missing} that model "
            f"'{model.name}' lacks. Its Dense/EinsumDense paths are: {sorted(by_path)}"
        )
    adapted = {layer.path for layer in inject.adapted_layers(model)}
    if adapted and adapted != set(entries):
        raise ValueError(
            f"load_gralora_weights: model '{model.name}' has adapted layers {sorted(adapted - set(entries))} "
            f"that '{filepath}' lacks, and the file has {sorted(set(entries) - adapted)} that the model "
            "has not adapted. Load onto a model adapted on the same layers, or onto one without adapters."
        )
    plan = []
    for path, entry in entries.items():
        layer = by_path[path]
        _check_layer(layer, path, entry, filepath)
        plan.append((layer, entry))
    return plan


def _check_layer(layer, path, entry, filepath):
    file_config = entry["config"]
    if isinstance(layer, inject.GraLoRAAdapter):
        for name in ("r", "k", "hybrid_r", "alpha"):
            ours, theirs = getattr(layer.gralora_config, name), getattr(file_config, name)
            if ours != theirs:
                raise ValueError(
                    f"load_gralora_weights: layer '{path}' has {name}={ours!r}, '{filepath}' has "
                    f"{name}={theirs!r}. Load onto a model enabled with the file's settings, or onto one "
                    "without adapters (they are then enabled from the file)."
                )
        shape = layer.matrix_shape_of(layer)
        expected = {v.name: tuple(v.shape) for v in layer.adapter_variables}
    else:
        inject.check_adaptable(layer, file_config)
        shape = inject.ADAPTED_CLASS[type(layer)].matrix_shape_of(layer)
        expected = _adapter_shapes(shape, file_config)
    if shape != entry["shape"]:
        raise ValueError(
            f"load_gralora_weights: layer '{path}' maps {shape[0]} -> {shape[1]} features, "
            f"'{filepath}' was saved from {entry['shape'][0]} -> {entry['shape'][1]}."
        )
    saved = {name: array.shape for name, array in entry["arrays"].items()}
    if saved != expected:
        raise ValueError(
            f"load_gralora_weights: layer '{path}' needs adapter variables {expected}, "
            f"'{filepath}' holds {saved}."
        )


def _adapter_shapes(shape, config):
    (in_features, out_features), (r, k, hybrid_r) = shape, (config.r, config.k, config.hybrid_r)
    shapes = {"gralora_a": (k, in_features // k, r), "gralora_b": (k, r, out_features // k)}
    if hybrid_r:
        shapes.update(gralora_hybrid_a=(in_features, hybrid_r), gralora_hybrid_b=(hybrid_r, out_features))
    return shapes


def _check_filename(filepath):
    filepath = os.fspath(filepath)
    if not filepath.endswith(SUFFIX):
        raise ValueError(
            f"Adapter files must end in '{SUFFIX}', got '{filepath}'. For example: 'task.gralora{SUFFIX}'."
        )
    return filepath


@contextlib.contextmanager
def _atomic_write(filepath, suffix):
    """Yields a temporary path beside `filepath`; renames it into place on success only."""
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
