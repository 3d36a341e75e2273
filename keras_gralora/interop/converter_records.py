"""Name tables read off KerasHub's own transformers converters, by running them.

`records(directory)` runs the converter KerasHub picks for a transformers
checkpoint (`keras_hub/src/utils/transformers/convert_*.py`) against a loader
that records, for each `port_weight` call, the weight read, the Keras
variable filled, and what the converter's hook does to the weight's numbers
(it is fed `arange` values). `table(...)` turns the records of one checkpoint
into the entry `names.py` reads from `name_tables.json`: transformers module
-> KerasHub layer path, `{}` for the block index, with the modules whose
kernel is not the weight transposed (and not a column part of a fused
weight) refused with the reason. `scripts/name_tables.py` writes the file
from tiny random checkpoints; the tests derive it again and compare.

Nothing is patched: the converter is called with this module's loader.
"""

import dataclasses
import json
import os
import re

import keras
import numpy as np
from keras_hub.src.utils.transformers.preset_loader import TransformersPresetLoader
from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

from keras_gralora.interop import tensors

REORDERED = "KerasHub's converter reorders this weight's numbers; no 1:1 adapter for it"
LM_HEAD = "KerasHub keeps the output projection as token_embedding's `reverse_embeddings`, not a Dense layer"


@dataclasses.dataclass(frozen=True)
class Record:
    """One `port_weight` call: `key` (as stored), the Keras variable's `path`, and how its numbers moved."""

    key: str
    path: str
    kind: str  # "weight" (same numbers), "kernel", "part", "lm_head" or "permuted"
    fan_in_fan_out: bool | None = None  # a kernel's transformers layout
    part: int = 0


class RecordingLoader(SafetensorLoader):
    """KerasHub's safetensors loader that records each `port_weight` instead of assigning it."""

    def __init__(self, preset, layers):
        super().__init__(preset)
        self.layers, self.records = layers, []

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        tensor = self.get_tensor(hf_weight_key)
        file = next(iter(self.safetensor_files.values())) if len(self.safetensor_files) == 1 else None
        key = self.get_prefixed_key(hf_weight_key, file) if file is not None else hf_weight_key
        probe = np.arange(tensor.size, dtype="float64").reshape(tensor.shape)
        seen = np.asarray(keras.ops.convert_to_numpy(hook_fn(probe, list(keras_variable.shape)))) if hook_fn else probe
        self.records.append(_classify(key, self.layers, keras_variable, probe, seen))


