"""Loading adapters onto a model, all or nothing, from wherever they were read.

`load_adapters` takes adapters as `FileAdapter`s (our file's in-memory form,
`keras_gralora/adapter_file.py`), whether read from a `.weights.h5` file
(`saving.load_gralora_weights`) or converted from a PEFT directory
(`interop/peft.py`). It checks every adapter, layer, bias and module against
the model, and only then enables, assigns and activates.
"""

import dataclasses

from keras_gralora import adapters, inject
from keras_gralora.adapter_file import FileAdapter
from keras_gralora.config import check_adapter_name
from keras_gralora.layers.named_adapter import ROLES


@dataclasses.dataclass
class _Plan:
    name: str  # in the model
    saved: FileAdapter
    layers: list  # (layer, LayerEntry)
    new: bool


@dataclasses.dataclass(frozen=True)
class Source:
    """Where adapters come from, for messages: the calling function and the file or directory."""

    where: str
    path: str


def load_adapters(model, saved, renames, source):
    """Loads `saved` (`{name: FileAdapter}`) onto `model` as `renames` (`{saved name: model name}`) says.

    Returns the paths of the layers that received adapters. Every check runs
    before any weight changes.
    """
    had_adapters = bool(inject.adapted_layers(model))
    active = adapters.active_adapters(model)
    plans = [_plan(model, saved[name], target, source) for name, target in renames.items()]
    _check_owners(model, plans, source)
    if new := [(layer, plan.name, entry.config) for plan in plans if plan.new for layer, entry in plan.layers]:
        inject.enable_on_layers(model, new)
    variables = {v.path: v for v in model.weights}
    for plan in plans:
        _assign(plan, variables)
    if not had_adapters:
        active = [plan.name for plan in plans if plan.saved.active] or [plans[0].name]
    adapters.set_active_adapters(model, active)
    return list(dict.fromkeys(layer.path for plan in plans for layer, _ in plan.layers))


def _plan(model, saved, name, source):
    where, path = source.where, source.path
    check_adapter_name(name, where)
    by_path = {layer.path: layer for layer in inject.adaptable_layers(model)}
    if missing := [layer_path for layer_path in saved.layers if layer_path not in by_path]:
        raise ValueError(
            f"{where}: '{path}' has adapters for layer paths {missing} that model '{model.name}' lacks. "
            f"Its Dense/EinsumDense paths are: {sorted(by_path)}"
        )
    holders = [layer.path for layer in inject.adapted_layers(model) if name in layer.adapter_names]
    if holders and set(holders) != set(saved.layers):
        raise ValueError(
            f"{where}: model '{model.name}' already has an adapter named {name!r}, on layers "
            f"{sorted(set(holders) - set(saved.layers))} that '{path}' lacks, and the file has it on "
            f"{sorted(set(saved.layers) - set(holders))} that the model has not adapted. Delete it first "
            f"(`delete_adapter(model, {name!r})`), or load under another name: adapter_names={{{saved.name!r}: "
            f"'{name}_2'}}."
        )
    layers = [(by_path[layer_path], entry) for layer_path, entry in saved.layers.items()]
    for layer, entry in layers:
        _check_layer(layer, name, entry, source, existing=bool(holders))
    _check_arrays(model, {**saved.biases, **saved.modules}, source)
    return _Plan(name, saved, layers, new=not holders)


def _check_layer(layer, name, entry, source, existing):
    where, path = source.where, layer.path
    if existing:
        for field in ("r", "k", "hybrid_r", "alpha"):
            ours, theirs = getattr(layer.adapter(name).config, field), getattr(entry.config, field)
            if ours != theirs:
                raise ValueError(
                    f"{where}: adapter {name!r} of layer '{path}' has {field}={ours!r}, '{source.path}' has "
                    f"{field}={theirs!r}. Delete that adapter first, load under another name, or load onto a "
                    "model without it (it is then enabled from the file)."
                )
    else:
        inject.check_adaptable(layer, name, entry.config)
    shape = inject.adapted_class(layer).matrix_shape_of(layer)
    if shape != entry.shape:
        raise ValueError(
            f"{where}: layer '{path}' maps {shape[0]} -> {shape[1]} features, "
            f"'{source.path}' was saved from {entry.shape[0]} -> {entry.shape[1]}."
        )
    expected = adapter_shapes(shape, entry.config)
    saved = {role: array.shape for role, array in entry.arrays.items()}
    if saved != expected:
        raise ValueError(f"{where}: layer '{path}' needs adapter variables {expected}, '{source.path}' holds {saved}.")


def _check_arrays(model, arrays, source):
    """Saved biases and modules_to_save weights must exist in `model` with the same shapes."""
    variables = {v.path: v for v in model.weights}
    for path, array in arrays.items():
        if path not in variables or tuple(variables[path].shape) != array.shape:
            found = "missing" if path not in variables else f"of shape {tuple(variables[path].shape)}"
            raise ValueError(
                f"{source.where}: '{source.path}' holds weight '{path}' of shape {array.shape} "
                f"(a trained bias or a modules_to_save weight); in model '{model.name}' it is {found}."
            )


def _check_owners(model, plans, source):
    """After loading, one adapter at most may train biases and each module has one adapter."""
    where = source.where
    configs = {**inject.adapter_configs(model), **{plan.name: plan.saved.config for plan in plans}}
    owners = [name for name, config in configs.items() if config.bias != "none"]
    if len(owners) > 1:
        raise ValueError(
            f"{where}: adapters {owners} (from the model and '{source.path}') would all train biases; "
            "only one adapter may use a bias mode other than 'none'. Load the others onto another model."
        )
    seen = {}
    for name, config in configs.items():
        for path in config.modules_to_save:
            if seen.setdefault(path, name) != name:
                raise ValueError(
                    f"{where}: module '{path}' would train and save with adapters "
                    f"{[seen[path], name]}; a module belongs to one adapter. Delete one first."
                )


def adapter_shapes(shape, config):
    """`{role: shape}` of the adapter variables `config` gives a layer of `shape = (in, out)` features."""
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
