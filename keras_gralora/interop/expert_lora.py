"""Adapted expert weights as exact PEFT LoRA of transformers' expert parameters (PEFT's `target_parameters`).

transformers holds each block's experts as one module with two parameters,
`gate_up_proj [E, 2 * i, h]` (gate rows, then up rows) and `down_proj
[E, h, i]` (`MixtralExperts`, `Qwen2MoeExperts`, `Qwen3MoeExperts`), which
PEFT's LoRA adapts through `target_parameters` (`lora.ParamWrapper`): for a
parameter `[E, out, in]`, `lora_A.weight` is `[E * R, in]` (expert `e`'s
rows `e * R ...`) and `lora_B.weight` `[out, R * E]` (expert `e`'s rank
`t` in column `t * E + e`), and expert `e`'s update is `B_e @ A_e`. PEFT
nests the wrappers of one module in its parameters' order, so the first
one's tensors sit under `base_layer.`.

KerasHub's converters read the per-expert checkpoints transformers writes
(`experts.{e}.w1`, ...), so these parameters are not in `name_tables.json`:
`EXPERT_PARAMETERS` names them, and `tests/test_experts.py` checks each map by
loading the directory into PEFT on a tiny transformers model.
"""

import numpy as np

from keras_gralora.backend import to_numpy
from keras_gralora.interop import factors
from keras_gralora.interop.lora_files import PREFIX, ConvertedModule
from keras_gralora.surgery import selection

EXPERT_PARAMETERS = {  # model_type: (experts module, {parameter: the KerasHub weights stacked along its rows})
    "mixtral": (
        "layers.{}.mlp.experts",
        {
            "gate_up_proj": ("expert_feedforward_gate_dense", "expert_feedforward_intermediate_dense"),
            "down_proj": ("expert_feedforward_output_dense",),
        },
    ),
    **{
        model_type: (
            "layers.{}.mlp.experts",
            {"gate_up_proj": ("expert_feedforward_gate_dense",), "down_proj": ("expert_feedforward_output_dense",)},
        )
        for model_type in ("qwen2_moe", "qwen3_moe")
    },
}


def expert_factors(layer, adapter_name):
    """Exact `(left [E, in, R], right [E, R, out])` of an expert weight's adapter (`factors.gralora_factors` each)."""
    a, b, scale, *hybrid = (v if isinstance(v, float) else to_numpy(v) for v in layer.adapter(adapter_name).factors())
    pairs = [factors.gralora_factors(a[e], b[e], scale, *(h[e] for h in hybrid)) for e in range(a.shape[0])]
    return np.stack([left for left, _ in pairs]), np.stack([right for _, right in pairs])


def expert_lora(model, holders, adapter_name, architecture, class_name, where):
    """`(rows, arrays)`: the adapted expert weights `holders` as LoRA of the transformers expert parameters."""
    if architecture.name not in EXPERT_PARAMETERS:
        raise ValueError(
            f"{where}: the adapter adapts expert weights ({holders[0].path}...), and {architecture.name}'s expert "
            f"parameters have no map here (mapped: {sorted(EXPERT_PARAMETERS)}). Save the adapter with "
            "`save_gralora_weights`, or merge it (`export_merged`)."
        )
    template, parameters = EXPERT_PARAMETERS[architecture.name]
    prefix = architecture.classes[class_name][0]
    backbone = selection.task_backbone(model) or model
    by_place = {(selection.block_index(backbone, holder), holder.name): holder for holder in holders}
    if unmapped := [h.path for h in holders if h.name not in {n for names in parameters.values() for n in names}]:
        raise ValueError(f"{where}: expert weights {unmapped[:3]} have no {architecture.name} parameter.")
    rows, arrays = [], {}
    for block in sorted({block for block, _ in by_place}):
        module = prefix + template.format(block)
        targeted = [name for name, parts in parameters.items() if any((block, part) in by_place for part in parts)]
        for index, name in enumerate(targeted):  # PEFT: the first parameter's wrapper is innermost
            parts = [by_place.get((block, part)) for part in parameters[name]]
            left, right = _stacked(parts, adapter_name)
            key = f"{PREFIX}{module}.{'base_layer.' * (len(targeted) - 1 - index)}"
            experts, rank = left.shape[0], left.shape[-1]
            arrays[key + "lora_A.weight"] = np.ascontiguousarray(np.swapaxes(left, 1, 2).reshape(experts * rank, -1))
            arrays[key + "lora_B.weight"] = np.ascontiguousarray(
                np.transpose(right, (2, 1, 0)).reshape(-1, rank * experts)
            )
            label = "+".join(part.path for part in parts if part is not None)
            rows.append(ConvertedModule(f"{module}.{name}", label, rank, rank, 0.0, parameter=True))
    return rows, arrays


def _stacked(parts, adapter_name):
    """One parameter's exact factors from its parts' (stacked along its rows; zero for a part not adapted)."""
    exact = [expert_factors(part, adapter_name) if part is not None else None for part in parts]
    widths = [part.variable.shape[-1] if part is not None else None for part in parts]
    known = next(e for e in exact if e is not None)
    widths = [w if w is not None else known[1].shape[-1] for w in widths]  # the parts of a fused weight match
    left = np.concatenate([e[0] for e in exact if e is not None], axis=-1)
    right = np.zeros((left.shape[0], left.shape[-1], sum(widths)), np.float32)
    row, column = 0, 0
    for found, width in zip(exact, widths):
        if found is not None:
            right[:, row : row + found[1].shape[1], column : column + width] = found[1]
            row += found[1].shape[1]
        column += width
    return left, right
