"""GraLoRA on tiny, randomly initialised KerasHub backbones and tasks (nothing downloads)."""

import helpers
import keras
import numpy as np
import pytest

import keras_gralora
from keras_gralora import GraLoRAEinsumDense
from keras_gralora.surgery import inject

keras_hub = pytest.importorskip("keras_hub")
models = keras_hub.models

VOCAB, LAYERS, SEQ = 48, 2, 8
DECODER = dict(vocabulary_size=VOCAB, num_layers=LAYERS, hidden_dim=16, intermediate_dim=32)
LLAMA_LIKE = dict(DECODER, num_query_heads=4, num_key_value_heads=2)

# name: (backbone factory, task factory, expected EinsumDense equation of the adapted query)
CASES = {
    "gpt2": (
        lambda: models.GPT2Backbone(num_heads=2, max_sequence_length=SEQ, **DECODER),
        lambda b: models.GPT2CausalLM(b, preprocessor=None),
        "abc,cde->abde",
    ),
    "llama": (
        lambda: models.LlamaBackbone(**LLAMA_LIKE),
        lambda b: models.LlamaCausalLM(b, preprocessor=None),
        "bqm,muh->bquh",
    ),
    "gemma": (
        lambda: models.GemmaBackbone(num_query_heads=2, num_key_value_heads=1, head_dim=8, **DECODER),
        lambda b: models.GemmaCausalLM(b, preprocessor=None),
        "btd,ndh->btnh",
    ),
    "qwen": (
        lambda: models.QwenBackbone(**LLAMA_LIKE),
        lambda b: models.QwenCausalLM(b, preprocessor=None),
        "bqm,muh->bquh",
    ),
    "bert": (
        lambda: models.BertBackbone(num_heads=2, max_sequence_length=SEQ, **DECODER),
        lambda b: models.BertTextClassifier(b, num_classes=2, preprocessor=None),
        "abc,cde->abde",
    ),
}


def batch(name):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, VOCAB, (4, SEQ)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    if name == "bert":
        x["segment_ids"] = np.zeros_like(token_ids)
        return x, np.array([0, 1, 1, 0])
    return x, np.roll(token_ids, -1, axis=1)


def to_numpy(x):
    return helpers.to_numpy(x, np.float32)  # bfloat16 outputs compare as float32


