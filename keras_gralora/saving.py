"""Adapter files (`save_gralora_weights` / `load_gralora_weights`) and the merged export.

Loading reads the whole file, checks every adapter, layer, bias and module
against the model, and only then changes anything; saving writes a
temporary file and renames it (format: `keras_gralora/adapter_file.py`).
"""

import dataclasses
import os

import numpy as np
from keras import ops

from keras_gralora import adapter_file, adapters, inject
from keras_gralora.adapter_file import FileAdapter, LayerEntry
from keras_gralora.config import check_adapter_name
from keras_gralora.layers.named_adapter import ROLES


def save_gralora_weights(model, filepath, adapter_names=None):
    """Saves adapters of `model` to `filepath` (a `.weights.h5` file).

    Args:
        model: The model the adapters were enabled on (or one containing it).
        filepath: Ends in `.weights.h5`; an existing file is replaced only
            once the new one is complete.
        adapter_names: A name or list of names; `None` saves every adapter.
            Each adapter travels with its settings, its active state, the
            biases its bias mode trains and its `modules_to_save` weights.
    """
    where = "save_gralora_weights"
    filepath = adapter_file.check_filename(filepath)
    if not inject.adapted_layers(model):
        raise ValueError(
            f"{where}: model '{model.name}' has no GraLoRA adapters to save. Call `enable_gralora(model, ...)` first."
        )
    names = adapters.adapter_names(model) if adapter_names is None else adapter_names
    names = adapters.check_names(model, [names] if isinstance(names, str) else names, where)
    adapter_file.write(filepath, [_collect(model, name, where) for name in names])


def _collect(model, name, where):
    layers = {
        layer.path: LayerEntry(
            layer.adapter(name).config, layer.matrix_shape_of(layer),
            {role: _array(v) for role, v in zip(ROLES, layer.adapter(name).variables)},
        )
        for layer in inject.adapted_layers(model) if name in layer.adapter_names
    }
    config = next(iter(layers.values())).config
    by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    if missing := [path for path in config.modules_to_save if path not in by_path]:
        raise ValueError(
            f"{where}: adapter {name!r} trains modules_to_save {missing}, which model '{model.name}' lacks. "
            "Save from the model the adapter was enabled on (a task, not its backbone)."
        )
    modules = {v.path: _array(v) for path in config.modules_to_save for v in by_path[path].weights}
    biases = {v.path: _array(v) for v in inject.bias_variables(model, config.bias)}
    return FileAdapter(name, name in inject.active_adapters(model), layers, biases, modules)


def _array(variable):
    return np.asarray(ops.convert_to_numpy(variable))


@dataclasses.dataclass
class _Plan:
    name: str  # in the model
    saved: FileAdapter
    layers: list  # (layer, LayerEntry)
    new: bool


def load_gralora_weights(model, filepath, adapter_names=None):
    """Loads adapters saved by `save_gralora_weights` onto `model`.

    Args:
        model: Any model with the file's layer paths: without adapters, or
            with others (the file's are added beside them, inactive unless
            the model had none), or with the same adapters on the same
            layers and settings (their weights are replaced).
        filepath: A `.weights.h5` adapter file (format version 1 or 2).
        adapter_names: `None` loads every adapter of the file; a name or a
            list loads those; a dict `{name in file: name in model}` renames.

    Returns:
        The paths of the layers that received adapters. Every check runs
        before any weight changes.
    """
    where = "load_gralora_weights"
    filepath = adapter_file.check_filename(filepath)
    saved = adapter_file.read(filepath, where)
    renames = _renames(saved, adapter_names, filepath)
    had_adapters = bool(inject.adapted_layers(model))
    active = adapters.active_adapters(model)
    plans = [_plan(model, saved[name], target, filepath) for name, target in renames.items()]
    _check_owners(model, plans, filepath)
    if new := [(layer, plan.name, entry.config) for plan in plans if plan.new for layer, entry in plan.layers]:
        inject.enable_on_layers(model, new)
    variables = {v.path: v for v in model.weights}
    for plan in plans:
        _assign(plan, variables)
    if not had_adapters:
        active = [plan.name for plan in plans if plan.saved.active] or [plans[0].name]
    adapters.set_active_adapters(model, active)
    return list(dict.fromkeys(layer.path for plan in plans for layer, _ in plan.layers))


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


