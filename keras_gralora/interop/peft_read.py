"""A PEFT directory's config and tensors as the `FileAdapter` our adapter files load from (`peft.py` reads with it).

GraLoRA's `A` / `B` are PEFT's, the hybrid pair and plain LoRA's factors
transposed; a PEFT LoRA adapter is GraLoRA with `k = 1`; GPT-2's fused
`c_attn` splits into query, key and value (`fused.py`); the GraLoRA
authors' own layout is read as PEFT's (`authors.py`).
"""

import math

import numpy as np

from keras_gralora.config import GraLoRAConfig
from keras_gralora.files.adapter_file import FileAdapter, LayerEntry
from keras_gralora.interop import checks, fused, names, peft_files, tensors
from keras_gralora.surgery import inject

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
BIAS_MODES = {"none": "none", "all": "all", "gralora_only": "gralora_only", "lora_only": "gralora_only"}


def file_adapter(model, architecture, source, name, where):
    config = source.config
    peft_type = config.get("peft_type")
    if peft_type not in ("GRALORA", "LORA"):
        raise ValueError(
            f"{where}: PEFT type {peft_type!r} is not read by keras_gralora; it reads 'GRALORA' and 'LORA' "
            "(plain LoRA loads as GraLoRA with k=1)."
        )
    config = peft_files.as_peft_config(config, where)  # the GraLoRA authors' layout too
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
    missing = _missing_targets(model, architecture, config, set(layers), layers_by_path, where)
    return FileAdapter(name, True, layers, biases, modules, missing_targets=missing)


def _missing_targets(model, architecture, config, adapted, layers_by_path, where):
    """Paths of `model`'s layers whose modules PEFT's listed `target_modules` name, without adapters here.

    PEFT adapts every module a listed target names (exactly, or as a name's
    last parts), so such a layer means the directory was saved from a
    smaller configuration (`saved_structure.py`). Regex targets, block
    indices and exclusions are not followed: nothing is reported then.
    """
    targets, class_name = config.get("target_modules"), names.transformers_class(architecture, model)
    if not isinstance(targets, list) or class_name is None:
        return ()
    if any(config.get(field) for field in ("layers_to_transform", "layers_pattern", "exclude_modules")):
        return ()
    missing = []
    for path, layer in layers_by_path.items():
        if path in adapted or not inject.adapted_class(layer):
            continue
        try:
            module = names.transformers_module(architecture, class_name, path, where)
        except ValueError:  # no module of its own (a fused part, or no counterpart)
            continue
        if any(module == target or module.endswith("." + target) for target in targets):
            missing.append(path)
    return tuple(missing)


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
