"""PEFT adapter directories in and out: `load_peft_adapter`, `save_peft_adapter`.

A PEFT directory (`save_pretrained`) holds `adapter_config.json` and
`adapter_model.safetensors`, keys `base_model.model.<module>.<tensor>` (see
../shared/GRALORA.md). Reading converts it to the `FileAdapter` our own
adapter files load from (`loading.load_adapters`: every check before any
change); writing converts a `FileAdapter` back. GraLoRA's `A` / `B` are
PEFT's, the hybrid pair and plain LoRA's factors transposed; a PEFT LoRA
adapter is GraLoRA with `k = 1`. Only numpy and safetensors' numpy API here.
"""

import math
import os

import numpy as np

from keras_gralora import adapters, saving
from keras_gralora.adapter_file import FileAdapter, LayerEntry
from keras_gralora.config import DEFAULT_ADAPTER, GraLoRAConfig, check_adapter_name
from keras_gralora.interop import authors, checks, fused, names, peft_files, tensors
from keras_gralora.loading import Source, load_adapters

PREFIX = peft_files.PREFIX
GRALORA_TENSORS = {
    "gralora_A": "gralora_a",
    "gralora_B": "gralora_b",
    "gralora_A_general.weight": "gralora_hybrid_a",
    "gralora_B_general.weight": "gralora_hybrid_b",
}
LORA_TENSORS = {"lora_A.weight": "gralora_a", "lora_B.weight": "gralora_b"}
LORA_REFUSED = {  # LoraConfig fields whose non-default value changes LoRA's math or its modules
    "use_dora": "DoRA adds a magnitude vector (not plain LoRA)",
    "lora_bias": "lora_bias adds a bias to lora_B",
    "layer_replication": "layer_replication duplicates layers",
    "trainable_token_indices": "trainable_token_indices trains embedding rows",
    "target_parameters": "target_parameters adapts raw parameters, not modules",
    "use_qalora": "QALoRA pools the input",
    "alora_invocation_tokens": "aLoRA activates on invocation tokens",
    "use_bdlora": "BD-LoRA shares blocks across layers",
}
TASK_TYPES = {"ForCausalLM": "CAUSAL_LM", "ForSequenceClassification": "SEQ_CLS"}  # PEFT's, by class name
BIAS_MODES = {"none": "none", "all": "all", "gralora_only": "gralora_only", "lora_only": "gralora_only"}


def load_peft_adapter(model, directory, adapter_name=None):
    """Loads a PEFT GraLoRA (or plain LoRA) adapter directory onto a KerasHub model.

    Args:
        model: The KerasHub backbone or task converted from the same
            transformers checkpoint (`from_preset(<Hugging Face directory>)`).
            Task heads saved by PEFT (`modules_to_save`, e.g. BERT's
            `classifier`) need the task.
        directory: What PEFT's `save_pretrained` wrote.
        adapter_name: The adapter's name in `model` (default "default"); it
            must not exist yet.

    Returns:
        The paths of the adapted layers. Every check runs before any change.

    Example (needs `KERAS_BACKEND` of your choice, keras-hub and safetensors):

    ```python
    backbone = keras_hub.models.BertBackbone.from_preset("all-MiniLM-L6-v2/")   # the HF checkpoint
    keras_gralora.load_peft_adapter(backbone, "minilm-gralora/")                # PEFT's save_pretrained
    ```
    """
    where = "load_peft_adapter"
    name = check_adapter_name(DEFAULT_ADAPTER if adapter_name is None else adapter_name, where)
    if name in adapters.adapter_names(model):
        raise ValueError(
            f"{where}: model '{model.name}' already has an adapter named {name!r}. Pass another adapter_name, "
            f"or `delete_adapter(model, {name!r})` first."
        )
    path, saved = read_peft_adapter(model, directory, name, where)
    return load_adapters(model, {name: saved}, {name: name}, Source(where, path))


def read_peft_adapter(model, directory, name, where):
    """`(directory, FileAdapter named name)`: a PEFT directory read for `model`'s layers; nothing changes."""
    source = peft_files.Directory(directory, where)
    return source.directory, _file_adapter(model, names.architecture_of(model, where), source, name, where)