def _plan(model, saved, name, filepath):
    where = "load_gralora_weights"
    check_adapter_name(name, where)
    by_path = {layer.path: layer for layer in inject.adaptable_layers(model)}
    if missing := [path for path in saved.layers if path not in by_path]:
        raise ValueError(
            f"{where}: '{filepath}' has adapters for layer paths {missing} that model '{model.name}' lacks. "
            f"Its Dense/EinsumDense paths are: {sorted(by_path)}"
        )
    holders = [layer.path for layer in inject.adapted_layers(model) if name in layer.adapter_names]
    if holders and set(holders) != set(saved.layers):
        raise ValueError(
            f"{where}: model '{model.name}' already has an adapter named {name!r}, on layers "
            f"{sorted(set(holders) - set(saved.layers))} that '{filepath}' lacks, and the file has it on "
            f"{sorted(set(saved.layers) - set(holders))} that the model has not adapted. Delete it first "
            f"(`delete_adapter(model, {name!r})`), or load under another name: adapter_names={{{saved.name!r}: "
            f"'{name}_2'}}."
        )
    layers = [(by_path[path], entry) for path, entry in saved.layers.items()]
    for layer, entry in layers:
        _check_layer(layer, name, entry, filepath, existing=bool(holders))
    _check_arrays(model, {**saved.biases, **saved.modules}, filepath)
    return _Plan(name, saved, layers, new=not holders)


def _check_layer(layer, name, entry, filepath, existing):
    where, path = "load_gralora_weights", layer.path
    if existing:
        for field in ("r", "k", "hybrid_r", "alpha"):
            ours, theirs = getattr(layer.adapter(name).config, field), getattr(entry.config, field)
            if ours != theirs:
                raise ValueError(
                    f"{where}: adapter {name!r} of layer '{path}' has {field}={ours!r}, '{filepath}' has "
                    f"{field}={theirs!r}. Delete that adapter first, load under another name, or load onto a "
                    "model without it (it is then enabled from the file)."
                )
    else:
        inject.check_adaptable(layer, name, entry.config)
    shape = inject.adapted_class(layer).matrix_shape_of(layer)
    if shape != entry.shape:
        raise ValueError(
            f"{where}: layer '{path}' maps {shape[0]} -> {shape[1]} features, "
            f"'{filepath}' was saved from {entry.shape[0]} -> {entry.shape[1]}."
        )
    expected = _adapter_shapes(shape, entry.config)
    saved = {role: array.shape for role, array in entry.arrays.items()}
    if saved != expected:
        raise ValueError(f"{where}: layer '{path}' needs adapter variables {expected}, '{filepath}' holds {saved}.")


def _check_arrays(model, arrays, filepath):
    """Saved biases and modules_to_save weights must exist in `model` with the same shapes."""
    variables = {v.path: v for v in model.weights}
    for path, array in arrays.items():
        if path not in variables or tuple(variables[path].shape) != array.shape:
            found = "missing" if path not in variables else f"of shape {tuple(variables[path].shape)}"
            raise ValueError(
                f"load_gralora_weights: '{filepath}' holds weight '{path}' of shape {array.shape} "
                f"(a trained bias or a modules_to_save weight); in model '{model.name}' it is {found}."
            )


def _check_owners(model, plans, filepath):
    """After loading, one adapter at most may train biases and each module has one adapter."""
    configs = {**inject.adapter_configs(model), **{plan.name: plan.saved.config for plan in plans}}
    owners = [name for name, config in configs.items() if config.bias != "none"]
    if len(owners) > 1:
        raise ValueError(
            f"load_gralora_weights: adapters {owners} (from the model and '{filepath}') would all train biases; "
            "only one adapter may use a bias mode other than 'none'. Load the others onto another model."
        )
    seen = {}
    for name, config in configs.items():
        for path in config.modules_to_save:
            if seen.setdefault(path, name) != name:
                raise ValueError(
                    f"load_gralora_weights: module '{path}' would train and save with adapters "
                    f"{[seen[path], name]}; a module belongs to one adapter. Delete one first."
                )


def _adapter_shapes(shape, config):
    (in_features, out_features), (r, k, hybrid_r) = shape, (config.r, config.k, config.hybrid_r)
    shapes = {"gralora_a": (k, in_features // k, r), "gralora_b": (k, r, out_features // k)}
    if hybrid_r:
        shapes.update(gralora_hybrid_a=(in_features, hybrid_r), gralora_hybrid_b=(hybrid_r, out_features))
    return shapes


def _assign(plan, variables):
    for layer, entry in plan.layers:
        merged = layer.merged_adapters
        layer.unmerge()
        for role, variable in zip(ROLES, layer.adapter(plan.name).variables):
            variable.assign(entry.arrays[role])
        layer.merge(merged)
    for path, array in {**plan.saved.biases, **plan.saved.modules}.items():
        variables[path].assign(array)


def export_merged(model, filepath):
    """Saves `model` with its active adapters merged into plain Dense/EinsumDense layers, as `.keras`.

    The file loads with `keras.models.load_model` where keras_gralora is not
    installed. `model` itself is left exactly as it was.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"export_merged: the file name must end in '.keras', got '{filepath}'.")
    layers = inject.adapted_layers(model)
    saved = [(layer, type(layer), layer.merge_state()) for layer in layers]
    try:
        for layer in layers:
            layer.merge()
            layer.__class__ = inject.BASE_CLASS[type(layer)]  # plain layer: config and weights drop the adapter
        with adapter_file.atomic_write(filepath, ".keras") as tmp:
            model.save(tmp)
    finally:
        for layer, cls, state in saved:
            layer.__class__ = cls
            layer.restore_merge_state(state)
