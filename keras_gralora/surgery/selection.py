"""Which layers an adapter touches: its targets, their blocks, its `modules_to_save`.

Pure look-ups: nothing here changes a model, so `enable_gralora` can check
everything before it adapts any layer.
"""

import re

import keras

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.embedding import GraLoRAReversibleEmbedding
from keras_gralora.layers.experts import ExpertWeight, GraLoRAExpertWeights, expert_weights
from keras_gralora.layers.kinds import ADAPTED_CLASS, BASE_CLASS  # noqa: F401  (BASE_CLASS: re-exported)
from keras_gralora.layers.reversible_embedding import KERAS_REVERSIBLE_EMBEDDING
from keras_gralora.surgery import structure
from keras_gralora.surgery.default_targets import Keys, default_targets
from keras_gralora.surgery.quantized_gradients import overrides_call
from keras_gralora.surgery.structure import is_backbone, task_backbone  # noqa: F401  (re-exported)

FALLBACK_TARGETS = ("query", "value", "query_dense", "value_dense")
PROJECTIONS = (keras.layers.Dense, keras.layers.EinsumDense)
WHERE = "enable_gralora"


def adapted_class(layer):
    """The GraLoRA class `layer` becomes (or is); `None` for other layers."""
    if isinstance(layer, GraLoRAAdapter):
        return type(layer)
    if isinstance(layer, ExpertWeight):
        return GraLoRAExpertWeights
    if type(layer) not in ADAPTED_CLASS and isinstance(layer, KERAS_REVERSIBLE_EMBEDDING) and not overrides_call(layer):
        return GraLoRAReversibleEmbedding  # KerasHub's subclass: `enable_gralora` makes it ours first
    return ADAPTED_CLASS.get(type(layer))


def adaptable_layers(model):
    """Every plain Dense/EinsumDense/convolution (or adapted one) inside `model`, in order."""
    return [layer for layer in model._flatten_layers(include_self=False) if adapted_class(layer)]


