"""llama.cpp itself serves our `adapter.gguf`: its logits on a float32 base equal the Keras model's.

Real llama.cpp (llama-cpp-python, built by `scripts/env.sh`) loads a tiny
GGUF base written from a tiny random transformers checkpoint
(`gguf_checkpoints.py`) and the adapter `save_lora_adapter(...,
runtime="llama.cpp")` wrote; both the base's logits and the adapted ones
are compared with KerasHub's model on the same checkpoint.
"""

import os
import subprocess
import sys

import gguf_checkpoints
import hf_checkpoints as hf
import keras
import llama_cpp
import numpy as np
import pytest

import keras_gralora
from keras_gralora.interop import gguf_adapter

keras_hub = pytest.importorskip("keras_hub")
TASKS = {"llama": "LlamaCausalLM", "gemma": "GemmaCausalLM"}
IDS = [5, 17, 3, 42, 9, 28]


def keras_logits(lm):
    ids = np.array([IDS], "int32")
    out = lm({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
    return keras.ops.convert_to_numpy(out)[0].astype("float64")


def llama_cpp_logits(base, adapter=None):
    kwargs = {"lora_path": adapter} if adapter else {}
    llm = llama_cpp.Llama(
        model_path=base,
        n_ctx=32,
        logits_all=True,
        verbose=False,
        n_threads=2,
        seed=0,
        type_k=llama_cpp.GGML_TYPE_F32,  # a float32 cache: llama.cpp's default f16 one rounds to ~1e-3
        type_v=llama_cpp.GGML_TYPE_F32,
        **kwargs,
    )
    llm.eval(IDS)
    return np.array(llm.scores[: len(IDS)], "float64")


@pytest.mark.parametrize("name", list(TASKS))
def test_llama_cpp_serves_our_adapter_with_the_keras_logits(name, tmp_path):
    checkpoint = hf.write_checkpoint(name, str(tmp_path / "hf"))
    base = gguf_checkpoints.write_base(checkpoint, str(tmp_path / "base.gguf"))
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    lm = getattr(keras_hub.models, TASKS[name])(backbone, preprocessor=None)
    np.testing.assert_allclose(llama_cpp_logits(base), keras_logits(lm), rtol=1e-4, atol=1e-4)  # the same base
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, target_layer_names="all")
    rng = np.random.default_rng(0)
    for variable in backbone.trainable_weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32") * 0.3)
    want = keras_logits(lm)
    rows = keras_gralora.save_lora_adapter(lm, tmp_path / "lora", runtime="llama.cpp")
    assert len(rows) == 2 * 7 and sorted(os.listdir(tmp_path / "lora")) == [
        "adapter.gguf",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    got = llama_cpp_logits(base, str(tmp_path / "lora" / "adapter.gguf"))
    assert np.abs(want - llama_cpp_logits(base)).max() > 0.1  # the adapter matters
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_what_llama_cpp_cannot_take_is_refused_before_writing_and_a_stale_gguf_goes(tmp_path):
    checkpoint = hf.write_checkpoint("qwen2", str(tmp_path / "hf"))
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    backbone.enable_gralora(r=4, k=2, target_layer_names=["query", "value"])
    keras_gralora.save_lora_adapter(backbone, tmp_path / "lora", runtime="llama.cpp")
    assert "adapter.gguf" in os.listdir(tmp_path / "lora")
    keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")  # no runtime: the old adapter.gguf must go
    assert sorted(os.listdir(tmp_path / "lora")) == ["adapter_config.json", "adapter_model.safetensors"]
    factors = (np.ones((8, 2)), np.ones((2, 8)))
    with pytest.raises(ValueError, match=r"llama.cpp's adapter file is written for .*; OPTForCausalLM is not among"):
        gguf_adapter.plan("OPTForCausalLM", {"model.decoder.layers.0.q_proj": factors}, None, "test")
    with pytest.raises(ValueError, match=r"module 'model.layers.0.no_such' has no tensor name in gguf's table"):
        gguf_adapter.plan("LlamaForCausalLM", {"model.layers.0.no_such": factors}, gguf_adapter.Heads(4, 2), "test")
    with pytest.raises(ValueError, match=r"LlamaForCausalLM's q/k rows are permuted by head, and no head counts"):
        gguf_adapter.plan("LlamaForCausalLM", {"model.layers.0.self_attn.q_proj": factors}, None, "test")
    assert gguf_adapter.ARCHS["MistralForCausalLM"].permutes_qk


def test_the_command_line_writes_the_gguf_adapter_from_a_peft_gralora_directory(tmp_path):
    checkpoint = hf.write_checkpoint("llama", str(tmp_path / "hf"))
    base = gguf_checkpoints.write_base(checkpoint, str(tmp_path / "base.gguf"))
    lm = keras_hub.models.LlamaCausalLM(keras_hub.models.Backbone.from_preset(checkpoint), preprocessor=None)
    lm.backbone.enable_gralora(r=4, k=2, target_layer_names="all")
    rng = np.random.default_rng(1)
    for variable in lm.backbone.trainable_weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32") * 0.3)
    keras_gralora.save_peft_adapter(lm, tmp_path / "gralora")
    command = [sys.executable, "-m", "keras_gralora", "convert", str(tmp_path / "gralora"), str(tmp_path / "lora")]
    done = subprocess.run([*command, "--runtime", "llama.cpp"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "pass --base HF_DIR" in done.stderr and not (tmp_path / "lora").exists()
    done = subprocess.run([*command, "--runtime", "llama.cpp", "--base", checkpoint], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = llama_cpp_logits(base, str(tmp_path / "lora" / "adapter.gguf"))
    np.testing.assert_allclose(got, keras_logits(lm), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("class_name", sorted(gguf_adapter.ARCHS))
def test_every_llama_cpp_architecture_has_a_name_table_whose_projections_gguf_names(class_name):
    """Each class llama.cpp's adapter file is written for: our table saves it, and gguf names its projections."""
    from keras_gralora.interop import names

    architecture = next(a for a in names.ARCHITECTURES if class_name in a.saves_as.values())
    prefix = architecture.classes[class_name][0]
    leaves = {"q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "c_proj", "c_fc"}
    modules = [prefix + names._fill(m, [0]) for m in architecture.modules if m.rsplit(".", 1)[-1] in leaves]
    assert modules, class_name
    pair = (np.ones((16, 2), "float32"), np.ones((2, 16), "float32"))
    heads = gguf_adapter.Heads(4, 2) if gguf_adapter.ARCHS[class_name].permutes_qk else None
    _, tensors = gguf_adapter.plan(class_name, dict.fromkeys(modules, pair), heads, "test")
    assert len(tensors) == len(modules) and all(name.startswith("blk.0.") for name, _, _ in tensors)
