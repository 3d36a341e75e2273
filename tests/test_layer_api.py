"""The layers as Keras objects: validation, config, saving, compilation, dtypes, dropout."""

import keras
import numpy as np
import pytest
from helpers import random_input, to_numpy
from keras import ops

from keras_gralora import GraLoRADense, GraLoRAEinsumDense


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"r": 0}, r"`r` must be a positive integer, got r=0"),
        ({"r": -4}, r"got r=-4"),
        ({"r": 2.5}, r"got r=2.5"),
        ({"k": 0}, r"`k` must be a positive integer, got k=0"),
        ({"hybrid_r": -1}, r"`hybrid_r` must be a non-negative integer, got hybrid_r=-1"),
        ({"r": 6, "k": 4}, r"`r` must be divisible by `k`.*r=6, k=4\. Use r=8"),
        ({"alpha": float("nan")}, r"`alpha` must be a finite positive number.*alpha=nan"),
        ({"alpha": float("inf")}, r"alpha=inf"),
        ({"alpha": 0}, r"alpha=0"),
        ({"alpha": -2.0}, r"alpha=-2.0"),
        ({"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\), got dropout=1.0"),
        ({"kernel_constraint": "non_neg"}, r"kernel_constraint=.*Remove the kernel constraint"),
        ({"lora_rank": 4}, r"Keras LoRA \(lora_rank=4\) and GraLoRA cannot be combined"),
    ],
)
def test_bad_settings_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=rf"GraLoRADense 'proj': .*{message}"):
        GraLoRADense(16, name="proj", **{"r": 4, "k": 2, **kwargs})
    with pytest.raises(ValueError, match=rf"GraLoRAEinsumDense 'proj': .*{message}"):
        GraLoRAEinsumDense("btd,de->bte", (None, 16), name="proj", **{"r": 4, "k": 2, **kwargs})


@pytest.mark.parametrize(
    "units, in_features, message",
    [
        (16, 10, r"its input features \(10\) are not divisible by k=4"),
        (10, 16, r"its output features \(10\) are not divisible by k=4"),
    ],
)
def test_features_not_divisible_by_k_are_rejected_at_build(units, in_features, message):
    layer = GraLoRADense(units, r=4, k=4, name="proj")
    with pytest.raises(ValueError, match=rf"GraLoRADense 'proj': .*{message}"):
        layer.build((None, in_features))
    einsum = GraLoRAEinsumDense("btd,dnh->btnh", (None, 2, units // 2), r=4, k=4, name="proj")
    with pytest.raises(ValueError, match=rf"GraLoRAEinsumDense 'proj': .*{message}"):
        einsum.build((None, 3, in_features))


def test_get_config_round_trips_every_argument():
    layer = GraLoRADense(
        24,
        r=6,
        k=3,
        hybrid_r=2,
        alpha=5.0,
        dropout=0.1,
        init_weights=False,
        activation="relu",
        use_bias=False,
        name="proj",
    )
    config = layer.get_config()
    assert config["adapters"] == [
        {
            "name": "default",
            "r": 6,
            "k": 3,
            "hybrid_r": 2,
            "alpha": 5.0,
            "dropout": 0.1,
            "init_weights": False,
            "bias": "none",
            "modules_to_save": [],
        }
    ]
    assert config["active_adapters"] == ["default"]
    clone = GraLoRADense.from_config(config)
    assert clone.get_config() == config
    einsum = GraLoRAEinsumDense("btd,ndh->btnh", (None, 4, 6), r=4, k=2, hybrid_r=1, alpha=3, bias_axes="h")
    assert GraLoRAEinsumDense.from_config(einsum.get_config()).get_config() == einsum.get_config()


def _functional_model():
    inputs = keras.Input((5, 16))
    x = GraLoRADense(32, r=8, k=2, hybrid_r=2, activation="gelu", init_weights=False)(inputs)
    x = GraLoRAEinsumDense("btd,ndh->btnh", (None, 4, 8), r=4, k=4, bias_axes="h", init_weights=False)(x)
    x = GraLoRAEinsumDense("btnh,nhd->btd", (None, 16), r=4, k=2, init_weights=False)(x)
    return keras.Model(inputs, x)


def _sequential_model():
    return keras.Sequential(
        [
            keras.Input((12,)),
            GraLoRADense(24, r=4, k=2, init_weights=False, activation="relu"),
            GraLoRADense(6, r=2, k=2, dropout=0.2, init_weights=False),
        ]
    )


@pytest.mark.parametrize("build_model, x_shape", [(_functional_model, (3, 5, 16)), (_sequential_model, (4, 12))])
def test_keras_file_round_trip(tmp_path, build_model, x_shape):
    model = build_model()
    x = random_input(x_shape)
    expected = to_numpy(model(x))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(to_numpy(loaded(x)), expected)

    def described(variables):
        return [(v.path.split("/")[-2:], tuple(v.shape)) for v in variables]

    assert described(loaded.trainable_variables) == described(model.trainable_variables)
    assert all(v.name.startswith("gralora_") for v in loaded.trainable_variables)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]


def test_merged_model_saves_unmerged_and_reloads_with_the_same_outputs(tmp_path):
    model = _functional_model()
    x = random_input((3, 5, 16))
    expected = to_numpy(model(x))
    for layer in model.layers[1:]:
        layer.merge()
    model.save(tmp_path / "merged.keras")
    loaded = keras.models.load_model(tmp_path / "merged.keras")
    assert not any(layer.merged for layer in loaded.layers[1:])
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 16), (2, 2, 3, 16)])  # rank 3 compiles in the training test below
def test_jit_compiled_forward_equals_eager(shape):
    inputs = keras.Input(shape[1:])
    outputs = GraLoRADense(8, r=4, k=2, hybrid_r=2, init_weights=False)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(jit_compile=True)
    x = random_input(shape)
    np.testing.assert_allclose(model.predict(x, verbose=0), to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_training_updates_only_the_adapters_under_jit():
    model = _functional_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=True)
    before = {v.path: to_numpy(v).copy() for v in model.weights}
    x, y = random_input((8, 5, 16)), random_input((8, 5, 16), seed=2)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for v in model.weights:
        changed = not np.array_equal(to_numpy(v), before[v.path])
        assert changed == v.name.startswith("gralora_"), v.path


def test_dropout_applies_to_the_adapter_input_only_and_only_in_training():
    layer = GraLoRADense(16, r=4, k=2, dropout=0.5, init_weights=False)
    x = random_input((64, 16))
    inference = to_numpy(layer(x))
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), inference)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference)
    # With the adapter silenced, training output is the untouched base output.
    b = layer.adapter("default").variables[1]
    b.assign(np.zeros(b.shape, "float32"))
    base = x @ to_numpy(layer._kernel) + to_numpy(layer.bias)
    np.testing.assert_allclose(to_numpy(layer(x, training=True)), base, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_adapters_stay_float32_under_low_precision_policies(policy):
    keras.config.set_dtype_policy(policy)
    layer = GraLoRADense(16, r=4, k=2, init_weights=False)
    einsum = GraLoRAEinsumDense("btd,dnh->btnh", (None, 2, 8), r=4, k=2, init_weights=False)
    x = random_input((2, 3, 16))
    assert ops.dtype(layer(x)) == "bfloat16" and ops.dtype(einsum(x)) == "bfloat16"
    for adapted in (layer, einsum):
        assert {v.dtype for v in adapted.adapter_variables} == {"float32"}
        assert ops.dtype(adapted.delta_kernel()) == "float32"