def adapted_layers(model):
    """The GraLoRA layers inside `model`, in model order."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, GraLoRAAdapter)]


def select_targets(model, target_layer_names, config, layers_to_transform=None, layers_pattern=None, saved=()):
    """The layers `enable_gralora` adapts; `saved` are `modules_to_save` paths."""
    candidates = adaptable_layers(model)
    names = default_target_names(model) if target_layer_names is None else target_layer_names
    if target_layer_names is None or names == "all":  # layers no forward pass has built are left out
        candidates = [layer for layer in candidates if layer.built]
    if names == "all":
        excluded = {id(layer) for layer in output_head_layers(model)}
        targets = [
            layer
            for layer in candidates
            if id(layer) not in excluded
            and not _inside(layer, saved)
            and adapted_class(layer).IN_ALL
            and _adaptable(layer, config)
        ]
    elif isinstance(names, Keys):
        keys = structure.layer_keys(model)
        targets = [layer for layer in candidates if re.fullmatch(names.pattern, structure.key_of(keys, layer))]
    elif isinstance(names, str):
        pattern = re.compile(names)
        targets = [layer for layer in candidates if pattern.fullmatch(layer.path)]
    elif isinstance(names, (list, tuple, set)) and all(isinstance(name, str) for name in names):
        targets = [layer for layer in candidates if layer.name in set(names)]
    else:
        raise ValueError(
            f"{WHERE}: target_layer_names={target_layer_names!r} is not a list of layer names, "
            "a regular expression string, 'all' or None."
        )
    if layers_to_transform is not None or layers_pattern is not None:
        targets = _in_blocks(model, targets, names, layers_to_transform, layers_pattern)
    if not adaptable_layers(model):
        raise ValueError(
            f"{WHERE}: '{model.name}' has no Dense, EinsumDense or Conv1D/2D/3D layer; GraLoRA adapts the "
            "kernels of those layer types only, so there is nothing to adapt."
        )
    if not targets:
        available = sorted({layer.name for layer in candidates})
        raise ValueError(
            f"{WHERE}: target_layer_names={target_layer_names!r} matched no adaptable layer of "
            f"'{model.name}'{_blocks_note(layers_to_transform)}. Its Dense/EinsumDense/convolution layer names are: "
            f"{available} (a string is a regular expression over whole layer paths, e.g. '.*(query|value)')."
        )
    if both := [layer.path for layer in targets if _inside(layer, saved)]:
        raise ValueError(
            f"{WHERE}: {both} are both targets and (inside) modules_to_save {list(saved)}; a layer is either "
            "adapted or saved whole. Leave it out of one of them."
        )
    return targets


def select_expert_targets(model, target_parameters):
    """The expert weights `enable_gralora(target_parameters=...)` adapts (`experts.py`); `[]` for `None`.

    `"all"`: every one; a regular expression: those whose whole path it
    matches; a list: those whose weight name is in it, or whose path ends
    with one of its entries (`"<layer path>/<weight name>"`).
    """
    if target_parameters is None:
        return []
    candidates = expert_weights(model)
    if not candidates:
        raise ValueError(
            f"{WHERE}: target_parameters={target_parameters!r}, but '{model.name}' has no expert weights (a layer "
            "with `num_experts` holding float [num_experts, in, out] weights, as KerasHub's mixture-of-experts "
            "models do). Leave target_parameters out."
        )
    if target_parameters == "all":
        return candidates
    if isinstance(target_parameters, str):
        pattern = re.compile(target_parameters)
        targets = [weight for weight in candidates if pattern.fullmatch(weight.path)]
    elif isinstance(target_parameters, (list, tuple)) and all(isinstance(name, str) for name in target_parameters):
        targets = [
            weight
            for weight in candidates
            if any(name == weight.name or weight.path.endswith("/" + name) for name in target_parameters)
        ]
    else:
        raise ValueError(
            f"{WHERE}: target_parameters={target_parameters!r} is not 'all', a regular expression string or a "
            "list of weight names."
        )
    if not targets:
        raise ValueError(
            f"{WHERE}: target_parameters={target_parameters!r} matched no expert weight of '{model.name}'. Its "
            f"expert weights are named {sorted({w.name for w in candidates})}, e.g. at '{candidates[0].path}' "
            "('all' takes every one)."
        )
    return targets


def default_target_names(model):
    """The default targets: `default_targets.py`'s entry, KerasHub's `default_lora_layer_names()`, or ours.

    A network of convolutions without any Dense/EinsumDense layer (ResNet,
    EfficientNet, VGG...) gets `"all"`: every convolution that can carry the
    adapter, as Keras' `enable_lora` is offered on each of them.
    """
    backbone = model if task_backbone(model) is None else task_backbone(model)
    if not any(isinstance(layer, PROJECTIONS) for layer in backbone._flatten_layers(include_self=False)):
        return "all"
    if (entry := default_targets(backbone)) is not None:
        return list(entry) if isinstance(entry, tuple) else entry
    if hasattr(backbone, "default_lora_layer_names"):
        return backbone.default_lora_layer_names()
    return list(FALLBACK_TARGETS)


def output_head_layers(model):
    """Layers a task adds on top of its backbone, or a functional model's output layers."""
    if (backbone := task_backbone(model)) is not None:
        inside = {id(layer) for layer in backbone._flatten_layers(include_self=True)}
        return [layer for layer in model._flatten_layers(include_self=False) if id(layer) not in inside]
    try:
        return [history[0] for history in (t._keras_history for t in keras.tree.flatten(model.outputs))]
    except (AttributeError, ValueError):  # not a functional model
        return []


def _adaptable(layer, config):
    """Whether `config` can adapt `layer` ("all" skips the layers it cannot)."""
    try:  # a grouped convolution, an einsum that is no projection, or features that do not split into k blocks
        if getattr(layer, "groups", 1) != 1:
            return False
        config.validate_features(*adapted_class(layer).block_sizes_of(layer), where=layer.path)
    except ValueError:
        return False
    return True


def _inside(layer, paths):
    return any(layer.path == path or layer.path.startswith(path + "/") for path in paths)


