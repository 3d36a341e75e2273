"""Loading adapters onto a model, all or nothing, from wherever they were read.

`load_adapters` takes adapters as `FileAdapter`s (our file's in-memory form,
`keras_gralora/files/adapter_file.py`), whether read from a `.weights.h5` file
(`saving.load_gralora_weights`) or converted from a PEFT directory
(`interop/peft.py`). It checks every adapter, layer, bias and module against
the model, and only then enables, assigns and activates.
"""

import dataclasses

import keras
import numpy as np

from keras_gralora.config import check_adapter_name
from keras_gralora.files import saved_structure
from keras_gralora.files.adapter_file import FileAdapter
from keras_gralora.layers.experts import ExpertWeight
from keras_gralora.layers.named_adapter import ROLES
from keras_gralora.lifecycle import adapters
from keras_gralora.surgery import inject, structure
from keras_gralora.surgery.rollback import rolled_back


@dataclasses.dataclass
class _Plan:
    name: str  # in the model
    saved: FileAdapter
    layers: list  # (layer, LayerEntry)
    new: bool
    variables: dict  # the saved biases' and modules' names -> the model's variables


@dataclasses.dataclass
class _Places:
    """The model's layers and variables by the names a file uses: structure keys, or paths (older files, PEFT)."""

    layers: dict
    variables: dict

    @classmethod
    def of(cls, model, keyed):
        return cls(*structure.places(model, keyed))


