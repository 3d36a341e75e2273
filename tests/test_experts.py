"""GraLoRA on expert weights: the numpy math per expert, KerasHub's MoE experts, their lifecycle and PEFT's LoRA.

`test_backbones.py` runs the MoE backbones with their experts adapted
through training, files and merges; `backbone_checks.py` holds those checks.
"""

import json
import os

import backbone_checks
import keras
import numpy as np
import pytest
import reference
from helpers import randomize, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_gralora
from keras_gralora.layers.experts import GraLoRAExpertWeights
from keras_gralora.surgery import inject

EXPERTS, HIDDEN, INNER = 3, 8, 12


class Experts(keras.layers.Layer):
    """A bank of experts as KerasHub writes them: raw `[E, in, out]` weights its own `call` multiplies by."""

    def __init__(self, num_experts, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts

    def build(self, _):
        self._gate = self.add_weight(shape=(self.num_experts, HIDDEN, INNER), name="gate")
        self._down = self.add_weight(shape=(self.num_experts, INNER, HIDDEN), name="down")

    def call(self, x):
        hidden = keras.ops.relu(keras.ops.einsum("th,ehm->etm", x, self._gate))
        return keras.ops.einsum("etm,emh->eth", hidden, self._down)


def _model(seed=0):
    inputs = keras.Input((HIDDEN,))
    outputs = Experts(EXPERTS, name="experts")(keras.layers.Dense(HIDDEN, name="proj")(inputs))
    model = keras.Model(inputs, outputs)
    randomize(model.weights, seed=seed, scale=0.3)
    return model


def _x(seed=1):
    return np.random.default_rng(seed).standard_normal((5, HIDDEN)).astype("float32")


def _numpy_forward(model, adapted=True):
    """The model in float64 numpy, each expert weight plus its adapter's delta (`reference.delta` per expert)."""
    proj, experts = model.get_layer("proj"), model.get_layer("experts")
    weights = {}
    for name in ("gate", "down"):
        weight = to_numpy(vars(experts)[f"_{name}"]).astype(np.float64)
        holder = getattr(experts, f"gralora_{name}", None)
        if adapted and holder is not None:
            config = holder.adapter("default").config
            a, b, *pair = (to_numpy(v).astype(np.float64) for v in holder.adapter("default").variables)
            weight = weight + np.stack(
                [reference.delta(a[e], b[e], config.scale, *(p[e] for p in pair)) for e in range(EXPERTS)]
            )
        weights[name] = weight
    x = _x() @ to_numpy(proj.kernel) + to_numpy(proj.bias)
    hidden = np.maximum(np.einsum("th,ehm->etm", x, weights["gate"]), 0)
    return np.einsum("etm,emh->eth", hidden, weights["down"])


@settings(max_examples=6, deadline=None)
@given(k=st.sampled_from([1, 2, 4]), s=st.integers(1, 2), hybrid=st.booleans())
def test_outputs_are_the_numpy_grid_per_expert(k, s, hybrid):
    """Each expert's weight is `W[e] + delta(a[e], b[e])`; k = 1 is plain LoRA per expert (PEFT's target_parameters)."""
    model = _model()
    paths = keras_gralora.enable_gralora(
        model, r=s * k, k=k, hybrid_r=2 if hybrid else 0, alpha=3.0, target_layer_names=[], target_parameters="all"
    )
    assert paths == ["experts/gate", "experts/down"]
    holder = model.get_layer("experts").gralora_gate
    assert [tuple(v.shape) for v in holder.adapter("default").variables][:2] == [
        (EXPERTS, k, HIDDEN // k, s * k),
        (EXPERTS, k, s * k, INNER // k),
    ]
    randomize(model.trainable_variables, seed=2, scale=0.3)
    np.testing.assert_allclose(to_numpy(model(_x())), _numpy_forward(model), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        to_numpy(holder.delta_matrix()),
        to_numpy(holder.adapted_kernel()) - to_numpy(holder.kernel),
        rtol=1e-4,
        atol=1e-5,
    )


def test_the_host_reads_its_weights_adapted_only_in_its_call():
    """Outside `call` the attribute is the stored weight: Keras' walks and other threads see no delta formed."""
    model = _model()
    keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=[], target_parameters=["gate"])
    experts = model.get_layer("experts")
    assert type(experts).__name__ == "GraLoRAExperts" and isinstance(experts, Experts)
    assert experts._gate is experts.gralora_gate.variable and isinstance(experts._gate, keras.Variable)
    assert [v.name for v in model.trainable_variables] == ["gralora_a_default", "gralora_b_default"]
    assert experts.gralora_gate.path == "experts/gate" and experts.gralora_gate.adapter_variables[0].path.startswith(
        "experts/gate/"
    )


def test_lifecycle_merge_disable_delete_and_unload():
    """Merge adds the deltas to the host's weight (and unmerge takes them out); unadapting restores its class."""
    model = _model()
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["proj"], target_parameters="all")
    randomize(model.trainable_variables, seed=3, scale=0.3)
    experts = model.get_layer("experts")
    base, adapted = to_numpy(experts._gate), to_numpy(model(_x()))
    keras_gralora.merge_gralora(model)
    assert not np.allclose(to_numpy(experts._gate), base)
    np.testing.assert_allclose(to_numpy(model(_x())), adapted, rtol=1e-4, atol=1e-4)
    keras_gralora.unmerge_gralora(model)
    np.testing.assert_allclose(to_numpy(experts._gate), base, atol=1e-6)
    with keras_gralora.disable_gralora(model):
        np.testing.assert_allclose(to_numpy(model(_x())), _numpy_forward(model, adapted=False), rtol=1e-4, atol=1e-4)
    summary = keras_gralora.gralora_summary(model, print_fn=None)
    gate = next(row for row in summary["layers"] if row["path"] == "experts/gate")
    assert (gate["in_features"], gate["out_features"], gate["parameters"]) == (HIDDEN, INNER, EXPERTS * 4 * (8 + 12))
    keras_gralora.merge_and_unload(model)
    assert type(experts) is Experts and not hasattr(experts, "gralora_gate")
    np.testing.assert_allclose(to_numpy(model(_x())), adapted, rtol=1e-4, atol=1e-4)


def test_delete_adapter_restores_the_plain_host():
    model = _model()
    before = to_numpy(model(_x()))
    keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=["proj"], target_parameters="all")
    keras_gralora.delete_adapter(model, "default")
    experts = model.get_layer("experts")
    assert type(experts) is Experts and not experts._layers
    np.testing.assert_allclose(to_numpy(model(_x())), before, atol=1e-6)