def modules_to_save_paths(model, modules_to_save, configs):
    """The paths of the layers `modules_to_save` names; `configs` are the model's adapters'."""
    if modules_to_save is None:
        return []
    layers = [layer for layer in model._flatten_layers(include_self=False) if layer.weights]
    if isinstance(modules_to_save, str):
        pattern = re.compile(modules_to_save)
        chosen = [layer for layer in layers if pattern.fullmatch(layer.path)]
    elif isinstance(modules_to_save, (list, tuple)) and all(isinstance(name, str) for name in modules_to_save):
        chosen = [layer for layer in layers if layer.name in modules_to_save or layer.path in modules_to_save]
    else:
        raise ValueError(
            f"{WHERE}: modules_to_save={modules_to_save!r} is not a list of layer names or a regular "
            "expression string over layer paths."
        )
    if not chosen:
        raise ValueError(
            f"{WHERE}: modules_to_save={modules_to_save!r} matched no layer with weights in '{model.name}'. "
            f"Its layers with weights are: {sorted({layer.name for layer in layers})}"
        )
    paths = [layer.path for layer in chosen]
    if adapted := [layer.path for layer in chosen if isinstance(layer, GraLoRAAdapter) or adapted_layers(layer)]:
        raise ValueError(f"{WHERE}: modules_to_save {adapted} carry GraLoRA adapters; they cannot also be saved whole.")
    for name, config in configs.items():
        if taken := sorted(set(paths) & set(config.modules_to_save)):
            raise ValueError(
                f"{WHERE}: modules_to_save {taken} already train and save with adapter {name!r}; keras_gralora "
                "keeps one copy of a module, so it belongs to one adapter. Delete that adapter first, or "
                "leave the module out."
            )
    return paths


def block_index(model, layer, patterns=None):
    """The block number in `layer`'s path (relative to `model`), or `None`.

    The block is the first path segment above the layer that is one of
    `patterns` followed by a number (`transformer_layer_3`), or, with no
    patterns, the first that ends in a number (KerasHub's names).
    """
    path = layer.path
    if path.startswith(model.path + "/"):
        path = path[len(model.path) + 1 :]
    regex = r".*?_?(\d+)" if not patterns else rf"(?:{'|'.join(map(re.escape, patterns))})_?(\d+)"
    for segment in path.split("/")[:-1]:
        if match := re.fullmatch(regex, segment):
            return int(match.group(1))
    return None


def _in_blocks(model, targets, names, layers_to_transform, layers_pattern):
    """`targets` in the blocks `layers_to_transform` names, after checking both arguments."""
    if layers_to_transform is None:
        raise ValueError(
            f"{WHERE}: layers_pattern={layers_pattern!r} needs layers_to_transform (the block indices to "
            "adapt), as in PEFT."
        )
    if isinstance(names, str):
        raise ValueError(
            f"{WHERE}: layers_to_transform works with a list of target layer names only (as PEFT), got "
            f"target_layer_names={names!r}. Pass a list of names, e.g. ['query', 'value']."
        )
    indices = [layers_to_transform] if _is_int(layers_to_transform) else layers_to_transform
    if not isinstance(indices, (list, tuple)) or not indices or not all(_is_int(i) and i >= 0 for i in indices):
        raise ValueError(
            f"{WHERE}: layers_to_transform must be a non-negative int or a non-empty list of them, "
            f"got layers_to_transform={layers_to_transform!r}."
        )
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
    if patterns is not None and (not patterns or not all(isinstance(p, str) and p for p in patterns)):
        raise ValueError(f"{WHERE}: layers_pattern must be a block name or a list of them, got {layers_pattern!r}.")
    blocks = {id(layer): block_index(model, layer, patterns) for layer in adaptable_layers(model)}
    available = sorted({block for block in blocks.values() if block is not None})
    if not available:
        raise ValueError(
            f"{WHERE}: no layer path of '{model.name}' has a block segment for layers_pattern={layers_pattern!r} "
            "(a path segment such as 'transformer_layer_3'). Pass the block name as layers_pattern."
        )
    if out := [i for i in indices if i not in available]:
        raise ValueError(
            f"{WHERE}: layers_to_transform={layers_to_transform!r}: blocks {out} are out of range; "
            f"'{model.name}' has blocks {available} (layers_pattern={layers_pattern!r})."
        )
    return [layer for layer in targets if blocks[id(layer)] in indices]


def _blocks_note(layers_to_transform):
    return "" if layers_to_transform is None else f" in blocks {layers_to_transform!r}"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def adapter_configs(model, layers=None):
    """`{name: config}` of every adapter in `model` (or in its adapted `layers`), in creation order."""
    found = {}
    for layer in adapted_layers(model) if layers is None else layers:
        for name in layer.adapter_names:
            adapter = layer.adapter(name)
            if name not in found or adapter.created < found[name].created:
                found[name] = adapter
    return {name: adapter.config for name, adapter in sorted(found.items(), key=lambda item: item[1].created)}


def active_adapters(model):
    """The names of the active adapters of `model` (the forward pass sums them), in activation order."""
    names = adapter_configs(model)
    active = []
    for layer in adapted_layers(model):
        active += [name for name in layer.active_adapters if name in names and name not in active]
    return active
