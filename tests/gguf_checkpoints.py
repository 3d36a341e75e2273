"""Tiny float32 GGUF base models for llama.cpp, written by the tests with the `gguf` package from a tiny HF checkpoint.

What llama.cpp's `convert_hf_to_gguf.py` makes of the same weights, for the
architectures the GGUF adapter tests serve: gguf's tensor-name tables, Llama's
q/k rows permuted for llama.cpp's rotary layout, Gemma's RMSNorm weights
stored as `1 + w`. The vocabulary is a SentencePiece-style list of
placeholder pieces (the tests feed token ids, never text).
"""

import json
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

ARCHS = {"LlamaForCausalLM": gguf.MODEL_ARCH.LLAMA, "GemmaForCausalLM": gguf.MODEL_ARCH.GEMMA}


def write_base(checkpoint, path):
    """Writes `checkpoint` (a transformers directory) as a float32 GGUF at `path`; returns `path`."""
    with open(os.path.join(checkpoint, "config.json")) as f:
        config = json.load(f)
    arch = ARCHS[config["architectures"][0]]
    weights = load_file(os.path.join(checkpoint, "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_context_length(64)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _vocabulary(writer, config["vocab_size"])
    table = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    for key, value in weights.items():
        module = key.removesuffix(".weight")
        if module == "lm_head" and arch == gguf.MODEL_ARCH.GEMMA:
            continue  # tied to the embedding
        value = value.astype(np.float32)
        if arch == gguf.MODEL_ARCH.LLAMA and module.endswith(("q_proj", "k_proj")):
            value = permuted(value, heads if module.endswith("q_proj") else kv_heads)
        if arch == gguf.MODEL_ARCH.GEMMA and key.endswith("norm.weight"):
            value = value + 1.0
        writer.add_tensor(table.get_name(key, try_suffixes=(".weight",)), value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def permuted(rows, heads):
    """convert_hf_to_gguf.py's `LlamaModel.permute`: each head's rotary halves interleaved."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _vocabulary(writer, size):
    pieces = ["<unk>", "<s>", "</s>", "<0x0A>"] + [f"\u2581t{i}" for i in range(size - 4)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, gguf.TokenType.BYTE]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores([0.0] * size)
    writer.add_token_types(types + [gguf.TokenType.NORMAL] * (size - 4))
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