def test_patterns_and_k_auto_reach_expert_weights():
    """Pattern keys match `<layer path>/<weight name>`, as for any layer."""
    model = _model()
    keras_gralora.enable_gralora(
        model, r=4, k=2, target_layer_names=[], target_parameters="all", rank_pattern={"experts/down": 2}
    )
    experts = model.get_layer("experts")
    assert experts.gralora_gate.adapter("default").config.r == 4
    assert experts.gralora_down.adapter("default").config.r == 2


def test_files_and_keras_files_round_trip(tmp_path):
    """The adapter file loads into a fresh model (expert weights adapted from it); a `.keras` file keeps them."""
    model = _model()
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=[], target_parameters="all")
    randomize(model.trainable_variables, seed=4, scale=0.3)
    expected = to_numpy(model(_x()))
    keras_gralora.save_gralora_weights(model, tmp_path / "a.gralora.weights.h5")
    second = _model()
    assert sorted(keras_gralora.load_gralora_weights(second, tmp_path / "a.gralora.weights.h5")) == [
        "experts/down",
        "experts/gate",
    ]
    # The same order as in the model the file came from (in the weights' order, whatever order they came in)
    assert [layer.name for layer in inject.adapted_layers(second)] == [
        layer.name for layer in inject.adapted_layers(model)
    ]
    np.testing.assert_allclose(to_numpy(second(_x())), expected, rtol=1e-5, atol=1e-5)
    keras_gralora.merge_gralora(model)  # a merged model saves its weights unmerged
    model.save_weights(tmp_path / "model.weights.h5")
    third = _model(seed=9)
    keras_gralora.enable_gralora(third, r=4, k=2, target_layer_names=[], target_parameters="all")
    third.load_weights(tmp_path / "model.weights.h5")
    assert not third.get_layer("experts").gralora_gate.merged
    np.testing.assert_allclose(to_numpy(third(_x())), expected, rtol=1e-5, atol=1e-5)


def test_refusals_name_the_fix():
    model = _model()
    with pytest.raises(ValueError, match="dropout=0.1 on expert weights"):
        keras_gralora.enable_gralora(model, dropout=0.1, r=2, k=2, target_layer_names=[], target_parameters="all")
    with pytest.raises(ValueError, match=r"matched no expert weight.*\['down', 'gate'\]"):
        keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=["proj"], target_parameters=["gate_up_proj"])
    with pytest.raises(ValueError, match="has no expert weights"):
        plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="query")])
        keras_gralora.enable_gralora(plain, r=2, k=2, target_parameters="all")
    assert not keras_gralora.adapter_names(model)  # nothing changed


