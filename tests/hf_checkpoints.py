"""Tiny random Hugging Face checkpoints (written by the tests with transformers) and their forward passes.

One per architecture that keras_gralora's PEFT interop maps. Each is what
`save_pretrained` writes, so `keras_hub.models.Backbone.from_preset(directory)`
converts it with KerasHub's own converter. BERT is saved as
`BertForSequenceClassification` (3 labels): its `bert.` weights also load
as `BertModel`, and the classifier serves `BertTextClassifier` tests.
"""

import numpy as np
import tiny_transformers
import torch
import transformers

SIZES = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
DECODER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ARCHITECTURES = {  # name: (config class and its settings, class written, module names to adapt)
    "llama": (("LlamaConfig", dict(num_key_value_heads=2)), "LlamaForCausalLM", DECODER_TARGETS),
    "mistral": (("MistralConfig", dict(num_key_value_heads=2)), "MistralForCausalLM", DECODER_TARGETS),
    "qwen2": (("Qwen2Config", dict(num_key_value_heads=2)), "Qwen2ForCausalLM", DECODER_TARGETS),
    "gemma": (("GemmaConfig", dict(num_key_value_heads=1, head_dim=8)), "GemmaForCausalLM", DECODER_TARGETS),
    "gemma3": (
        ("Gemma3TextConfig", dict(num_key_value_heads=1, head_dim=8, query_pre_attn_scalar=8, sliding_window=4)),
        "Gemma3ForCausalLM",
        DECODER_TARGETS,
    ),
    "bert": (
        ("BertConfig", dict(max_position_embeddings=32, num_labels=3, hidden_act="gelu_pytorch_tanh")),
        "BertForSequenceClassification",
        ["query", "key", "value", "dense"],
    ),
}  # Gemma 3 with query_pre_attn_scalar = head_dim, as the real ones (KerasHub's converter scales queries by head_dim)
# BERT with the tanh GELU: KerasHub's BertBackbone always uses it (the real MiniLM has the exact one)
CONV1D = {  # transformers' Conv1D modules (fan_in_fan_out), and a fused c_attn that KerasHub splits
    "gpt2": (
        ("GPT2Config", dict(n_positions=32, activation_function="gelu_new")),
        "GPT2LMHeadModel",
        ["c_attn", "c_proj", "c_fc"],
    )
}
MOE_SIZES = dict(num_key_value_heads=2, num_experts_per_tok=2)
MOE = {  # mixture-of-experts models, whose experts PEFT's LoRA adapts through target_parameters
    "mixtral": (("MixtralConfig", dict(MOE_SIZES, num_local_experts=4)), "MixtralForCausalLM", ["q_proj", "v_proj"]),
    "qwen3_moe": (
        ("Qwen3MoeConfig", dict(MOE_SIZES, num_experts=4, moe_intermediate_size=8, head_dim=4, mlp_only_layers=[])),
        "Qwen3MoeForCausalLM",
        ["q_proj", "v_proj"],
    ),
}
ROUNDED_BY_KERAS_HUB = {"mistral": torch.float16}  # convert_mistral.py stores every weight through float16
TOKENS = np.random.default_rng(0).integers(1, SIZES["vocab_size"], (2, 7))


def write_checkpoint(name, directory, seed=0, **overrides):
    """Writes architecture `name`'s tiny random checkpoint to `directory`."""
    (config_class, settings), class_name, _ = {**ARCHITECTURES, **CONV1D, **MOE}[name]
    config = getattr(transformers, config_class)(**{**SIZES, **settings, **overrides})
    torch.manual_seed(seed)
    getattr(transformers, class_name)(config).save_pretrained(directory)
    tiny_transformers.with_transformers_4_keys(name, directory, config)
    return directory


def load(name, directory, class_name=None):
    """The checkpoint as a transformers model in eval mode (`class_name` defaults to the one written).

    Its weights are rounded as KerasHub's converter rounds them, so that
    both start from the same base.
    """
    class_name = class_name or {**ARCHITECTURES, **CONV1D, **MOE}[name][1]
    model = getattr(transformers, class_name).from_pretrained(directory).eval()
    if name in ROUNDED_BY_KERAS_HUB:
        model.to(ROUNDED_BY_KERAS_HUB[name]).float()
    return model


def hf_outputs(model):
    """The backbone's outputs of a transformers model on `TOKENS`, as numpy (PEFT adapts models in place)."""
    ids = torch.tensor(TOKENS)
    with torch.no_grad():
        if hasattr(model, "classifier"):  # BertForSequenceClassification
            return {"logits": model(ids).logits.numpy()}
        if hasattr(model, "pooler"):  # BertModel
            out = model(ids)
            return {"sequence_output": out.last_hidden_state.numpy(), "pooled_output": out.pooler_output.numpy()}
        if hasattr(model, "transformer"):  # GPT2LMHeadModel
            return {"sequence_output": model.transformer(ids).last_hidden_state.numpy()}
        return {"sequence_output": model.model(ids).last_hidden_state.numpy()}


def keras_inputs(name):
    inputs = {"token_ids": TOKENS, "padding_mask": np.ones_like(TOKENS)}
    return {**inputs, "segment_ids": np.zeros_like(TOKENS)} if name == "bert" else inputs


def keras_outputs(model, name):
    """A KerasHub backbone's or `BertTextClassifier`'s outputs on `TOKENS`, named as `hf_outputs` names them."""
    from keras import ops

    out = model(keras_inputs(name))
    if not isinstance(out, dict):
        out = {"logits" if hasattr(model, "backbone") else "sequence_output": out}
    return {key: ops.convert_to_numpy(value) for key, value in out.items()}


def write_all(root):
    """Every architecture's checkpoint under `root` (a `pathlib.Path`): `{name: directory}`."""
    return {name: write_checkpoint(name, str(root / name)) for name in ARCHITECTURES}


def peft_directory(name, checkpoint, directory, config, class_name=None):
    """PEFT adapts the checkpoint with `config`, saves to `directory`; returns the adapted model's outputs."""
    import peft

    model = load(name, checkpoint, class_name)
    peft.get_peft_model(model, config).save_pretrained(directory)
    return hf_outputs(model.eval())  # PEFT's new dropout modules start in training mode


def peft_outputs(name, checkpoint, directory, class_name=None):
    """The outputs of the checkpoint with PEFT's `PeftModel.from_pretrained(directory)` on it."""
    import peft

    return hf_outputs(peft.PeftModel.from_pretrained(load(name, checkpoint, class_name), directory).base_model.model)


def assert_outputs_equal(ours, theirs):
    assert set(ours) == set(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-4 * np.abs(theirs[key]).max())
