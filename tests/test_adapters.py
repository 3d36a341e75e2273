"""Named adapters on plain Keras models: training, merging, unloading, bias modes, bad arguments."""

import warnings

import keras
import numpy as np
import pytest
from helpers import MLP_X as X
from helpers import MLP_Y as Y
from helpers import mlp, moved, snapshot, to_numpy

import keras_gralora
from keras_gralora import enable_gralora
from keras_gralora.layers.named_adapter import ROLES
from keras_gralora.surgery import inject


def two_adapters(**kwargs):
    model = mlp()
    enable_gralora(model, r=4, k=2, target_layer_names=["up", "down"], adapter_name="a", **kwargs)
    enable_gralora(model, r=8, k=4, hybrid_r=2, target_layer_names=["down"], adapter_name="b")
    rng = np.random.default_rng(7)
    for layer in inject.adapted_layers(model):
        for v in layer.adapter_variables:
            v.assign(rng.standard_normal(v.shape).astype("float32") * 0.1)
    return model


def fit(model, epochs=2):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model.fit(X, Y, epochs=epochs, batch_size=16, verbose=0)


def test_only_active_adapters_train_and_switching_retrains_the_other():
    model = two_adapters()
    assert model.get_layer("down").adapter_names == ["a", "b"] and model.get_layer("up").adapter_names == ["a"]
    assert model.get_layer("up").active_adapters == ["a"]
    before = snapshot(model)
    fit(model)
    assert moved(model, before) == {"up/gralora_a_a", "up/gralora_b_a", "down/gralora_a_a", "down/gralora_b_a"}
    keras_gralora.set_active_adapters(model, ["b", "b"])  # once is enough: a name is not summed twice
    assert keras_gralora.active_adapters(model) == ["b"]
    before = snapshot(model)
    fit(model)  # compiled again: a Keras optimizer updates only the variables it was built with
    assert moved(model, before) == {f"down/{role}_b" for role in ROLES}


def test_training_a_merged_adapter_raises_until_unmerged():
    model = two_adapters()
    expected = to_numpy(model(X))
    keras_gralora.merge_gralora(model)
    np.testing.assert_allclose(to_numpy(model(X)), expected, atol=1e-5)
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"would train adapters that are merged into their kernels "
        r"\{'up': \['a'\], 'down': \['a'\]\}.*unmerge_gralora",
    ):
        fit(model)
    assert not moved(model, before)  # refused before Keras touched any state
    with pytest.raises(ValueError, match=r"adapters \['a'\] are merged into the kernel and active"):
        model(X, training=True)  # custom training loops are refused by the layer itself
    keras_gralora.unmerge_gralora(model)
    before = snapshot(model)
    fit(model)
    assert moved(model, before) == {f"{n}/{r}_a" for n in ("up", "down") for r in ("gralora_a", "gralora_b")}


def test_merge_and_unload_and_unload_leave_plain_layers():
    model = two_adapters()
    keras_gralora.set_active_adapters(model, ["a", "b"])
    expected = to_numpy(model(X))
    with keras_gralora.disable_gralora(model):
        base = to_numpy(model(X))
    assert keras_gralora.merge_and_unload(model) is model
    assert [type(layer) for layer in model.layers[1:]] == [keras.layers.Dense] * 3
    np.testing.assert_allclose(to_numpy(model(X)), expected, atol=1e-5)
    model = two_adapters()
    keras_gralora.merge_gralora(model, ["b"])
    keras_gralora.unload_gralora(model)
    assert not inject.adapted_layers(model) and len(model.weights) == 6
    np.testing.assert_allclose(to_numpy(model(X)), base, atol=1e-5)


def test_safe_merge_of_a_broken_adapter_changes_no_kernel():
    model = two_adapters()
    keras_gralora.set_active_adapters(model, ["a", "b"])
    model.get_layer("down").adapter("b").variables[1].assign(np.full((4, 8, 4), np.nan, "float32"))
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"GraLoRADense 'down': merging \['a', 'b'\] would make the kernel non-finite"):
        keras_gralora.merge_gralora(model, safe=True)
    assert not moved(model, before) and not any(layer.merged for layer in inject.adapted_layers(model))


@pytest.mark.parametrize(
    "bias, trained", [("gralora_only", {"up/bias", "down/bias"}), ("all", {"up/bias", "down/bias", "head/bias"})]
)
def test_bias_modes_train_biases_and_disable_warns(bias, trained):
    model = two_adapters(bias=bias)
    before = snapshot(model)
    fit(model)
    assert moved(model, before) == trained | {f"{n}/{r}_a" for n in ("up", "down") for r in ("gralora_a", "gralora_b")}
    with pytest.warns(UserWarning, match=rf"disable_gralora: adapter\(s\) \{{'a': '{bias}'\}} train biases"):
        with keras_gralora.disable_gralora(model):
            pass
    with pytest.raises(ValueError, match=r"adapter 'a' of model .* already trains biases.*Use bias='none'"):
        enable_gralora(model, r=4, k=2, target_layer_names=["up"], adapter_name="c", bias="all")