def _file_adapter(model, architecture, source, name, where):
    config = source.config
    peft_type = config.get("peft_type")
    if peft_type not in ("GRALORA", "LORA"):
        raise ValueError(
            f"{where}: PEFT type {peft_type!r} is not read by keras_gralora; it reads 'GRALORA' and 'LORA' "
            "(plain LoRA loads as GraLoRA with k=1)."
        )
    if authors.is_theirs(config):  # SqueezeBits/GraLoRA's own checkpoints
        config = authors.as_peft(config, where)
    config = {**peft_files.PEFT_DEFAULTS[peft_type], **config}
    if config.get("fan_in_fan_out") and not architecture.fan_in_fan_out:
        raise ValueError(
            f"{where}: fan_in_fan_out=True (Conv1D modules, as GPT-2's) but {architecture.name}'s "
            "transformers modules are Linear: the adapter was saved from another model."
        )
    if bad := [f"{field}: {why}" for field, why in LORA_REFUSED.items() if peft_type == "LORA" and config.get(field)]:
        raise ValueError(f"{where}: this LoRA adapter cannot load as plain LoRA: {'; '.join(bad)}.")
    bias = BIAS_MODES.get(config.get("bias", "none"))
    if bias is None:
        raise ValueError(f"{where}: bias={config.get('bias')!r} is not a PEFT bias mode keras_gralora reads.")
    declared = _group(source.declared, config, peft_type, where)
    layers_by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    fused_layers = {
        module: _parts(layers_by_path, parts, module, model, where)
        for module in declared
        if (parts := names.split_paths(architecture, module))
    }
    paths = {
        module: names.keras_layer_path(architecture, model, module, where)
        for module in declared
        if module not in fused_layers
    }
    for module, (kind, found) in declared.items():
        if module in fused_layers:
            fused.check(fused_layers[module], module, kind, found, config, peft_type, where)
            continue
        if paths[module] not in layers_by_path:
            raise ValueError(
                f"{where}: module '{module}' maps to layer '{paths[module]}', which model '{model.name}' lacks."
            )
        checks.check_module(source, layers_by_path[paths[module]], module, kind, found, config, peft_type)
    grouped = _group(source.load(), config, peft_type, where)
    modules_to_save = tuple(dict.fromkeys(paths[m] for m, (kind, _) in grouped.items() if kind == "module"))
    layers, biases, modules = {}, {}, {}
    for module, (kind, found) in grouped.items():
        if module in fused_layers:
            layer_config = _layer_config(config, peft_type, module, found, bias, modules_to_save, where)
            layers.update(fused.entries(fused_layers[module], module, found, layer_config, peft_type, where))
            continue
        layer = layers_by_path[paths[module]]
        if kind == "adapter":
            layer_config = _layer_config(config, peft_type, module, found, bias, modules_to_save, where)
            layers[layer.path] = _entry(layer_config, found, peft_type)
        for tensor, array in found.items():
            if kind == "module" or tensor in ("bias", "base_layer.bias"):
                variable = tensors.keras_variable(layer, tensor.rsplit(".", 1)[-1], module, where)
                (modules if kind == "module" else biases)[variable.path] = tensors.to_keras(
                    layer, variable, array, architecture.fan_in_fan_out
                )
    if not layers:
        raise ValueError(f"{where}: the adapter holds no {peft_type} tensors (found {sorted(source.declared)[:5]}...).")
    return FileAdapter(name, True, layers, biases, modules)


def _parts(layers_by_path, paths, module, model, where):
    if missing := [path for path in paths if path not in layers_by_path]:
        raise ValueError(
            f"{where}: fused module '{module}' splits into layers {paths}; model '{model.name}' lacks {missing}."
        )
    return [layers_by_path[path] for path in paths]


def _group(arrays, config, peft_type, where):
    """`{module: (kind, {tensor: array})}`, kind "adapter" (adapter tensors, maybe its bias), "bias" or "module"."""
    roles = GRALORA_TENSORS if peft_type == "GRALORA" else LORA_TENSORS
    suffixes = sorted([*roles, "base_layer.bias", "bias", "weight"], key=len, reverse=True)
    saved_modules = config.get("modules_to_save") or []
    grouped = {}
    for key, array in arrays.items():
        if not key.startswith(PREFIX):
            raise ValueError(f"{where}: tensor '{key}' does not start with {PREFIX!r}: not a PEFT adapter file.")
        module, tensor = _split(key[len(PREFIX) :], suffixes, where)
        if any(module == m or module.endswith("." + m) for m in saved_modules):
            kind = "module"
        elif tensor in roles:
            kind = "adapter"
        elif tensor in ("bias", "base_layer.bias") and config.get("bias", "none") != "none":
            kind = "bias"
        else:
            raise ValueError(
                f"{where}: tensor '{key}' is no {peft_type} tensor, trained bias or modules_to_save "
                f"weight ({peft_type} tensors end in {sorted(roles)})."
            )
        entry = grouped.setdefault(module, [kind, {}])
        entry[0] = "adapter" if "adapter" in (entry[0], kind) else entry[0]
        entry[1][tensor] = array
    return {module: tuple(entry) for module, entry in grouped.items()}


