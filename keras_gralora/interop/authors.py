"""The GraLoRA authors' own checkpoints (SqueezeBits/GraLoRA, a PEFT fork), read as PEFT's GraLoRA.

Their `adapter_config.json` says `peft_type: "GRALORA"` as PEFT's does, and
their tensors have PEFT's names and layouts (`gralora_A [k, in/k, r]`,
`gralora_B [k, r, out/k]`, `gralora_{A,B}_general.weight`). The config differs:

| theirs | PEFT's GraLoRA |
|---|---|
| `gralora_alpha` (default 8) | `alpha` |
| `r`: block rank plus `hybrid_r` | `r`: block rank |
| scale `gralora_alpha / r` | scale `alpha / (r + hybrid_r)` |

so their `(r, hybrid_r, gralora_alpha)` is PEFT's `(r - hybrid_r, hybrid_r,
gralora_alpha)`, with the same scale. A config of theirs with a field
their code does not have is refused: its meaning would be a guess.
"""

DEFAULTS = {"r": 8, "hybrid_r": 0, "gralora_alpha": 8, "gralora_dropout": 0.0, "gralora_k": 2}
FIELDS = {  # SqueezeBits/GraLoRA's GraloraConfig and PeftConfig fields
    "r",
    "hybrid_r",
    "target_modules",
    "gralora_alpha",
    "gralora_dropout",
    "gralora_k",
    "fan_in_fan_out",
    "bias",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "peft_type",
    "task_type",
    "auto_mapping",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "peft_version",
}


def is_theirs(config):
    """Whether a GRALORA config is the authors' (`gralora_alpha`, no `alpha`)."""
    return config.get("peft_type") == "GRALORA" and "gralora_alpha" in config and "alpha" not in config


def as_peft(config, where):
    """The authors' config as PEFT's GraLoRA config with the same math."""
    if unknown := sorted(set(config) - FIELDS):
        raise ValueError(
            f"{where}: adapter_config.json has the GraLoRA authors' layout (gralora_alpha, r counting hybrid_r) "
            f"and fields their code does not have: {unknown}. keras_gralora reads their layout and PEFT's; "
            "save the adapter again with either."
        )
    config = {**DEFAULTS, **config}
    r, hybrid_r, k = config["r"], config["hybrid_r"], config["gralora_k"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (r, hybrid_r, k)) or not 0 <= hybrid_r < r:
        raise ValueError(
            f"{where}: the authors' layout needs integers r > hybrid_r >= 0 and gralora_k (r counts "
            f"the hybrid rank there), got r={r!r}, hybrid_r={hybrid_r!r}, gralora_k={k!r}."
        )
    peft = {key: value for key, value in config.items() if key != "gralora_alpha"}
    return {**peft, "r": r - hybrid_r, "alpha": config["gralora_alpha"]}
