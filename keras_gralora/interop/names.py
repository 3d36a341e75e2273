"""Which KerasHub layer each Hugging Face module became: one table per architecture.

Each table is read off KerasHub's converter for that architecture
(`keras_hub/src/utils/transformers/convert_*.py`: the `hf_weight_key` it
reads into each layer's kernel; `tests/test_peft_interop.py` checks every
entry against the converter's own calls). Module names are those of the
transformers class's backbone (`LlamaModel`, `BertModel`); `classes` gives
the prefix each transformers class puts in front of them and the task heads
it adds. `{}` stands for the block index. In every mapped projection the
transformers `[out, in]` weight, transposed, is the kernel read as GraLoRA's
`[in, out]` matrix (also checked by the tests), so adapters convert 1:1.
"""

import dataclasses
import re

DECODER_BLOCK = {  # convert_llama3.py, convert_mistral.py, convert_qwen.py
    "self_attn.q_proj": "self_attention/query",
    "self_attn.k_proj": "self_attention/key",
    "self_attn.v_proj": "self_attention/value",
    "self_attn.o_proj": "self_attention/attention_output",
    "mlp.gate_proj": "feedforward_gate_dense",
    "mlp.up_proj": "feedforward_intermediate_dense",
    "mlp.down_proj": "feedforward_output_dense",
    "input_layernorm": "self_attention_layernorm",
    "post_attention_layernorm": "feedforward_layernorm",
}
GEMMA_BLOCK = {  # convert_gemma.py
    "self_attn.q_proj": "attention/query",
    "self_attn.k_proj": "attention/key",
    "self_attn.v_proj": "attention/value",
    "self_attn.o_proj": "attention/attention_output",
    "mlp.gate_proj": "ffw_gating",
    "mlp.up_proj": "ffw_gating_2",
    "mlp.down_proj": "ffw_linear",
    "input_layernorm": "pre_attention_norm",
    "post_attention_layernorm": "pre_ffw_norm",
}
GEMMA3_BLOCK = {  # convert_gemma3.py: Gemma's projections, its own norms (post_attention_layernorm differs)
    **{hf: keras for hf, keras in GEMMA_BLOCK.items() if "layernorm" not in hf},
    "self_attn.q_norm": "attention/query_norm",
    "self_attn.k_norm": "attention/key_norm",
    "input_layernorm": "pre_attention_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "pre_ffw_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
BERT_BLOCK = {  # convert_bert.py
    "attention.self.query": "self_attention_layer/query",
    "attention.self.key": "self_attention_layer/key",
    "attention.self.value": "self_attention_layer/value",
    "attention.output.dense": "self_attention_layer/attention_output",
    "attention.output.LayerNorm": "self_attention_layer_norm",
    "intermediate.dense": "feedforward_intermediate_dense",
    "output.dense": "feedforward_output_dense",
    "output.LayerNorm": "feedforward_layer_norm",
}
GPT2_BLOCK = {  # convert_gpt2.py (c_attn: `Architecture.splits`)
    "attn.c_proj": "self_attention/attention_output",
    "mlp.c_fc": "feedforward_intermediate_dense",
    "mlp.c_proj": "feedforward_output_dense",
    "ln_1": "self_attention_layer_norm",
    "ln_2": "feedforward_layer_norm",
}
LM_HEAD = "KerasHub keeps the output projection as token_embedding's `reverse_embeddings`, not a Dense layer"


def _blocks(hf_block, keras_block, modules):
    return {hf_block + hf: keras_block + keras for hf, keras in modules.items()}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one architecture's transformers modules map to its KerasHub layers.

    Args:
        name: A short name for messages.
        backbones: KerasHub backbone class names (subclasses match too).
        modules: transformers module (in the backbone class) -> KerasHub layer path.
        classes: transformers class -> `(prefix of the backbone's modules, {head module: task layer path})`.
        saves_as: KerasHub class name (a task's, or "Backbone") -> the transformers class written.
        refused: transformers module (after the prefix) -> why it has no counterpart.
    """

    name: str
    backbones: tuple
    modules: dict
    classes: dict
    saves_as: dict
    refused: dict = dataclasses.field(default_factory=dict)
    fan_in_fan_out: bool = False  # transformers' Conv1D: weights stored [in, out] (GPT-2)
    splits: dict = dataclasses.field(default_factory=dict)  # fused module -> the layers of its equal column parts


def _decoder(name, backbone, prefix):
    return Architecture(
        name,
        (backbone,),
        {
            **_blocks("layers.{}.", "transformer_layer_{}/", DECODER_BLOCK),
            "embed_tokens": "token_embedding",
            "norm": "sequence_output_layernorm",
        },
        {f"{prefix}ForCausalLM": ("model.", {}), f"{prefix}Model": ("", {})},
        {"Backbone": f"{prefix}ForCausalLM", "CausalLM": f"{prefix}ForCausalLM"},
        {"lm_head": LM_HEAD},
    )


def _gemma(name, backbone, block, causal_lm, model):
    return Architecture(
        name,
        (backbone,),
        {
            **_blocks("layers.{}.", "decoder_block_{}/", block),
            "embed_tokens": "token_embedding",
            "norm": "final_normalization",
        },
        {causal_lm: ("model.", {}), model: ("", {})},
        {"Backbone": causal_lm, "CausalLM": causal_lm},
        {"lm_head": LM_HEAD},
    )


ARCHITECTURES = (
    _decoder("llama", "LlamaBackbone", "Llama"),
    _decoder("mistral", "MistralBackbone", "Mistral"),
    _decoder("qwen2", "QwenBackbone", "Qwen2"),
    _gemma("gemma", "GemmaBackbone", GEMMA_BLOCK, "GemmaForCausalLM", "GemmaModel"),
    # text-only Gemma 3 (config model_type "gemma3_text")
    _gemma("gemma3", "Gemma3Backbone", GEMMA3_BLOCK, "Gemma3ForCausalLM", "Gemma3TextModel"),
    Architecture(
        "bert",
        ("BertBackbone",),
        {
            **_blocks("encoder.layer.{}.", "transformer_layer_{}/", BERT_BLOCK),
            "pooler.dense": "pooled_dense",
            "embeddings.LayerNorm": "embeddings_layer_norm",
            "embeddings.word_embeddings": "token_embedding",
            "embeddings.position_embeddings": "position_embedding",
            "embeddings.token_type_embeddings": "segment_embedding",
        },
        {"BertForSequenceClassification": ("bert.", {"classifier": "logits"}), "BertModel": ("", {})},
        {"Backbone": "BertModel", "BertTextClassifier": "BertForSequenceClassification"},
    ),
    Architecture(  # convert_gpt2.py; c_attn's [q|k|v] columns become three layers
        "gpt2",
        ("GPT2Backbone",),
        {
            **_blocks("h.{}.", "transformer_layer_{}/", GPT2_BLOCK),
            "wte": "token_embedding",
            "wpe": "position_embedding",
            "ln_f": "layer_norm",
        },
        {"GPT2LMHeadModel": ("transformer.", {}), "GPT2Model": ("", {})},
        {"Backbone": "GPT2LMHeadModel", "CausalLM": "GPT2LMHeadModel"},
        {"lm_head": LM_HEAD},
        fan_in_fan_out=True,
        splits={
            "h.{}.attn.c_attn": tuple(
                f"transformer_layer_{{}}/self_attention/{part}" for part in ("query", "key", "value")
            )
        },
    ),
)


def architecture_of(model, where):
    """The table for `model` (a KerasHub backbone or task), or `ValueError` naming what is supported."""
    backbone = getattr(model, "backbone", model)
    classes = [cls.__name__ for cls in type(backbone).__mro__]
    for architecture in ARCHITECTURES:
        if any(name in classes for name in architecture.backbones):
            return architecture
    supported = [name for architecture in ARCHITECTURES if architecture.saves_as for name in architecture.backbones]
    raise ValueError(
        f"{where}: model '{model.name}' ({type(model).__name__}, backbone {type(backbone).__name__}) has no "
        f"transformers name table; supported KerasHub backbones: {supported}."
    )


def _pattern(template):
    return re.compile(re.escape(template).replace(r"\{\}", r"(\d+)"))


def _lookup(table, name):
    """`(template, index)` of the entry of `table` that `name` matches, else `None`."""
    for template in table:
        if match := _pattern(template).fullmatch(name):
            return template, match.groups()
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
                return architecture.modules[template].format(*index)
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
            return [path.format(*index) for path in architecture.splits[template]]
    return None


def fused_part(architecture, class_name, layer_path):
    """`(fused module, part index, part paths)` when `layer_path` is a column part of a fused module, else `None`."""
    prefix, _ = architecture.classes[class_name]
    for template, parts in architecture.splits.items():
        for index, part in enumerate(parts):
            if match := _pattern(part).fullmatch(layer_path):
                return prefix + template.format(*match.groups()), index, [p.format(*match.groups()) for p in parts]
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
        return prefix + inverse[template].format(*index)
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