def _split(name, suffixes, where):
    for suffix in suffixes:
        if name.endswith("." + suffix):
            return name[: -len(suffix) - 1], suffix
    raise ValueError(f"{where}: cannot read tensor '{PREFIX}{name}': it ends in none of {suffixes}.")


def _layer_config(config, peft_type, module, found, bias, modules_to_save, where):
    if peft_type == "GRALORA":
        k, _, r = found["gralora_A"].shape
        hybrid_r = found["gralora_A_general.weight"].shape[0] if "gralora_A_general.weight" in found else 0
        if (r, k, hybrid_r) != (config["r"], config["gralora_k"], config["hybrid_r"]):
            raise ValueError(
                f"{where}: module '{module}' holds r={r}, k={k}, hybrid_r={hybrid_r}; its "
                f"adapter_config.json says r={config['r']}, gralora_k={config['gralora_k']}, "
                f"hybrid_r={config['hybrid_r']}."
            )
        alpha, dropout = config["alpha"], config.get("gralora_dropout", 0.0)
    else:
        r, k, hybrid_r = found["lora_A.weight"].shape[0], 1, 0
        alpha, dropout = _lora_alpha(config, module, r, where), config.get("lora_dropout", 0.0)
    return GraLoRAConfig(
        r=r, k=k, hybrid_r=hybrid_r, alpha=alpha, dropout=dropout, bias=bias, modules_to_save=modules_to_save
    ).validate(f"{where}: module '{module}'")


def _lora_alpha(config, module, r, where):
    """GraLoRA's alpha giving LoRA's scale (`lora_alpha / r`, rsLoRA `lora_alpha / sqrt(r)`) exactly."""
    lora_alpha = checks.pattern_value(config, "alpha_pattern", module, config["lora_alpha"], where)
    if not config.get("use_rslora"):
        return lora_alpha
    root = math.isqrt(r)
    if root * root != r:
        raise ValueError(
            f"{where}: module '{module}' is rsLoRA with r={r}; its scale lora_alpha/sqrt({r}) is "
            "exact as GraLoRA's alpha/r only when r is a perfect square (1, 4, 16, 64, ...)."
        )
    return lora_alpha * root


def _entry(config, found, peft_type):
    if peft_type == "GRALORA":
        arrays = {role: found[tensor] for tensor, role in GRALORA_TENSORS.items() if tensor in found}
        for role in ("gralora_hybrid_a", "gralora_hybrid_b"):
            if role in arrays:
                arrays[role] = arrays[role].T
        in_features, out_features = (
            arrays["gralora_a"].shape[0] * arrays["gralora_a"].shape[1],
            arrays["gralora_b"].shape[0] * arrays["gralora_b"].shape[2],
        )
    else:
        arrays = {role: found[tensor].T[None] for tensor, role in LORA_TENSORS.items()}
        in_features, out_features = arrays["gralora_a"].shape[1], arrays["gralora_b"].shape[2]
    arrays = {role: np.ascontiguousarray(array, dtype="float32") for role, array in arrays.items()}
    return LayerEntry(config, (in_features, out_features), arrays)


