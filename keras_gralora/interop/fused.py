"""Fused transformers modules that KerasHub splits into layers: GPT-2's `c_attn` -> query, key, value.

`c_attn` maps `in` features to `[q | k | v]`, three equal column parts; its
PEFT adapter is one update of that whole matrix. A GraLoRA (or LoRA) update
of the fused matrix is, restricted to one part's columns, no GraLoRA of that
part, but it is an exact low-rank product: `left [in, R] @ right[:, part]`
(`factors.gralora_factors`, `R = k * r + hybrid_r`; LoRA: `R = r`). Each
part's layer gets that product as a `k=1` adapter of rank `R` and scale 1,
so the three layers add exactly what PEFT's fused module adds.
"""

import numpy as np

from keras_gralora.config import GraLoRAConfig
from keras_gralora.files.adapter_file import LayerEntry
from keras_gralora.interop import factors
from keras_gralora.surgery import inject


def check(layers, module, kind, found, config, peft_type, where):
    """Raises `ValueError` unless the declared tensors of fused `module` fit its part `layers`."""
    if kind != "adapter" or any(not tensor.startswith(("gralora_", "lora_")) for tensor in found):
        raise ValueError(
            f"{where}: fused module '{module}' (KerasHub's {[layer.path for layer in layers]}) holds {sorted(found)}; "
            "only its adapter tensors can be split across those layers (train c_attn without bias or "
            "modules_to_save)."
        )
    in_features, out_features = _fused_shape(layers, module, where)
    if peft_type == "GRALORA":
        k, r, hybrid_r = config["gralora_k"], config["r"], config["hybrid_r"]
        expected = {"gralora_A": (k, in_features // k, r), "gralora_B": (k, r, out_features // k)}
        if hybrid_r:
            expected.update(
                {
                    "gralora_A_general.weight": (hybrid_r, in_features),
                    "gralora_B_general.weight": (out_features, hybrid_r),
                }
            )
    else:
        r = found["lora_A.weight"][0][0] if "lora_A.weight" in found else None
        expected = {"lora_A.weight": (r, in_features), "lora_B.weight": (out_features, r)}
    if (declared := {tensor: tuple(shape) for tensor, (shape, _) in found.items()}) != expected:
        raise ValueError(
            f"{where}: fused module '{module}' ({in_features} -> {out_features} features) needs "
            f"{expected}; the directory declares {declared}."
        )


def entries(layers, module, found, layer_config, peft_type, where):
    """`{layer path: LayerEntry}`: each part's exact share of fused `module`'s adapter (`found`: arrays)."""
    if peft_type == "GRALORA":
        hybrid = [found[key].T for key in ("gralora_A_general.weight", "gralora_B_general.weight") if key in found]
        left, right = factors.gralora_factors(found["gralora_A"], found["gralora_B"], layer_config.scale, *hybrid)
    else:
        left = np.asarray(found["lora_A.weight"], np.float32).T
        right = np.asarray(found["lora_B.weight"], np.float32).T * np.float32(layer_config.scale)
    rank = left.shape[1]
    config = GraLoRAConfig(
        r=rank,
        k=1,
        hybrid_r=0,
        alpha=float(rank),
        dropout=layer_config.dropout,
        bias=layer_config.bias,
        modules_to_save=layer_config.modules_to_save,
    )
    result, start = {}, 0
    for layer in layers:
        width = inject.matrix_shape(layer)[1]
        part = np.ascontiguousarray(right[:, start : start + width])
        result[layer.path] = LayerEntry(
            config, (left.shape[0], width), {"gralora_a": np.ascontiguousarray(left[None]), "gralora_b": part[None]}
        )
        start += width
    return result


def _fused_shape(layers, module, where):
    shapes = [inject.matrix_shape(layer) for layer in layers]
    if len({in_features for in_features, _ in shapes}) != 1:
        raise ValueError(f"{where}: the layers of fused module '{module}' read different inputs: {shapes}.")
    return shapes[0][0], sum(out for _, out in shapes)
