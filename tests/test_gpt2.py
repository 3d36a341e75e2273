"""GPT-2's Conv1D modules (fan_in_fan_out) and its fused c_attn, against PEFT on a tiny random checkpoint."""

import hf_checkpoints as hf
import numpy as np
import peft
import pytest
from helpers import randomize

import keras_gralora

keras_hub = pytest.importorskip("keras_hub")
TARGETS = hf.CONV1D["gpt2"][2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return hf.write_checkpoint("gpt2", str(tmp_path_factory.mktemp("hf") / "gpt2"))


@pytest.mark.parametrize(
    "config",
    [
        peft.GraloraConfig(
            r=4, gralora_k=2, hybrid_r=2, alpha=8, target_modules=TARGETS, init_weights=False, fan_in_fan_out=True
        ),
        peft.LoraConfig(r=4, lora_alpha=6, target_modules=TARGETS, init_lora_weights=False, fan_in_fan_out=True),
    ],
    ids=["gralora", "lora"],
)
def test_a_peft_gpt2_adapter_loads_with_c_attn_split_into_query_key_value(config, checkpoint, tmp_path):
    expected = hf.peft_directory("gpt2", checkpoint, tmp_path / "adapter", config)
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    base = hf.keras_outputs(backbone, "gpt2")
    paths = keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    assert len(paths) == 2 * 6  # per block: query, key, value (from c_attn), attention_output, c_fc, c_proj
    ours = hf.keras_outputs(backbone, "gpt2")
    hf.assert_outputs_equal(ours, expected)
    assert np.abs(ours["sequence_output"] - base["sequence_output"]).max() > 0.1
    query = backbone.get_layer("transformer_layer_0")._self_attention_layer.query_dense.adapter("default").config
    rank = 2 * 4 + 2 if isinstance(config, peft.GraloraConfig) else 4
    assert (query.r, query.k, query.scale) == (rank, 1, 1.0)  # c_attn's exact share, as a k=1 adapter


def test_the_gpt2_name_table_is_what_kerashubs_converter_does(checkpoint, monkeypatch):
    from test_peft_interop import check_name_table

    check_name_table("gpt2", checkpoint, monkeypatch)


def gpt2_with_adapter(checkpoint, targets):
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, alpha=6, target_layer_names=targets)
    randomize(backbone.trainable_weights, seed=0, scale=0.3)
    return backbone


def test_our_gpt2_adapter_saves_as_a_peft_gralora_directory(checkpoint, tmp_path):
    backbone = gpt2_with_adapter(
        checkpoint, ["attention_output", "feedforward_intermediate_dense", "feedforward_output_dense"]
    )
    keras_gralora.save_peft_adapter(backbone, tmp_path / "out")
    hf.assert_outputs_equal(hf.keras_outputs(backbone, "gpt2"), hf.peft_outputs("gpt2", checkpoint, tmp_path / "out"))


def test_query_key_value_adapters_save_as_one_exact_lora_of_c_attn(checkpoint, tmp_path):
    backbone = gpt2_with_adapter(checkpoint, ["query", "value", "feedforward_output_dense"])  # key: no adapter
    with pytest.raises(ValueError, match=r"fused module 'transformer.h.0.attn.c_attn' .*save_lora_adapter"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "gralora")
    assert not (tmp_path / "gralora").exists()
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")
    fused = [row for row in rows if row.module.endswith("c_attn")]
    assert len(fused) == 2 and all(row.rank == 2 * (2 * 4 + 2) and row.error < 1e-6 for row in fused)
    hf.assert_outputs_equal(hf.keras_outputs(backbone, "gpt2"), hf.peft_outputs("gpt2", checkpoint, tmp_path / "lora"))
