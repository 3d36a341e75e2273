"""enable_gralora / merge_gralora / gralora_summary on plain Keras models."""

import re

import keras
import numpy as np
import pytest
from helpers import random_input, to_numpy
from keras import ops

import keras_gralora
from keras_gralora import GraLoRADense, GraLoRAEinsumDense, enable_gralora
from keras_gralora.surgery import inject


def functional_model():
    inputs = keras.Input((6, 16))
    x = keras.layers.EinsumDense("btd,dnh->btnh", (None, 2, 8), bias_axes="nh", name="query")(inputs)
    x = keras.layers.Reshape((6, 16))(x)
    x = keras.layers.Dense(32, activation="relu", name="ffn")(x)
    x = keras.layers.Dense(16, name="value")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


class Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.query = keras.layers.Dense(16, name="query")
        self.mlp = keras.Sequential([keras.layers.Dense(32, name="up"), keras.layers.Dense(16, name="down")])

    def call(self, x):
        return self.mlp(self.query(x))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.blocks = [Block(name="block_0"), Block(name="block_1")]
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def subclassed_model():
    model = Subclassed()
    model(random_input((2, 16)))
    return model


def sequential_model():
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, name="query"), keras.layers.Dense(8, name="value")]
    )


def test_default_targets_keep_layer_objects_and_freeze_everything_else():
    model = functional_model()
    query, value = model.get_layer("query"), model.get_layer("value")
    x = random_input((2, 6, 16))
    before = to_numpy(model(x))
    paths = enable_gralora(model, r=4, k=2)
    assert paths == ["query", "value"]
    assert model.get_layer("query") is query and isinstance(query, GraLoRAEinsumDense)
    assert isinstance(value, GraLoRADense) and value.path == "value"
    assert {v.name for v in model.trainable_weights} == {"gralora_a_default", "gralora_b_default"}
    assert len(model.trainable_weights) == 4
    np.testing.assert_array_equal(to_numpy(model(x)), before)  # B starts at zero


@pytest.mark.parametrize(
    "build_model, targets, expected",
    [
        (functional_model, "all", ["query", "ffn", "value"]),
        (functional_model, ".*(ffn|query)", ["query", "ffn"]),
        (functional_model, ["ffn"], ["ffn"]),
        (
            subclassed_model,
            "all",
            [
                "subclassed/block_0/query",
                "subclassed/block_0/*/up",
                "subclassed/block_0/*/down",
                "subclassed/block_1/query",
                "subclassed/block_1/*/up",
                "subclassed/block_1/*/down",
                "subclassed/head",
            ],
        ),
        (
            subclassed_model,
            r".*block_1/.*",
            ["subclassed/block_1/query", "subclassed/block_1/*/up", "subclassed/block_1/*/down"],
        ),
        (sequential_model, None, ["*/query", "*/value"]),
    ],
)
def test_target_selection(build_model, targets, expected):
    model = build_model()
    paths = enable_gralora(model, r=4, k=2, target_layer_names=targets)
    # Keras numbers auto-named Sequentials per session, hence the `*`.
    assert sorted(re.sub(r"sequential(_\d+)?", "*", p) for p in paths) == sorted(expected)
    assert len(model.trainable_weights) == 2 * len(expected)


def test_training_moves_only_the_adapters_and_merge_keeps_outputs():
    model = subclassed_model()
    enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names="all")
    before = {v.path: to_numpy(v).copy() for v in model.weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x, y = random_input((16, 16)), random_input((16, 2), seed=2)
    history = model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for v in model.weights:
        assert (not np.array_equal(to_numpy(v), before[v.path])) == v.name.startswith("gralora_"), v.path
    expected = model.predict(x, verbose=0)
    keras_gralora.merge_gralora(model)
    merged = model.predict(x, verbose=0)  # compiled functions were reset by the merge
    np.testing.assert_allclose(merged, expected, atol=1e-4)
    for layer in inject.adapted_layers(model):
        _, b, _, hybrid_b = layer.adapter("default").variables
        b.assign(np.zeros(b.shape, "float32"))
        hybrid_b.assign(np.zeros(hybrid_b.shape, "float32"))
    np.testing.assert_allclose(model.predict(x, verbose=0), merged, atol=1e-6)


def test_nothing_matched_lists_the_layer_names():
    model = functional_model()
    with pytest.raises(
        ValueError,
        match=r"target_layer_names=\['qkv'\] matched no adaptable layer.*"
        r"\['ffn', 'head', 'query', 'value'\]",
    ):
        enable_gralora(model, target_layer_names=["qkv"])


@pytest.mark.parametrize("targets", [5, ["query", 3], {"query": 1}])
def test_target_layer_names_of_the_wrong_type_are_rejected(targets):
    model = functional_model()
    with pytest.raises(ValueError, match=r"target_layer_names=.* is not a list of layer names"):
        enable_gralora(model, target_layer_names=targets)
    assert not inject.adapted_layers(model)


class WithUnusedDense(keras.layers.Layer):
    """A layer holding a Dense its call never uses (SAM's prompt encoder has such), so Keras never builds it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.used = keras.layers.Dense(16, name="used")
        self.unused = keras.layers.Dense(16, name="unused")

    def call(self, x):
        return self.used(x)


def test_layers_no_forward_pass_builds_are_skipped_by_all_and_refused_by_name():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, WithUnusedDense(name="block")(inputs))
    assert enable_gralora(model, r=4, k=2, target_layer_names="all") == ["block/used"]
    with pytest.raises(ValueError, match=r"Dense 'unused': the layer is not built, so no forward pass .* uses it"):
        enable_gralora(model, r=4, k=2, target_layer_names=["unused"], adapter_name="other")


def test_enabling_a_layer_twice_is_an_error():
    model = functional_model()
    enable_gralora(model, r=4, k=2)
    with pytest.raises(ValueError, match=r"already has an adapter named 'default'.*Choose a new adapter_name"):
        enable_gralora(model, r=4, k=2)


def test_a_bad_target_changes_nothing():
    model = functional_model()
    trainable = [v.path for v in model.trainable_weights]
    with pytest.raises(ValueError, match=r"Dense 'head': its output features \(3\) are not divisible by k=2"):
        enable_gralora(model, r=4, k=2, target_layer_names=["ffn", "head"])
    assert not inject.adapted_layers(model)
    assert [v.path for v in model.trainable_weights] == trainable
    with pytest.raises(ValueError, match=r"enable_gralora: `r` must be divisible by `k`"):
        enable_gralora(model, r=3, k=2)
    assert [v.path for v in model.trainable_weights] == trainable


def test_summary_counts_like_peft():
    model = functional_model()
    enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names=["query", "ffn"])
    lines = []
    summary = keras_gralora.gralora_summary(model, print_fn=lines.append)
    assert [(row["path"], row["in_features"], row["out_features"], row["parameters"]) for row in summary["layers"]] == [
        ("query", 16, 16, 6 * 32),
        ("ffn", 16, 32, 6 * 48),
    ]
    assert summary["trainable"] == 6 * 32 + 6 * 48
    assert summary["total"] == model.count_params()
    assert "trainable params: 480 ||" in lines[0]
    assert lines[0].splitlines()[1].split()[:2] == ["query", "default*"]


def test_mixed_bfloat16_training_keeps_float32_adapters():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = functional_model()
    enable_gralora(model, r=4, k=2, target_layer_names="all")
    x, y = random_input((8, 6, 16)), random_input((8, 6, 3), seed=2)
    assert ops.dtype(model(x)) == "bfloat16"
    assert {v.dtype for v in model.trainable_weights} == {"float32"}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
