"""Exact LoRA directories for serving (`save_lora_adapter`, `python -m keras_gralora convert`), checked in PEFT.

Each tiny random transformers checkpoint is converted by KerasHub's own
converter; the LoRA directory written must load with
`PeftModel.from_pretrained` and give the Keras model's outputs.
"""

import json
import os
import subprocess
import sys

import hf_checkpoints as hf
import keras
import numpy as np
import peft
import pytest

import keras_gralora

keras_hub = pytest.importorskip("keras_hub")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return hf.write_all(tmp_path_factory.mktemp("hf"))


def backbone_of(name, checkpoint):
    return keras_hub.models.Backbone.from_preset(checkpoint)


def train(variables, seed=0):
    rng = np.random.default_rng(seed)
    for variable in variables:  # as if trained: B is no longer zero, biases moved
        variable.assign(variable + 0.1 * rng.normal(size=variable.shape).astype("float32"))


def read_config(directory):
    return json.loads((directory / "adapter_config.json").read_text())


def listing(directory):
    return {f: (directory / f).read_bytes() for f in sorted(os.listdir(directory))}


@pytest.mark.parametrize("name", list(hf.ARCHITECTURES))
def test_an_exact_lora_directory_loads_in_peft_with_our_outputs(name, checkpoints, tmp_path):
    backbone = backbone_of(name, checkpoints[name])
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, alpha=6, target_layer_names="all")
    train(backbone.trainable_weights)
    ours = hf.keras_outputs(backbone, name)
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora", base_model_name_or_path="base")
    config = read_config(tmp_path / "lora")
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["rank_pattern"]) == ("LORA", 10, 10, {})
    assert all(row.rank == row.exact_rank == 10 and row.error < 1e-6 for row in rows)
    class_name = "BertModel" if name == "bert" else None
    hf.assert_outputs_equal(ours, hf.peft_outputs(name, checkpoints[name], tmp_path / "lora", class_name))


@pytest.mark.parametrize("name", ["llama", "gemma", "bert"])
def test_keras_own_lora_exports_exactly(name, checkpoints, tmp_path):
    """KerasHub's `enable_lora`: a per-head EinsumDense LoRA becomes rank heads * r, in rank_pattern."""
    backbone = backbone_of(name, checkpoints[name])
    backbone.enable_lora(2)
    train([v for v in backbone.trainable_weights if "lora" in v.path])
    ours = hf.keras_outputs(backbone, name)
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")
    heads = {"llama": 4, "gemma": 4, "bert": 4}[name]
    assert {row.rank for row in rows if row.module.endswith(("q_proj", "query"))} == {heads * 2}
    assert all(row.error < 1e-6 for row in rows)
    class_name = "BertModel" if name == "bert" else None
    hf.assert_outputs_equal(ours, hf.peft_outputs(name, checkpoints[name], tmp_path / "lora", class_name))
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "cpp", runtime="llama.cpp")  # one rank for all
    config = read_config(tmp_path / "cpp")
    assert config["rank_pattern"] == {} and {row.rank for row in rows} == {config["r"]} == {config["lora_alpha"]}
    hf.assert_outputs_equal(ours, hf.peft_outputs(name, checkpoints[name], tmp_path / "cpp", class_name))


def test_truncated_and_runtime_padded_directories(checkpoints, tmp_path):
    backbone = backbone_of("qwen2", checkpoints["qwen2"])
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, target_layer_names=["query", "value"])
    train(backbone.trainable_weights)
    ours = hf.keras_outputs(backbone, "qwen2")
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "vllm", runtime="vllm")
    assert {(row.exact_rank, row.rank) for row in rows} == {(10, 16)} and max(row.error for row in rows) < 1e-6
    assert read_config(tmp_path / "vllm")["r"] == 16  # vLLM's ladder: 10 -> 16, zero rows
    hf.assert_outputs_equal(ours, hf.peft_outputs("qwen2", checkpoints["qwen2"], tmp_path / "vllm"))
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "half", rank=5)
    layers = {layer.path: layer for layer in backbone._flatten_layers()}
    for row in rows:
        delta = keras.ops.convert_to_numpy(layers[row.layer].delta_matrix()).astype("float64")
        sigma = np.linalg.svd(delta, compute_uv=False)
        assert row.rank == 5 and row.error == pytest.approx(
            np.sqrt((sigma[5:] ** 2).sum() / (sigma**2).sum()), rel=1e-4
        )
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "energy", rank=0.95, runtime="sglang")
    config = read_config(tmp_path / "energy")
    assert {m: config["rank_pattern"].get(m, config["r"]) for m in config["target_modules"]} == {
        row.module: row.rank for row in rows
    }