@dataclasses.dataclass(frozen=True)
class Source:
    """Where adapters come from, for messages: the calling function and the file or directory."""

    where: str
    path: str
    check_paths: bool = True  # a keyed file's stored layer paths must be those its keys land on
    allow_partial: bool = False  # a keyed file may come from a model without some of this model's layers

    def __post_init__(self):
        for name in ("check_paths", "allow_partial"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{self.where}: {name}={getattr(self, name)!r} must be True or False.")


def load_adapters(model, saved, renames, source):
    """Loads `saved` (`{name: FileAdapter}`) onto `model` as `renames` (`{saved name: model name}`) says.

    Returns the paths of the layers that received adapters. Every check
    runs, and every tensor is read, before any weight changes; should a
    change fail all the same, the model is put back as it was.
    """
    adapters.check_enabled(model, source.where)
    had_adapters = bool(inject.adapted_layers(model))
    active = adapters.active_adapters(model)
    places = {keyed: _Places.of(model, keyed) for keyed in {saved[name].keyed for name in renames}}
    plans = [_plan(model, saved[name], target, source, places[saved[name].keyed]) for name, target in renames.items()]
    _check_owners(model, plans, source)
    values = _read_all(model, plans, source)
    if not had_adapters:
        active = [plan.name for plan in plans if plan.saved.active]
        if not active and any(adapter.active for adapter in saved.values()):
            active = [plans[0].name]  # the file's active adapter was left out: the first loaded one serves
    with _rolled_back(model, plans):
        if new := [(layer, plan.name, entry.config) for plan in plans if plan.new for layer, entry in plan.layers]:
            inject.enable_on_layers(model, new)
        for plan in plans:
            _assign(plan, values)
        adapters.set_active_adapters(model, active)
    return list(dict.fromkeys(layer.path for plan in plans for layer, _ in plan.layers))


def _read_all(model, plans, source):
    """`{id(stored tensor): float array}`: every tensor's data, read and checked after its shape passed."""
    values = {}
    for plan in plans:
        for layer, entry in plan.layers:
            for role, array in entry.arrays.items():
                values[id(array)] = read(
                    array, "float32", f"adapter {plan.name!r} '{role}' of layer '{layer.path}'", source
                )
        for name, array in {**plan.saved.biases, **plan.saved.modules}.items():
            values[id(array)] = read(array, plan.variables[name].dtype, f"weight '{plan.saved.path(name)}'", source)
    return values


def read(array, dtype, what, source):
    """The data of `array`, checked against a variable of `dtype` ("float32", "bfloat16", "int32"...)."""
    floating = "float" in keras.backend.standardize_dtype(dtype)
    _check_dtype(np.dtype(array.dtype), floating, dtype, what, source)
    data = array.read() if hasattr(array, "read") else np.asarray(array)
    return np.asarray(data, dtype="float32" if floating else "int64")  # `assign` casts to the variable's dtype


def _check_dtype(found, floating, dtype, what, source):
    """A real float tensor for a float variable, an integer one for an integer variable; nothing else."""
    if (found.kind != "f") if floating else (found.kind not in "iu"):
        raise ValueError(
            f"{source.where}: '{source.path}' holds {what} as {found} ({_KINDS.get(found.kind, found.kind)}); "
            f"the model's variable is {dtype}. Save the adapter again from a keras_gralora or PEFT model."
        )


_KINDS = {
    "c": "complex: its imaginary part would be lost",
    "U": "text",
    "S": "bytes",
    "O": "objects",
    "b": "booleans",
    "V": "raw records",
    "i": "integers",
    "u": "unsigned integers",
    "f": "floats",
}


def _rolled_back(model, plans):
    """On an error inside, puts back the adapters, the values about to change and every trainable flag."""
    changing = [variable for plan in plans for variable in plan.variables.values()]
    changing += [
        v for plan in plans if not plan.new for layer, _ in plan.layers for v in layer.adapter(plan.name).variables
    ]
    kernels = [
        layer for plan in plans for layer, _ in plan.layers if isinstance(layer, inject.GraLoRAAdapter) and layer.merged
    ]
    return rolled_back(model, variables=changing, kernels=kernels, structure=True)


def saved_layers(model, saved, source):
    """`[(layer, LayerEntry)]`: the model's layer for each of `saved`'s, raising if the model lacks any."""
    return _layers(model, saved, source, _Places.of(model, saved.keyed))


def _plan(model, saved, name, source, places):
    check_adapter_name(name, source.where)
    layers = _layers(model, saved, source, places)
    if saved.keyed:  # the modules' paths in this build
        modules = tuple(_module_path(places, key, saved, source) for key in saved.module_keys)
        layers = [(layer, _with_modules(entry, modules)) for layer, entry in layers]
    holders = [layer for layer in inject.adapted_layers(model) if name in layer.adapter_names]
    _check_holders(model, name, holders, [layer for layer, _ in layers], saved, source)
    for layer, entry in layers:
        _check_layer(layer, name, entry, source, existing=bool(holders))
    variables = _check_arrays(model, places, saved, source)
    return _Plan(name, saved, layers, new=not holders, variables=variables)


def _layers(model, saved, source, places):
    where, path = source.where, source.path
    by_name = {key: layer for key, layer in places.layers.items() if inject.adapted_class(layer)}
    if missing := [saved.path(layer) for layer in saved.layers if layer not in by_name]:
        theirs = "keys" if saved.keyed else "paths"
        raise ValueError(
            f"{where}: '{path}' has adapters for layers {missing} that model '{model.name}' lacks (by structure "
            f"{theirs}: {[key for key in saved.layers if key not in by_name]}). It was saved from another "
            f"architecture or configuration. Model '{model.name}' has Dense/EinsumDense layers at "
            f"{sorted(layer.path for layer in by_name.values())} ({theirs}: {sorted(by_name)})."
        )
    saved_structure.check(model, saved, source, by_name)
    return [(by_name[key], entry) for key, entry in saved.layers.items()]


def _module_path(places, key, saved, source):
    if key not in places.layers:
        raise ValueError(
            f"{source.where}: '{source.path}' has adapter {saved.name!r} train module {key!r} "
            "(modules_to_save), which this model lacks."
        )
    return places.layers[key].path


def _with_modules(entry, modules):
    return dataclasses.replace(entry, config=dataclasses.replace(entry.config, modules_to_save=modules))


def _check_holders(model, name, holders, layers, saved, source):
    """An adapter the model has already must sit on the file's layers exactly."""
    ours, theirs = {id(layer) for layer in holders}, {id(layer) for layer in layers}
    if holders and ours != theirs:
        raise ValueError(
            f"{source.where}: model '{model.name}' already has an adapter named {name!r}, on layers "
            f"{sorted(layer.path for layer in holders if id(layer) not in theirs)} that '{source.path}' lacks, "
            f"and the file has it on {sorted(layer.path for layer in layers if id(layer) not in ours)} that the "
            f"model has not adapted. Delete it first (`delete_adapter(model, {name!r})`), or load under another "
            f"name: adapter_names={{{saved.name!r}: '{name}_2'}}."
        )


def _check_layer(layer, name, entry, source, existing):
    where, path = source.where, layer.path
    if existing:
        ours, theirs = _settings(layer.adapter(name).config), _settings(entry.config)
        if differ := [
            f"{field}={ours[field]!r} here, {theirs[field]!r} in the file"
            for field in ours
            if ours[field] != theirs[field]
        ]:
            raise ValueError(
                f"{where}: adapter {name!r} of layer '{path}' has other settings than in '{source.path}': "
                f"{'; '.join(differ)}. Delete that adapter first (`delete_adapter`), load under another name, "
                "or load onto a model without it (it is then enabled from the file)."
            )
    else:
        inject.check_adaptable(layer, name, entry.config)
    shape = inject.adapted_class(layer).matrix_shape_of(layer)
    if shape != entry.shape:
        raise ValueError(
            f"{where}: layer '{path}' maps {shape[0]} -> {shape[1]} features, "
            f"'{source.path}' was saved from {entry.shape[0]} -> {entry.shape[1]}."
        )
    expected = adapter_shapes(shape, entry.config, inject.adapted_class(layer).lead_shape_of(layer))
    saved = {role: array.shape for role, array in entry.arrays.items()}
    if saved != expected:
        raise ValueError(f"{where}: layer '{path}' needs adapter variables {expected}, '{source.path}' holds {saved}.")


def _settings(config):
    """What must match for a file to load into an existing adapter: every setting (alpha as its value)."""
    return {**config.to_dict(), "alpha": config.effective_alpha, "init_weights": None}


def _check_arrays(model, places, saved, source):
    """Saved biases and modules_to_save weights must exist in `model` with the same shapes; returns them."""
    variables = {}
    for name, array in {**saved.biases, **saved.modules}.items():
        variable = places.variables.get(name)
        if variable is None or tuple(variable.shape) != array.shape:
            found = "missing" if variable is None else f"of shape {tuple(variable.shape)}"
            raise ValueError(
                f"{source.where}: '{source.path}' holds weight '{saved.path(name)}' of shape {array.shape} "
                f"(a trained bias or a modules_to_save weight); in model '{model.name}' it is {found}."
            )
        variables[name] = variable
    return variables


def _check_owners(model, plans, source):
    """After loading, one adapter at most may train biases and each module has one adapter."""
    where = source.where
    configs = {**inject.adapter_configs(model), **{plan.name: plan.layers[0][1].config for plan in plans}}
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


def adapter_shapes(shape, config, lead=()):
    """`{role: shape}` of the adapter variables `config` gives a layer of `shape = (in, out)` features.

    `lead`: axes before each (`(E,)` for an expert weight: `GraLoRAAdapter.lead_shape_of`).
    """
    (in_features, out_features), (r, k, hybrid_r) = shape, (config.r, config.k, config.hybrid_r)
    shapes = {"gralora_a": (k, in_features // k, r), "gralora_b": (k, r, out_features // k)}
    if hybrid_r:
        shapes.update(gralora_hybrid_a=(in_features, hybrid_r), gralora_hybrid_b=(hybrid_r, out_features))
    return {role: tuple(lead) + shape for role, shape in shapes.items()}


def _assign(plan, values):
    for layer, entry in plan.layers:
        layer = layer.adapted() if isinstance(layer, ExpertWeight) else layer  # an expert weight adapted just now
        merged = layer.merged_adapters
        layer.unmerge()
        for role, variable in zip(ROLES, layer.adapter(plan.name).variables):
            variable.assign(values[id(entry.arrays[role])])
        layer.merge(merged)
    for name, array in {**plan.saved.biases, **plan.saved.modules}.items():
        plan.variables[name].assign(values[id(array)])