@pytest.mark.parametrize("name", ["qwen3_moe", "mixtral"])
def test_lora_export_loads_in_peft_with_target_parameters(name, tmp_path):
    """`save_lora_adapter` writes each expert weight as PEFT's LoRA of transformers' `gate_up_proj` / `down_proj`."""
    pytest.importorskip("peft")
    import hf_checkpoints as hf
    import keras_hub

    checkpoint = hf.write_checkpoint(name, str(tmp_path / "checkpoint"))
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    backbone.enable_gralora(r=4, k=2, hybrid_r=1, target_parameters="all")
    randomize(backbone.trainable_variables, seed=3, scale=0.3)
    ours = hf.keras_outputs(backbone, name)
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")
    with open(tmp_path / "lora" / "adapter_config.json") as file:
        config = json.load(file)
    assert config["target_parameters"] == [
        f"model.layers.{i}.mlp.experts.{p}" for i in (0, 1) for p in ("down_proj", "gate_up_proj")
    ]
    assert {row.exact_rank for row in rows if row.parameter} == ({9, 18} if name == "mixtral" else {9})
    base = hf.hf_outputs(hf.load(name, checkpoint))["sequence_output"]
    theirs = hf.peft_outputs(name, checkpoint, str(tmp_path / "lora"))
    assert np.abs(theirs["sequence_output"] - base).max() > 0.1  # the adapter moved them
    hf.assert_outputs_equal(ours, theirs)
    with pytest.raises(ValueError, match="written exactly"):
        keras_gralora.save_lora_adapter(backbone, tmp_path / "served", runtime="vllm")
    with pytest.raises(ValueError, match="or expert weights; PEFT's GraLoRA adapts linear modules only"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "gralora")
    assert not os.path.exists(tmp_path / "served") and not os.path.exists(tmp_path / "gralora")


@pytest.mark.parametrize("name, experts", [("qwen3_moe", 4), ("gemma4_moe", 18)])
def test_moe_backbone_with_experts_trains_reloads_and_merges(name, experts):
    """A tiny KerasHub MoE backbone with every expert weight adapted (the sweep runs the other MoE families).

    Gemma 4's tiny test configuration has no MoE block: `backbone_checks.VARIANTS` turns it on.
    """
    result = backbone_checks.check_backbone(name, "all", experts=True)
    assert result.experts == experts


def test_holder_has_no_forward_of_its_own():
    model = _model()
    keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names=[], target_parameters="all")
    holder = model.get_layer("experts").gralora_gate
    assert isinstance(holder, GraLoRAExpertWeights) and not holder.ROUTABLE
    with pytest.raises(TypeError, match="reads `adapted_kernel\\(\\)`"):
        holder(_x())


def test_keras_files_and_merged_export_of_a_moe_backbone(tmp_path):
    """A `.keras` file reloads the adapted experts; `export_merged` holds plain KerasHub experts with merged weights."""
    model, inputs = backbone_checks.build("mixtral")
    model.enable_gralora(r=4, k=2, target_parameters="all")
    randomize(model.trainable_variables, seed=5, scale=0.3)
    adapted = backbone_checks.outputs(model, inputs)
    model.save(tmp_path / "adapted.keras")
    reloaded = keras.saving.load_model(tmp_path / "adapted.keras")
    assert sum(isinstance(layer, GraLoRAExpertWeights) for layer in reloaded._flatten_layers()) == 6
    for found, expected in zip(backbone_checks.outputs(reloaded, inputs), adapted):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    keras_gralora.export_merged(model, tmp_path / "merged.keras")
    merged = keras.saving.load_model(tmp_path / "merged.keras")
    assert not any(isinstance(layer, GraLoRAExpertWeights) for layer in merged._flatten_layers())
    assert all(type(layer).__name__ != "GraLoRAMixtralMoeExperts" for layer in merged._flatten_layers())
    for found, expected in zip(backbone_checks.outputs(merged, inputs), adapted):
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)
    assert type(model.get_layer("transformer_layer_0")._sparse_moe_block.expert_bank).__name__ == (
        "GraLoRAMixtralMoeExperts"  # the live model is unchanged
    )