def _classify(key, layers, variable, probe, seen):
    layer = layers.get(variable.path.rsplit("/", 1)[0])
    if variable.name == "reverse_embeddings":
        return Record(key, variable.path, "lm_head")
    if layer is not None and tensors._is_kernel(layer, variable.name):
        for fan_in_fan_out in (False, True):
            whole = _as_kernel(layer, variable, probe, fan_in_fan_out)
            if whole is not None and np.array_equal(whole, seen):
                return Record(key, variable.path, "kernel", fan_in_fan_out)
            axis = 1 if fan_in_fan_out else 0  # the output axis: fused parts are its equal slices
            width = tensors._matrix_layout(layer)[0][1]
            for part in range(probe.shape[axis] // width if probe.ndim == 2 and width else 0):
                piece = np.take(probe, range(part * width, (part + 1) * width), axis=axis)
                if np.array_equal(_as_kernel(layer, variable, piece, fan_in_fan_out), seen):
                    return Record(key, variable.path, "part", fan_in_fan_out, part)
        return Record(key, variable.path, "permuted")
    if seen.size == probe.size and np.array_equal(seen.reshape(-1), probe.reshape(-1)):
        return Record(key, variable.path, "weight")
    if probe.ndim == 1 and seen.size and probe.size % seen.size == 0:  # a fused bias's equal parts
        for part in range(probe.size // seen.size):
            if np.array_equal(seen.reshape(-1), probe[part * seen.size : (part + 1) * seen.size]):
                return Record(key, variable.path, "part", None, part)
    return Record(key, variable.path, "permuted")


def _as_kernel(layer, variable, array, fan_in_fan_out):
    try:
        return tensors.to_keras(layer, variable, array, fan_in_fan_out)
    except ValueError:
        return None


def records(directory):
    """`(backbone, [Record])`: what KerasHub's converter does with the checkpoint in `directory`."""
    from keras_hub.models import Backbone

    with open(os.path.join(directory, "config.json")) as file:
        config = json.load(file)
    converter = TransformersPresetLoader(directory, config).converter
    backbone = Backbone.from_preset(directory, load_weights=False)
    layers = {layer.path: layer for layer in backbone._flatten_layers(include_self=False)}
    with RecordingLoader(directory, layers) as loader:
        converter.convert_weights(backbone, loader, config)
    return backbone, loader.records


INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")  # a block index in a transformers module name
NUMBER = re.compile(r"(?<=_)(\d+)(?=/|$)")  # a number ending a Keras layer name


def _keras_template(module_indices, paths, where):
    """One Keras path template for `paths` (one per block), or `ValueError` when they follow no block index.

    A number that changes with the block becomes `{}`, or `{+N}` where
    KerasHub counts from N (ViT's `transformer_block_1` is block 0).
    """
    split = [NUMBER.split(path) for path in paths]
    if len({tuple(parts[::2]) for parts in split}) != 1:
        raise ValueError(f"{where}: KerasHub's layers for it have auto-generated names ({', '.join(paths)})")
    template = split[0][:]
    for position in range(1, len(template), 2):
        values = [int(parts[position]) for parts in split]
        if len(set(values)) == 1:
            continue
        offsets = {value - indices[0] for value, indices in zip(values, module_indices) if len(indices) == 1}
        if len(offsets) != 1 or len(module_indices[0]) != 1:
            raise ValueError(f"{where}: KerasHub's layer paths {paths} follow no block index")
        offset = offsets.pop()
        template[position] = "{}" if offset == 0 else f"{{+{offset}}}"
    return "".join(template)


def _module(key, prefix):
    module = key.rsplit(".", 1)[0]
    return module[len(prefix) :] if prefix and module.startswith(prefix) else module


def table(name, classes, backbone, found):
    """`name_tables.json`'s entry for one checkpoint's `found` records.

    Args:
        name: The entry's name (the transformers `model_type`).
        classes: `(class written, its base model class, the prefix of the base model's modules)`.
        backbone: The KerasHub backbone the converter filled.
        found: Its `Record`s.
    """
    from keras_hub.models import Backbone

    written, base, prefix = classes
    groups = {}  # transformers module template -> [(its indices, Record)]
    for record in found:
        module = _module(record.key, prefix)
        groups.setdefault(INDEX.sub("{}", module), []).append((tuple(INDEX.findall(module)), record))
    modules, splits, refused, layouts = {}, {}, {}, set()
    for hf, entries in groups.items():
        kinds = {record.kind for _, record in entries}
        if kinds & {"lm_head", "permuted"}:
            refused[hf] = LM_HEAD if "lm_head" in kinds else REORDERED
            continue
        layouts |= {record.fan_in_fan_out for _, record in entries if record.fan_in_fan_out is not None}
        by_part = {}  # part (None: the whole weight) -> {block indices: {Keras layer paths}}
        for indices, record in entries:
            part = record.part if record.kind == "part" else None
            by_part.setdefault(part, {}).setdefault(indices, set()).add(record.path.rsplit("/", 1)[0])
        several = [sorted(layers) for by_index in by_part.values() for layers in by_index.values() if len(layers) > 1]
        if several:
            refused[hf] = f"KerasHub fills several layers from it ({', '.join(several[0])})"
            continue
        try:
            paths = {
                part: _keras_template(
                    [tuple(map(int, i)) for i in by_index], [layers.pop() for layers in by_index.values()], hf
                )
                for part, by_index in by_part.items()
            }
        except ValueError as error:
            refused[hf] = str(error).split(": ", 1)[1]
            continue
        if any(path.count("{") != hf.count("{") for path in paths.values()):
            indices = {i for by_index in by_part.values() for i in by_index}
            if len(indices) != 1 or any("{" in path for path in paths.values()):
                refused[hf] = f"KerasHub's layer paths {sorted(paths.values(), key=str)} follow no block index"
                continue
            hf = _module(entries[0][1].key, prefix)  # one block only: its names as they are
        if None in paths and len(paths) == 1:
            modules[hf] = paths[None]
        elif None not in paths:
            splits[hf] = [paths[part] for part in sorted(paths)]
        else:
            refused[hf] = (
                f"KerasHub fills both a whole layer and column parts from it ({sorted(paths.values(), key=str)})"
            )
    if len(layouts) > 1:
        raise ValueError(f"{name}: kernels in both transformers layouts; one `fan_in_fan_out` cannot describe them.")
    causal = written if written.endswith(("ForCausalLM", "LMHeadModel")) else None
    saves_as = {"Backbone": causal or base}
    if causal:
        saves_as["CausalLM"] = causal
        refused.setdefault("lm_head", LM_HEAD)  # tied: the converter reads no lm_head, the logits still come so
    if written.endswith("ForConditionalGeneration"):
        saves_as["Seq2SeqLM"] = written
    return {
        "backbones": [cls.__name__ for cls in type(backbone).__mro__[: type(backbone).__mro__.index(Backbone)]],
        "modules": dict(sorted(modules.items())),
        "classes": {written: [prefix, {}], base: ["", {}]} if written != base else {base: ["", {}]},
        "saves_as": saves_as,
        "refused": dict(sorted(refused.items())),
        "fan_in_fan_out": layouts == {True},
        "splits": splits,
    }