def save_peft_adapter(model, directory, adapter_name=DEFAULT_ADAPTER, base_model_name_or_path=None):
    """Writes adapter `adapter_name` of a KerasHub model as a PEFT GraLoRA directory.

    `PeftModel.from_pretrained(hf_model, directory)` then reproduces the
    adapted model, where `hf_model` is the transformers class named per
    architecture in the README (`LlamaForCausalLM`, `BertModel`, or
    `BertForSequenceClassification` for a `BertTextClassifier`...). The
    directory is created if needed; its two files are replaced only once
    both new ones are complete.
    """
    where = "save_peft_adapter"
    directory = check_directory(directory, base_model_name_or_path, where)
    base_model_name_or_path = base_model_name_or_path and os.fspath(base_model_name_or_path)
    chosen = adapters.check_names(model, [adapter_name], where)
    architecture = names.architecture_of(model, where)
    class_name = names.transformers_class(architecture, model)
    if class_name is None:
        raise ValueError(f"{where}: KerasHub's {architecture.name} models have no transformers name table to save.")
    adapter = saving.collect_adapter(model, chosen[0], where)
    config = _uniform_config(adapter, where)
    module_of = {
        key: names.transformers_module(architecture, class_name, adapter.path(key), where) for key in adapter.layers
    }
    arrays = {}
    for key, entry in adapter.layers.items():
        for tensor, role in GRALORA_TENSORS.items():
            if role in entry.arrays:
                array = entry.arrays[role]
                arrays[f"{PREFIX}{module_of[key]}.{tensor}"] = array.T if "hybrid" in role else array
    arrays.update(transformers_extras(model, adapter, architecture, class_name, where))
    document = _peft_config(
        config,
        class_name,
        sorted(set(module_of.values())),
        base_model_name_or_path,
        [names.transformers_module(architecture, class_name, p, where) for p in config.modules_to_save],
    )
    document["fan_in_fan_out"] = architecture.fan_in_fan_out  # GPT-2's Conv1D
    peft_files.write(directory, document, arrays, where)
    return directory


def check_directory(directory, base_model_name_or_path, where):
    """`directory` as a string, or `ValueError` when it is a file or the base model's name is no string."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"{where}: '{directory}' is a file; it writes a directory (adapter_config.json and "
            "adapter_model.safetensors). Pass a directory path."
        )
    if base_model_name_or_path is not None and not isinstance(base_model_name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"{where}: base_model_name_or_path={base_model_name_or_path!r} must be a string (the "
            "checkpoint's name or path, written into adapter_config.json) or None."
        )
    return directory


def transformers_extras(model, adapter, architecture, class_name, where):
    """The adapter's trained biases and `modules_to_save` weights, keyed and laid out as PEFT saves them."""
    layers_by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    adapted_paths = {adapter.path(key) for key in adapter.layers}
    arrays = {}
    for kind, variables in (("bias", adapter.biases), ("module", adapter.modules)):
        for key, array in variables.items():
            layer_path, variable_name = adapter.path(key).rsplit("/", 1)
            module = names.transformers_module(architecture, class_name, layer_path, where)
            tensor = tensors.transformers_name(variable_name, module, where)
            if kind == "bias" and layer_path in adapted_paths:
                tensor = "base_layer." + tensor
            arrays[f"{PREFIX}{module}.{tensor}"] = tensors.to_transformers(
                layers_by_path[layer_path], variable_name, array, architecture.fan_in_fan_out
            )
    return arrays


def task_type(class_name):
    """PEFT's `task_type` for a transformers class name (`None` for a bare backbone)."""
    return next((task for suffix, task in TASK_TYPES.items() if class_name.endswith(suffix)), None)


def _uniform_config(adapter, where):
    configs = {entry.config for entry in adapter.layers.values()}
    fields = ("r", "k", "hybrid_r", "effective_alpha", "dropout")
    if len(settings := {tuple(getattr(c, f) for f in fields) for c in configs}) > 1:
        raise ValueError(
            f"{where}: adapter {adapter.name!r} has layers with different settings "
            f"({sorted(settings)} as {fields}); PEFT's GraLoRA "
            "config has one r, gralora_k, hybrid_r, alpha and dropout per adapter (no rank_pattern or k per "
            "module). Export it as exact LoRA instead (`keras_gralora.save_lora_adapter`: per-module ranks go "
            "into PEFT's rank_pattern), or enable it with one r, k and alpha."
        )
    return next(iter(configs))


def _peft_config(config, class_name, target_modules, base_model_name_or_path, modules_to_save):
    alpha = config.effective_alpha
    return {
        "peft_type": "GRALORA",
        "task_type": task_type(class_name),
        "base_model_name_or_path": base_model_name_or_path,
        "auto_mapping": None,
        "inference_mode": True,
        "revision": None,
        "r": config.r,
        "gralora_k": config.k,
        "hybrid_r": config.hybrid_r,
        "alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "gralora_dropout": config.dropout,
        "bias": config.bias,
        "target_modules": target_modules,
        "modules_to_save": modules_to_save or None,
        "fan_in_fan_out": False,
        "init_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
