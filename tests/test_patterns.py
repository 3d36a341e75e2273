"""Per-layer rank, alpha and k: PEFT's pattern rule, k="auto", saved forms, refusals before any change."""

import keras
import numpy as np
import pytest
import reference
from helpers import assert_unchanged, layouts_model, random_input, snapshot, tiny_gemma, to_numpy

import keras_gralora
from keras_gralora.surgery.patterns import paper_k

TARGETS = ["dense", "query", "key", "out"]
PATTERNS = dict(rank_pattern={"dense": 8, "qu.ry": 2}, alpha_pattern={"key": 3.0}, k_pattern={"out": 4})
EXPECTED = {"dense": (8, 2, None), "query": (2, 2, None), "key": (4, 2, 3.0), "out": (4, 4, None)}  # (r, k, alpha)


def plain_model():
    model = layouts_model()
    for name in keras_gralora.adapter_names(model):
        keras_gralora.delete_adapter(model, name)
    return model


def adapted(model, name="default"):
    return {
        layer.path: layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras_gralora.GraLoRAAdapter) and name in layer.adapter_names
    }


def settings(model, name="default"):
    return {
        path: (c.r, c.k, c.alpha) for path, layer in adapted(model, name).items() for c in [layer.adapter(name).config]
    }


def randomize(model):
    rng = np.random.default_rng(0)
    for v in model.weights:
        if "gralora" in v.path:
            v.assign(rng.normal(size=v.shape).astype("float32"))


def test_each_layer_computes_the_reference_gralora_of_the_settings_its_pattern_gives():
    model = plain_model()
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=TARGETS, **PATTERNS)
    assert settings(model) == EXPECTED
    randomize(model)
    for path, layer in adapted(model).items():
        r, k, alpha = EXPECTED[path]
        a, b = reference.adapter_arrays(layer)
        assert a.shape[0] == k and a.shape[2] == r
        scale = 2.0 if alpha is None else alpha / r
        np.testing.assert_allclose(to_numpy(layer.delta_matrix()), reference.delta(a, b, scale), rtol=1e-5, atol=1e-4)
    summary = keras_gralora.gralora_summary(model, None)
    rows = {row["path"]: (row["r"], row["k"], row["alpha"]) for row in summary["layers"]}
    assert rows == {path: (r, k, 2.0 * r if alpha is None else alpha) for path, (r, k, alpha) in EXPECTED.items()}


@pytest.mark.parametrize("family", ["bert", "gemma", "llama"])
@pytest.mark.parametrize("r", [8, 64])
def test_k_auto_takes_the_papers_k_where_it_divides_and_says_so(family, r, capsys):
    pytest.importorskip("keras_hub")
    import importlib

    setup = importlib.import_module(f"tests.backbones.{family}")
    kwargs, _ = setup.setup()
    backbone = setup.BACKBONE(
        **{**kwargs, "hidden_dim": 16, "intermediate_dim": 32}
        if family != "bert"
        else {**kwargs, "hidden_dim": 8, "intermediate_dim": 24}
    )
    backbone.enable_gralora(r=r, k="auto", target_layer_names="all")
    chosen = settings(backbone)
    for path, layer in adapted(backbone).items():
        shape = type(layer).matrix_shape_of(layer)
        assert chosen[path][1] == paper_k(r, *shape), path
        preferred = 2 if r <= 32 else 4
        assert chosen[path][1] == preferred or any(size % preferred for size in shape)
    assert "k='auto'" in capsys.readouterr().out


def test_patterns_survive_the_adapter_file_keras_saving_and_presets(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone, _ = tiny_gemma()
    backbone.enable_gralora(
        r=4,
        k=2,
        target_layer_names="all",
        rank_pattern={"query": 8, "ffw_.*": 2},
        k_pattern={"attention_output": 4},
        alpha_pattern={"key": 5.0},
    )
    randomize(backbone)
    want = settings(backbone)
    assert len(set(want.values())) > 2
    path = str(tmp_path / "patterned.gralora.weights.h5")
    backbone.save_gralora_weights(path)
    fresh, _ = tiny_gemma()
    fresh.load_gralora_weights(path)
    assert settings(fresh) == want
    backbone.save(tmp_path / "backbone.keras")
    reloaded = keras.saving.load_model(tmp_path / "backbone.keras")
    assert settings(reloaded) == want
    backbone.save_to_preset(str(tmp_path / "preset"))
    assert settings(keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))) == want
    inputs = {"token_ids": np.array([[3, 5, 7, 0]]), "padding_mask": np.array([[1, 1, 1, 0]])}
    for other in (fresh, reloaded):
        np.testing.assert_allclose(to_numpy(other(inputs)), to_numpy(backbone(inputs)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="save_lora_adapter"):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "peft")
    keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")  # per-module ranks: PEFT's rank_pattern


@pytest.mark.parametrize(
    "patterns, match",
    [
        (dict(rank_pattern={"nothing_here": 8}), "matches none of the targeted layers"),
        (dict(k_pattern={"dense": 3}), r"layer 'dense' \(k=3 from k_pattern\['dense'\]\)"),
        (dict(rank_pattern={"(": 8}), "is not a regular expression"),
        (dict(alpha_pattern={"key": "big"}), "must be a positive number"),
        (dict(rank_pattern={"key": 2.5}), "must be a positive integer"),
        (dict(rank_pattern=["key"]), "must map regular expressions"),
    ],
)
def test_bad_patterns_are_refused_by_name_before_any_change(patterns, match):
    model = plain_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=TARGETS, **patterns)
    assert not adapted(model) and keras_gralora.adapter_names(model) == []
    assert_unchanged(model, before)


def test_outputs_follow_the_patterned_adapter():
    model = plain_model()
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=TARGETS, **PATTERNS)
    randomize(model)
    x = random_input((2, 5, 16))
    with keras_gralora.disable_gralora(model):
        base = to_numpy(model(x))
    assert np.abs(to_numpy(model(x)) - base).max() > 1e-3
