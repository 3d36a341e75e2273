"""Which KerasHub layer each Hugging Face module became: one table per architecture KerasHub converts.

The tables are read off KerasHub's own converters
(`keras_hub/src/utils/transformers/convert_*.py`), not typed here:
`scripts/name_tables.py` runs each converter on a tiny random checkpoint
with a loader that records which weight fills which Keras variable and how
(`converter_records.py`), and writes `name_tables.json`, which
`tests/test_name_tables.py` derives again. Module names are those of the
transformers class's backbone (`LlamaModel`, `BertModel`); `classes` gives
the prefix each transformers class puts in front of them. `{}` stands for
the block index (`{+1}`: KerasHub counts blocks from 1). In every mapped
projection the transformers weight, transposed unless `fan_in_fan_out`, is
the kernel read as GraLoRA's `[in, out]` matrix (the recording checks it),
so adapters convert 1:1. Task heads, which KerasHub's converters leave to
the task, are in `HEADS`.
"""

import dataclasses
import json
import os
import re

TABLES = os.path.join(os.path.dirname(__file__), "name_tables.json")
HEADS = {  # model_type: {transformers class: (prefix, {head module: task layer path})}, {KerasHub task: that class}
    "bert": (
        {"BertForSequenceClassification": ("bert.", {"classifier": "logits"})},
        {"BertTextClassifier": "BertForSequenceClassification"},
    )
}
PLACEHOLDER = re.compile(r"\{(?:\+(\d+))?\}")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one architecture's transformers modules map to its KerasHub layers.

    Args:
        name: The transformers `model_type`, for messages.
        backbones: KerasHub backbone class names (subclasses match too); the first is the converter's.
        modules: transformers module (in the backbone class) -> KerasHub layer path.
        classes: transformers class -> `(prefix of the backbone's modules, {head module: task layer path})`.
        saves_as: KerasHub class name (a task's, or "Backbone") -> the transformers class written.
        refused: transformers module (after the prefix) -> why it has no counterpart.
        fan_in_fan_out: transformers' Conv1D: weights stored `[in, out]` (GPT-2).
        splits: fused module -> the layers of its equal column parts (GPT-2's c_attn).
    """

    name: str
    backbones: tuple
    modules: dict
    classes: dict
    saves_as: dict
    refused: dict = dataclasses.field(default_factory=dict)
    fan_in_fan_out: bool = False
    splits: dict = dataclasses.field(default_factory=dict)


def _architecture(name, entry):
    classes = {key: (prefix, dict(heads)) for key, (prefix, heads) in entry["classes"].items()}
    saves_as = dict(entry["saves_as"])
    if name in HEADS:
        classes.update(HEADS[name][0])
        saves_as.update(HEADS[name][1])
    return Architecture(
        name,
        tuple(entry["backbones"]),
        entry["modules"],
        classes,
        saves_as,
        entry["refused"],
        entry["fan_in_fan_out"],
        {module: tuple(parts) for module, parts in entry["splits"].items()},
    )


with open(TABLES) as _file:
    ARCHITECTURES = tuple(_architecture(name, entry) for name, entry in json.load(_file).items())


def _fill(template, index):
    """`template` with its placeholders filled by the block indices `index`."""
    numbers = iter(index)
    return PLACEHOLDER.sub(lambda match: str(int(next(numbers)) + int(match.group(1) or 0)), template)


def _present(architecture, layer_paths):
    """How many of the table's modules have their layer (block 0) in `layer_paths`; `None` when one is missing."""
    paths = [_fill(path, [0] * path.count("{")) for path in architecture.modules.values()]
    return None if any(path not in layer_paths for path in paths) else len(paths)


def architecture_of(model, where):
    """The table for `model` (a KerasHub backbone or task), or `ValueError` naming what is supported.

    Of the tables for the backbone's class (Gemma and Gemma 2 share one), the
    one whose layers the model has, the converter's own class first, then the
    most modules.
    """
    backbone = getattr(model, "backbone", model)
    classes = [cls.__name__ for cls in type(backbone).__mro__]
    layer_paths = {layer.path for layer in backbone._flatten_layers(include_self=False)}
    candidates = []
    for architecture in ARCHITECTURES:
        ranks = [
            classes.index(name) + (0.5 if i else 0) for i, name in enumerate(architecture.backbones) if name in classes
        ]
        if ranks and (present := _present(architecture, layer_paths)) is not None:
            candidates.append((min(ranks), -present, architecture.name, architecture))
    if candidates:
        return min(candidates, key=lambda candidate: candidate[:3])[3]
    supported = sorted({architecture.backbones[0] for architecture in ARCHITECTURES})
    raise ValueError(
        f"{where}: model '{model.name}' ({type(model).__name__}, backbone {type(backbone).__name__}) has no "
        f"transformers name table; supported KerasHub backbones: {supported}."
    )


def _lookup(table, name):
    """`(template, block indices)` of the entry of `table` that `name` matches, else `None`."""
    for template in table:
        pieces = PLACEHOLDER.split(template)  # text, offset, text, ...
        pattern = "(\\d+)".join(re.escape(text) for text in pieces[::2])
        if match := re.fullmatch(pattern, name):
            offsets = [int(offset or 0) for offset in pieces[1::2]]
            return template, [int(number) - offset for number, offset in zip(match.groups(), offsets)]
    return None


def keras_layer_path(architecture, model, module, where):
    """The KerasHub layer path of transformers `module` in `model`, or `ValueError` with the reason."""
    heads = {}
    for prefix, class_heads in sorted(architecture.classes.values(), key=lambda item: -len(item[0])):
        heads.update(class_heads)
        if module in class_heads:
            if not any(layer.path == class_heads[module] for layer in model._flatten_layers(include_self=False)):
                raise ValueError(
                    f"{where}: module '{module}' is a task head; model '{model.name}' has no layer "
                    f"'{class_heads[module]}'. Load onto the KerasHub task (e.g. {list(architecture.saves_as)}), "
                    "not its backbone."
                )
            return class_heads[module]
        if module.startswith(prefix):
            rest = module[len(prefix) :]
            if _lookup(architecture.splits, rest):
                raise ValueError(f"{where}: module '{module}' is fused; its layers are `split_paths`.")
            if found := _lookup(architecture.modules, rest):
                template, index = found
                return _fill(architecture.modules[template], index)
            if found := _lookup(architecture.refused, rest):
                raise ValueError(f"{where}: module '{module}' cannot load: {architecture.refused[found[0]]}.")
    raise ValueError(
        f"{where}: module '{module}' has no counterpart in KerasHub's {architecture.name} model '{model.name}'. "
        f"Known modules: {sorted(architecture.modules) + sorted(heads)} ('{{}}' a block index), under the "
        f"prefixes {sorted(prefix for prefix, _ in architecture.classes.values())}."
    )


def split_paths(architecture, module):
    """The KerasHub layer paths of fused `module`'s column parts (GPT-2's c_attn: q, k, v), else `None`."""
    for prefix, _ in architecture.classes.values():
        if module.startswith(prefix) and (found := _lookup(architecture.splits, module[len(prefix) :])):
            template, index = found
            return [_fill(path, index) for path in architecture.splits[template]]
    return None


def fused_part(architecture, class_name, layer_path):
    """`(fused module, part index, part paths)` when `layer_path` is a column part of a fused module, else `None`."""
    prefix, _ = architecture.classes[class_name]
    for template, parts in architecture.splits.items():
        for index, part in enumerate(parts):
            if found := _lookup([part], layer_path):
                return prefix + _fill(template, found[1]), index, [_fill(p, found[1]) for p in parts]
    return None


def transformers_class(architecture, model):
    """The transformers class whose module names `model`'s adapters are written under."""
    names = [cls.__name__ for cls in type(model).__mro__]
    return next(
        (architecture.saves_as[name] for name in names if name in architecture.saves_as),
        architecture.saves_as.get("Backbone"),
    )


def transformers_module(architecture, class_name, layer_path, where):
    """The module name, in transformers class `class_name`, of KerasHub layer `layer_path`."""
    prefix, heads = architecture.classes[class_name]
    by_layer = {keras: hf for hf, keras in heads.items()}
    if layer_path in by_layer:
        return by_layer[layer_path]
    inverse = {keras: hf for hf, keras in architecture.modules.items()}
    if found := _lookup(inverse, layer_path):
        template, index = found
        return prefix + _fill(inverse[template], index)
    if part := fused_part(architecture, class_name, layer_path):
        raise ValueError(
            f"{where}: layer '{layer_path}' is one column part of transformers' fused module '{part[0]}' (with "
            f"{part[2]}); one GraLoRA of that module cannot hold separate adapters of its parts (its blocks would "
            "cross them). `keras_gralora.save_lora_adapter` writes them exactly as one LoRA of the fused module; "
            "or leave those layers out of the adapter."
        )
    raise ValueError(
        f"{where}: layer '{layer_path}' has no module in transformers' {class_name}; the {architecture.name} "
        f"table maps {sorted(inverse)} ('{{}}' a block index)."
    )