@pytest.mark.parametrize("name", list(CASES))
def test_enable_fit_merge_on_a_keras_hub_task(name):
    make_backbone, make_task, query_equation = CASES[name]
    backbone = make_backbone()
    task = make_task(backbone)
    x, y = batch(name)
    head = [v for v in task.trainable_weights if not any(v is w for w in backbone.weights)]

    paths = backbone.enable_gralora(r=4, k=2)
    assert len(paths) == 2 * LAYERS  # query and value of each layer
    adapted = inject.adapted_layers(backbone)
    assert {layer.name for layer in adapted} == {"query", "value"}
    assert {layer.equation for layer in adapted if layer.name == "query"} == {query_equation}
    assert all(isinstance(layer, GraLoRAEinsumDense) for layer in adapted)
    adapters = [v for layer in adapted for v in layer.adapter_variables]
    assert _ids(backbone.trainable_weights) == _ids(adapters)
    assert _ids(task.trainable_weights) == _ids(adapters + head)  # the head keeps training

    frozen = {v.path: to_numpy(v).copy() for v in backbone.weights if not v.trainable}
    start = {v.path: to_numpy(v).copy() for v in adapters}
    task.compile(optimizer=keras.optimizers.Adam(2e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = task.fit(x, y, epochs=6, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.array_equal(to_numpy(v), start[v.path]) for v in adapters)
    assert all(np.array_equal(to_numpy(v), frozen[v.path]) for v in backbone.weights if not v.trainable)

    expected = task.predict(x, verbose=0)
    keras_gralora.merge_gralora(task)  # the task, so its compiled functions are reset too
    np.testing.assert_allclose(task.predict(x, verbose=0), expected, atol=1e-4)
    assert all(layer.merged for layer in adapted)


def _ids(variables):
    return sorted(id(v) for v in variables)


def gpt2_backbone():
    keras.utils.set_random_seed(1)  # the same base weights every time
    return CASES["gpt2"][0]()


def adapted_gpt2(seed=0):
    backbone = gpt2_backbone()
    backbone.enable_gralora(r=4, k=2, hybrid_r=2)
    helpers.randomize(backbone.trainable_weights, seed=seed, scale=0.2)
    return backbone


def test_backbone_and_task_files_reload_with_identical_outputs(tmp_path):
    backbone = adapted_gpt2()
    x, _ = batch("gpt2")
    expected = to_numpy(backbone(x))

    backbone.save(tmp_path / "backbone.keras")
    loaded = keras.models.load_model(tmp_path / "backbone.keras")
    np.testing.assert_array_equal(to_numpy(loaded(x)), expected)
    assert len(inject.adapted_layers(loaded)) == 2 * LAYERS
    assert _ids(loaded.trainable_weights) == _ids(
        [v for layer in inject.adapted_layers(loaded) for v in layer.adapter_variables]
    )

    task = models.GPT2CausalLM(backbone, preprocessor=None)
    task_expected = to_numpy(task(x))
    task.save(tmp_path / "task.keras")
    np.testing.assert_array_equal(to_numpy(keras.models.load_model(tmp_path / "task.keras")(x)), task_expected)

    backbone.save_weights(tmp_path / "backbone.weights.h5")
    fresh = gpt2_backbone()
    fresh.load_weights(tmp_path / "backbone.weights.h5")  # enables GraLoRA from the file first
    np.testing.assert_array_equal(to_numpy(fresh(x)), expected)


def test_backbone_adapter_file_round_trip(tmp_path):
    backbone = adapted_gpt2()
    x, _ = batch("gpt2")
    backbone.save_gralora_weights(tmp_path / "task.gralora.weights.h5")
    fresh = gpt2_backbone()
    assert len(fresh.load_gralora_weights(tmp_path / "task.gralora.weights.h5")) == 2 * LAYERS
    np.testing.assert_array_equal(to_numpy(fresh(x)), to_numpy(backbone(x)))


def test_merged_backbone_export_loads_without_keras_gralora(tmp_path):
    backbone = adapted_gpt2()
    x, _ = batch("gpt2")
    keras_gralora.export_merged(backbone, tmp_path / "served.keras")
    np.savez(tmp_path / "x.npz", **x)
    helpers.run_python(
        """
        import sys, numpy as np, keras, keras_hub
        model = keras.models.load_model(sys.argv[1] + "/served.keras")
        assert "keras_gralora" not in sys.modules
        x = dict(np.load(sys.argv[1] + "/x.npz"))
        np.save(sys.argv[1] + "/y.npy", keras.ops.convert_to_numpy(model(x)))
        import keras_gralora  # after keras_hub: the methods are added at once
        assert keras_hub.models.Backbone.enable_gralora is keras_gralora.integration.hub.enable_gralora
        """,
        keras.backend.backend(),
        tmp_path,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), to_numpy(backbone(x)), atol=1e-4)


def test_keras_gralora_imports_neither_keras_nor_keras_hub_and_installs_when_they_are_imported():
    helpers.run_python(
        """
        import sys, keras_gralora
        assert "keras" not in sys.modules and "keras_hub" not in sys.modules
        import keras_hub
        assert keras_gralora.enable_gralora.__module__ == "keras_gralora.surgery.inject"
        import keras
        assert getattr(keras.Model.make_train_function, "_gralora_guard", False)  # `integration/guards.py`
        backbone_class = keras_hub.models.Backbone
        assert backbone_class.enable_gralora is keras_gralora.integration.hub.enable_gralora
        assert backbone_class.save_own_variables.__name__ == "save_own_variables" and backbone_class._gralora_installed
        assert not any(type(finder).__name__ == "_AfterImport" for finder in sys.meta_path)  # hooks removed
        """,
        keras.backend.backend(),
    )


def test_layers_to_transform_adapts_only_the_named_blocks():
    backbone = CASES["llama"][0]()
    paths = backbone.enable_gralora(r=4, k=2, target_layer_names=["query", "value"], layers_to_transform=1)
    assert paths == [p for p in paths if p.startswith("transformer_layer_1/")] and len(paths) == 2
    paths = keras_gralora.enable_gralora(
        backbone,
        r=4,
        k=2,
        target_layer_names=["key"],
        adapter_name="k0",
        layers_to_transform=[0],
        layers_pattern="transformer_layer",
    )
    assert paths == ["transformer_layer_0/self_attention/key"]
    for kwargs, message in [
        (dict(layers_to_transform=[2]), r"blocks \[2\] are out of range; 'llama_backbone.*' has blocks \[0, 1\]"),
        (dict(layers_to_transform=0, target_layer_names=".*query"), r"works with a list of target layer names only"),
        (dict(layers_to_transform=[-1]), r"must be a non-negative int or a non-empty list of them"),
        (dict(layers_to_transform=[0], layers_pattern="decoder_block"), r"no layer path .* has a block segment"),
    ]:
        with pytest.raises(ValueError, match=message):
            keras_gralora.enable_gralora(
                backbone, r=4, k=2, adapter_name="bad", **{"target_layer_names": ["query"], **kwargs}
            )
    assert keras_gralora.adapter_names(backbone) == ["default", "k0"]


def two_adapter_gpt2():
    backbone = adapted_gpt2()
    backbone.enable_gralora(r=8, k=4, target_layer_names=["query", "key"], adapter_name="second", bias="gralora_only")
    keras_gralora.set_active_adapters(backbone, ["second", "default"])
    helpers.randomize(backbone.trainable_weights, seed=4, scale=0.2)
    return backbone


def assert_same_adapters(loaded, backbone, x):
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(backbone(x)))
    assert keras_gralora.active_adapters(loaded) == ["second", "default"]
    for ours, theirs in zip(inject.adapted_layers(loaded), inject.adapted_layers(backbone)):
        assert ours.path == theirs.path and ours.adapter_names == theirs.adapter_names
        assert [ours.adapter(n).config for n in ours.adapter_names] == [
            theirs.adapter(n).config for n in theirs.adapter_names
        ]
    assert {v.path for v in loaded.trainable_weights} == {v.path for v in backbone.trainable_weights}