def test_every_runtime_rule_is_refused_before_anything_is_written(checkpoints, tmp_path):
    backbone = backbone_of("llama", checkpoints["llama"])
    backbone.enable_gralora(r=128, k=4, hybrid_r=8, target_layer_names=["query"])  # exact rank 520
    backbone.enable_gralora(r=64, k=4, target_layer_names=["query"], adapter_name="wide")  # 256
    biased = backbone_of("qwen2", checkpoints["qwen2"])  # qwen2's q/k/v projections have biases
    biased.enable_gralora(r=4, k=2, bias="gralora_only", target_layer_names=["value"])
    classifier = keras_hub.models.BertTextClassifier(
        backbone_of("bert", checkpoints["bert"]), num_classes=3, preprocessor=None
    )
    keras_gralora.enable_gralora(classifier, r=4, k=2, target_layer_names=["query"], modules_to_save=["logits"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "adapter_config.json").write_text('{"kept": true}')
    before = listing(tmp_path / "out")
    cases = [
        (backbone, dict(runtime="vllm"), "vLLM serves ranks up to 512; module .* has rank 520. Pass rank=512"),
        (backbone, dict(adapter_name="wide", runtime="tgi"), "TGI serves ranks up to 128; .* rank 256"),
        (biased, dict(runtime="vllm"), "vLLM serves lora_A / lora_B only.* trained biases"),
        (classifier, dict(runtime="llama.cpp"), r"llama.cpp serves .*modules_to_save \['logits'\]"),
        (backbone, dict(runtime="triton"), "runtime='triton' is not one keras_gralora knows"),
        (backbone, dict(rank=0), "rank=0 must be None"),
        (backbone, dict(adapter_name="nope"), "no adapter named"),
        (keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)]), {}, "no transformers name table"),
    ]
    for model, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            keras_gralora.save_lora_adapter(model, tmp_path / "out", **kwargs)
        assert listing(tmp_path / "out") == before
    with pytest.raises(ValueError, match=r"rank=512 is above the rank any update of .* can have \(16 -> 16"):
        keras_gralora.save_lora_adapter(backbone, tmp_path / "out", rank=512, runtime="vllm")
    assert listing(tmp_path / "out") == before
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "out", rank=16, runtime="vllm")  # the fix
    assert {row.rank for row in rows} == {16} and max(row.error for row in rows) < 1e-6  # its true rank is 16
    plain = backbone_of("llama", checkpoints["llama"])
    with pytest.raises(ValueError, match="no GraLoRA adapter and no layer with Keras' LoRA"):
        keras_gralora.save_lora_adapter(plain, tmp_path / "plain")
    plain.enable_lora(2)
    plain.enable_gralora(r=4, k=2, target_layer_names=["key"])
    with pytest.raises(ValueError, match="GraLoRA adapters and Keras' LoRA"):
        keras_gralora.save_lora_adapter(plain, tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


def convert(*args):
    """The command line in a process of its own, with a Keras backend that cannot import: it needs none."""
    env = {**os.environ, "KERAS_BACKEND": "no-such-backend", "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "keras_gralora", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_the_command_line_converts_a_directory_peft_wrote(checkpoints, tmp_path):
    config = peft.GraloraConfig(
        r=4, gralora_k=2, hybrid_r=2, alpha=8, target_modules=hf.DECODER_TARGETS, init_weights=False
    )
    expected = hf.peft_directory("mistral", checkpoints["mistral"], tmp_path / "gralora", config)
    done = convert(tmp_path / "gralora", tmp_path / "lora", "--runtime", "vllm")
    assert done.returncode == 0, done.stderr
    assert "relative error" in done.stdout and "--max-lora-rank 16" in done.stdout
    assert (read_config(tmp_path / "lora")["peft_type"], read_config(tmp_path / "lora")["r"]) == ("LORA", 16)
    hf.assert_outputs_equal(hf.peft_outputs("mistral", checkpoints["mistral"], tmp_path / "lora"), expected)
    done = convert(tmp_path / "gralora", tmp_path / "small", "--rank", "3")
    errors = [float(line.split()[-1]) for line in done.stdout.splitlines()[1:-1]]
    assert done.returncode == 0 and len(errors) == 14 and all(0 < e < 1 for e in errors)
    before = listing(tmp_path / "small")
    done = convert(tmp_path / "lora", tmp_path / "small")  # a LoRA directory is no GraLoRA one
    assert done.returncode == 2 and "is a 'LORA' adapter; convert reads PEFT GraLoRA" in done.stderr
    done = convert(tmp_path / "gralora", tmp_path / "small", "--rank", "600", "--runtime", "vllm")
    assert done.returncode == 2 and "rank=600 is above the rank any update of" in done.stderr
    assert listing(tmp_path / "small") == before


def test_a_classifier_head_and_trained_biases_travel_as_peft_saves_them(checkpoints, tmp_path):
    classifier = keras_hub.models.BertTextClassifier(
        backbone_of("bert", checkpoints["bert"]), num_classes=3, preprocessor=None
    )
    keras_gralora.enable_gralora(
        classifier, r=4, k=2, bias="gralora_only", target_layer_names=["query", "value"], modules_to_save=["logits"]
    )
    train(classifier.trainable_weights)
    ours = hf.keras_outputs(classifier, "bert")
    keras_gralora.save_lora_adapter(classifier, tmp_path / "lora", rank=16)
    config = read_config(tmp_path / "lora")
    assert (config["modules_to_save"], config["bias"], config["r"]) == (["classifier"], "lora_only", 16)
    hf.assert_outputs_equal(ours, hf.peft_outputs("bert", checkpoints["bert"], tmp_path / "lora"))


def test_the_command_line_refuses_a_crafted_config_by_field(checkpoints, tmp_path):
    config = peft.GraloraConfig(r=4, gralora_k=2, target_modules=["q_proj"], init_weights=False)
    hf.peft_directory("llama", checkpoints["llama"], tmp_path / "gralora", config)
    path = tmp_path / "gralora" / "adapter_config.json"
    good = json.loads(path.read_text())
    for field, value, message in [
        ("modules_to_save", "classifier", "modules_to_save='classifier'"),
        ("r", 3, "r=3, gralora_k=2"),
        ("alpha", -1, "alpha=-1"),
        ("fan_in_fan_out", True, "Conv1D"),
    ]:
        path.write_text(json.dumps({**good, field: value}))
        done = convert(tmp_path / "gralora", tmp_path / "out")
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_without_adapter_name_the_default_or_the_only_adapter_is_written(tmp_path):
    """As the README writes it: one adapter named "math" saves with no adapter_name; two without "default" refuse."""
    import keras_hub

    def tiny():
        return keras_hub.models.GemmaBackbone(
            vocabulary_size=32,
            num_layers=1,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=8,
            intermediate_dim=16,
            head_dim=4,
        )

    backbone = tiny()
    backbone.enable_gralora(r=2, k=2, adapter_name="math")
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")
    keras_gralora.save_peft_adapter(backbone, tmp_path / "peft")
    assert rows and os.path.exists(tmp_path / "peft" / "adapter_config.json")
    backbone.enable_gralora(r=2, k=2, adapter_name="code")
    for save in (keras_gralora.save_lora_adapter, keras_gralora.save_peft_adapter):
        with pytest.raises(ValueError, match=r"has adapters \['math', 'code'\]; pass adapter_name="):
            save(backbone, tmp_path / "other")
    assert not os.path.exists(tmp_path / "other")
