"""A tiny random checkpoint of every architecture whose KerasHub converter reads what transformers writes.

`TINY[model_type] = (config settings, class written)`. `name_tables.json`
(the library's transformers name tables) is derived from these by
`scripts/name_tables.py`, and `tests/test_name_tables.py` derives it again.
KerasHub converters without a table yet, and why (keras-hub 0.32,
transformers 5.24): `NO_TABLE`.
"""

import json
import os

import torch
import transformers

DECODER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
GQA = dict(DECODER, num_key_value_heads=2, head_dim=4)
ENCODER = dict(DECODER, max_position_embeddings=32)
MOE = dict(num_experts_per_tok=2, moe_intermediate_size=8)
TINY = {
    "albert": (dict(ENCODER, embedding_size=8), "AlbertForSequenceClassification"),
    "bert": (ENCODER, "BertModel"),
    "distilbert": (dict(ENCODER, dim=16, hidden_dim=32, n_layers=2, n_heads=4), "DistilBertForMaskedLM"),
    "roberta": (dict(ENCODER, max_position_embeddings=40), "RobertaForMaskedLM"),
    "xlm-roberta": (dict(ENCODER, max_position_embeddings=40), "XLMRobertaModel"),
    "gemma": (GQA, "GemmaForCausalLM"),
    "gemma2": (GQA, "Gemma2ForCausalLM"),
    "gemma3_text": (dict(GQA, query_pre_attn_scalar=4, sliding_window=4), "Gemma3ForCausalLM"),
    "gpt2": (dict(DECODER, n_positions=32), "GPT2LMHeadModel"),
    "llama": (GQA, "LlamaForCausalLM"),
    "mistral": (GQA, "MistralForCausalLM"),
    "mixtral": (dict(GQA, num_local_experts=4, num_experts_per_tok=2), "MixtralForCausalLM"),
    "qwen2": (GQA, "Qwen2ForCausalLM"),
    "qwen2_moe": (dict(GQA, **MOE, num_experts=4, shared_expert_intermediate_size=8), "Qwen2MoeForCausalLM"),
    "qwen3": (GQA, "Qwen3ForCausalLM"),
    "qwen3_moe": (dict(GQA, **MOE, num_experts=4, mlp_only_layers=[]), "Qwen3MoeForCausalLM"),
    "smollm3": (dict(GQA, pad_token_id=0), "SmolLM3ForCausalLM"),
    "t5gemma": (dict(encoder=GQA, decoder=GQA), "T5GemmaForConditionalGeneration"),
}
NO_TABLE = {  # KerasHub converter module -> why no table is derived from it yet
    "convert_bart": "reads config['num_hidden_layers'], which transformers' BartConfig no longer writes",
    "convert_esm": "reads 'encoder.layer.N.attention.LayerNorm', which transformers' EsmModel no longer has",
    "convert_gpt_oss": "reads MXFP4 expert blocks, which a float checkpoint does not have",
    "convert_gemma4": "its reshape of the attention weights fails on a tiny checkpoint",
    "convert_gemma4_assistant": "an assistant head over a Gemma 4 backbone (see convert_gemma4)",
    "convert_gemma3n": "its vision tower needs timm, not installed",
    "convert_qwen3_5": "hybrid linear-attention model: its tiny checkpoint exhausts the test machine's memory",
    "convert_qwen3_5_moe": "as convert_qwen3_5",
    "convert_blip2": "vision-language: needs a tiny multimodal checkpoint, not written yet",
    "convert_pali_gemma": "vision-language: needs a tiny multimodal checkpoint, not written yet",
    "convert_metaclip_2": "vision-language: needs a tiny multimodal checkpoint, not written yet",
    "convert_t5gemma2": "vision-language: needs a tiny multimodal checkpoint, not written yet",
    "convert_sam3": "segmentation video model: needs a tiny SAM 3 checkpoint, not written yet",
    "convert_dinov3": "needs a tiny DINOv3 checkpoint, not written yet",
    **dict.fromkeys(
        ("convert_vit", "convert_deit", "convert_dinov2"),
        "transformers 5 renames these models' modules (`layers.N.attention.q_proj`) away from the checkpoint names "
        "KerasHub's converter reads (`encoder.layer.N.attention.attention.query`); PEFT names adapters by module",
    ),
    "convert_swin_transformer": "needs a tiny Swin checkpoint, not written yet",
}


def with_transformers_4_keys(model_type, directory, config):
    """Adds to a saved `config.json` the keys KerasHub 0.32's converter reads that transformers 5 renamed or dropped.

    Qwen3-MoE: `num_experts` (now `num_local_experts`) and `head_dim`, as transformers 4 wrote them.
    """
    if model_type != "qwen3_moe":
        return
    path = os.path.join(directory, "config.json")
    with open(path) as file:
        saved = json.load(file)
    saved.update(num_experts=saved["num_local_experts"], head_dim=config.head_dim)
    with open(path, "w") as file:
        json.dump(saved, file)


def write(model_type, directory, seed=0):
    """Writes `model_type`'s tiny checkpoint; returns `(class written, base model class, prefix of its modules)`."""
    settings, class_name = TINY[model_type]
    config = transformers.AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(config)
    model.save_pretrained(directory)
    with_transformers_4_keys(model_type, directory, config)
    base = type(model.base_model).__name__
    return class_name, base, "" if base == class_name else model.base_model_prefix + "."