def test_keras_weights_and_preset_files_keep_every_adapter_and_its_active_state(tmp_path):
    backbone = two_adapter_gpt2()
    x, _ = batch("gpt2")
    backbone.save(tmp_path / "backbone.keras")
    assert_same_adapters(keras.models.load_model(tmp_path / "backbone.keras"), backbone, x)
    backbone.save_weights(tmp_path / "backbone.weights.h5")
    fresh = gpt2_backbone()
    fresh.load_weights(tmp_path / "backbone.weights.h5")
    assert_same_adapters(fresh, backbone, x)
    backbone.save_to_preset(str(tmp_path / "preset"))
    assert_same_adapters(models.Backbone.from_preset(str(tmp_path / "preset")), backbone, x)


def test_summary_lists_blocks_in_model_order():
    backbone = two_adapter_gpt2()
    rows = keras_gralora.gralora_summary(backbone, print_fn=None)["layers"]
    query = [(r["adapter"], r["active"]) for r in rows if r["path"] == "transformer_layer_0/self_attention/query"]
    assert query == [("default", True), ("second", True)]
    assert rows[0]["path"].startswith("transformer_layer_0/")
    assert [row["path"].split("/")[0] for row in rows] == sorted(row["path"].split("/")[0] for row in rows)


@pytest.mark.parametrize("mode", ["int4"])  # int8 trains in test_quantized.py; this one is slow on tensorflow
def test_quantized_gemma_task_trains_adapters_only_and_its_files_round_trip(tmp_path, mode):
    make_backbone, make_task, _ = CASES["gemma"]
    keras.utils.set_random_seed(1)
    backbone = make_backbone()
    task = make_task(backbone)
    backbone.quantize(mode)
    backbone.enable_gralora(r=4, k=2)
    integers = {v.path: to_numpy(v).copy() for v in backbone.weights if v.dtype == "int8"}
    assert integers  # the attention kernels are int8 (int4 packed two to a byte)
    x, y = batch("gemma")
    task.compile(optimizer=keras.optimizers.Adam(2e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    adapters = {v.path: to_numpy(v).copy() for v in backbone.trainable_weights}
    history = task.fit(x, y, epochs=4, batch_size=4, verbose=0)
    # (int4 is weight-only. Keras' int8 also quantizes each layer's inputs, W8A8: on torch neither its own
    # LoRA nor GraLoRA lowers this tiny model's loss within a few steps; see the README.)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.array_equal(to_numpy(v), adapters[v.path]) for v in backbone.trainable_weights)
    for v in backbone.weights:
        if v.path in integers:
            np.testing.assert_array_equal(to_numpy(v), integers[v.path], err_msg=v.path)
    expected = to_numpy(backbone(x))
    backbone.save(tmp_path / "q.keras")
    np.testing.assert_array_equal(to_numpy(keras.models.load_model(tmp_path / "q.keras")(x)), expected)
    backbone.save_weights(tmp_path / "q.weights.h5")
    keras.utils.set_random_seed(2)
    fresh = make_backbone()
    fresh.quantize(mode)
    fresh.load_weights(tmp_path / "q.weights.h5")  # enables the adapters from the file's settings first
    np.testing.assert_array_equal(to_numpy(fresh(x)), expected)
    backbone.save_to_preset(str(tmp_path / "preset"))  # KerasHub's loader keeps the quantization (hub.py)
    reloaded = models.Backbone.from_preset(str(tmp_path / "preset"))
    assert reloaded.get_layer("token_embedding").quantization_mode == mode
    np.testing.assert_array_equal(to_numpy(reloaded(x)), expected)