def test_modules_to_save_train_only_with_their_active_adapter():
    model = mlp()
    enable_gralora(model, r=4, k=2, target_layer_names="all", modules_to_save=["head"], adapter_name="a")
    assert [layer.path for layer in inject.adapted_layers(model)] == ["up", "down"]  # "all" leaves the head out
    enable_gralora(model, r=4, k=2, target_layer_names=["up"], adapter_name="b")
    assert {v.path for v in model.trainable_weights} >= {"head/kernel", "head/bias"}
    keras_gralora.set_active_adapters(model, "b")
    assert {v.path for v in model.trainable_weights} == {"up/gralora_a_b", "up/gralora_b_b"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(adapter_name="a"), r"already has an adapter named 'a' \(adapters: \['a', 'b'\]\)"),
        (dict(adapter_name="x.y"), r"adapter_name='x.y' is not a valid adapter name"),
        (dict(bias="some"), r"`bias` must be one of \('none', 'all', 'gralora_only'\), got bias='some'"),
        (dict(modules_to_save=["nothing"]), r"modules_to_save=\['nothing'\] matched no layer with weights.*'head'"),
        (dict(modules_to_save="up"), r"modules_to_save \['up'\] carry GraLoRA adapters"),
        (
            dict(modules_to_save=["head"], target_layer_names=["head"]),
            r"\['head'\] are both targets and .*modules_to_save",
        ),
        (dict(layers_to_transform=[0]), r"no layer path of .* has a block segment"),
        (dict(layers_pattern="block"), r"layers_pattern='block' needs layers_to_transform"),
    ],
)
def test_bad_arguments_change_nothing(kwargs, message):
    model = two_adapters()
    before, trainable = snapshot(model), [v.path for v in model.trainable_weights]
    with pytest.raises(ValueError, match=message):
        enable_gralora(model, **{"r": 4, "k": 2, "target_layer_names": ["up"], "adapter_name": "c", **kwargs})
    assert not moved(model, before) and [v.path for v in model.trainable_weights] == trainable
    assert keras_gralora.adapter_names(model) == ["a", "b"]


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: keras_gralora.set_active_adapters(m, ["a", "z"]),
            r"set_active_adapters: model .* has no adapter named \['z'\]; its adapters are \['a', 'b'\]",
        ),
        (lambda m: keras_gralora.merge_gralora(m, ["z"]), r"merge_gralora: .* no adapter named \['z'\]"),
        (lambda m: keras_gralora.delete_adapter(m, "z"), r"delete_adapter: .* no adapter named \['z'\]"),
        (lambda m: keras_gralora.set_active_adapters(m, 3), r"expected an adapter name or a list of them, got 3"),
    ],
)
def test_unknown_adapter_names_are_refused(call, message):
    model = two_adapters()
    with pytest.raises(ValueError, match=message):
        call(model)


def test_deleting_the_only_active_adapter_activates_the_first_remaining():
    model = two_adapters()
    with pytest.warns(UserWarning, match=r"adapter 'a' was the active adapter; 'b' is active now"):
        keras_gralora.delete_adapter(model, "a")
    assert type(model.get_layer("up")) is keras.layers.Dense
    assert keras_gralora.active_adapters(model) == ["b"]


def test_summary_lists_adapters_per_layer_with_the_active_ones_marked():
    model = two_adapters()
    lines = []
    summary = keras_gralora.gralora_summary(model, print_fn=lines.append)
    assert [(row["path"], row["adapter"], row["active"]) for row in summary["layers"]] == [
        ("up", "a", True),
        ("down", "a", True),
        ("down", "b", False),
    ]
    table = lines[0].splitlines()
    assert table[3].split()[:2] == ["down", "b"] and table[2].split()[:2] == ["down", "a*"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_gralora.set_active_adapters(model, [])
    assert not model.trainable_weights


def test_unloading_an_adapter_with_dropout_leaves_exactly_the_plain_model():
    model = mlp()
    plain = [(v.path, tuple(v.shape)) for v in model.variables]
    enable_gralora(model, r=4, k=2, dropout=0.1, target_layer_names=["up"])
    assert len(model.variables) > len(plain)  # adapters and the dropout seed
    keras_gralora.unload_gralora(model)
    assert [(v.path, tuple(v.shape)) for v in model.variables] == plain
