"""The layers `enable_gralora` adapts by default, for KerasHub backbones whose own defaults find none.

KerasHub's `default_lora_layer_names()` names `query`/`value` (and
`query_dense`/`value_dense`), which many backbones do not have. As PEFT's
per-architecture defaults (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`)
do, each entry names the attention's query and value projections, or the
fused query-key-value projection where there is one. An entry is a tuple of
layer names, or `Keys(pattern)`: a regular expression over structure keys
(`structure.py`) for backbones whose layers have auto-numbered names only.
Backbones without attention name their feed-forward projections. The docs'
table of defaults per backbone comes from `scripts/backbone_table.py`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Keys:
    """Layers whose whole structure key matches `pattern`, e.g. `backbone/.*/attn/(q|v)`."""

    pattern: str


Q_V_PROJ = ("q_proj", "v_proj")
Q_V_DENSE_LAYER = ("q_dense_layer", "v_dense_layer")
MIT = Keys(r"backbone/.*/attn/(q|v)")
VIT_DET = Keys(r"backbone/.*/attention/qkv")

DEFAULT_TARGETS = {
    "DFineBackbone": Q_V_PROJ,
    "DINOV3Backbone": Q_V_PROJ,
    "ESMBackbone": Q_V_DENSE_LAYER,  # ESM2Backbone too: classes match along the MRO
    "FNetBackbone": ("intermediate_dense", "output_dense"),  # Fourier mixing: no attention
    "FluxBackbone": Keys(r"backbone/.*(image_attn|txt_attn|self_attention(_\d+)?)/layers/dense"),  # qkv
    "Gemma3nBackbone": Q_V_PROJ,
    "GPTNeoXBackbone": ("query_key_value",),
    "MiTBackbone": MIT,
    "RoformerV2Backbone": Q_V_DENSE_LAYER,
    "RQVAEBackbone": Keys(r"backbone/.*/dense_layers/dense(_\d+)?"),  # an MLP auto-encoder: no attention
    "SAMBackbone": VIT_DET,
    "SegFormerBackbone": MIT,
    "SmolLM3Backbone": Q_V_PROJ,
    "SwinTransformerBackbone": ("attention_qkv",),
    "T5Backbone": ("query_projector", "value_projector"),
    "ViTDetBackbone": VIT_DET,
}


def default_targets(backbone):
    """This table's entry for `backbone`'s class (or a base class), else `None`."""
    return next((DEFAULT_TARGETS[c.__name__] for c in type(backbone).__mro__ if c.__name__ in DEFAULT_TARGETS), None)
