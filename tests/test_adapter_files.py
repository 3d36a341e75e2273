"""Adapter files with several named adapters, their biases and modules_to_save; format 1 still loads."""

import json
import os

import h5py
import keras
import numpy as np
import pytest
from helpers import MLP_X as X
from helpers import mlp, moved, randomize, snapshot, to_numpy

import keras_gralora
from keras_gralora import enable_gralora, load_gralora_weights, save_gralora_weights
from keras_gralora.surgery import inject


def trained(seed=0):
    """Adapters a (bias="gralora_only", head saved) and b (inactive), random non-zero weights."""
    model = mlp()
    enable_gralora(
        model,
        r=4,
        k=2,
        target_layer_names=["up", "down"],
        adapter_name="a",
        bias="gralora_only",
        modules_to_save=["head"],
    )
    enable_gralora(model, r=8, k=4, hybrid_r=2, target_layer_names=["down"], adapter_name="b")
    randomize([*model.trainable_weights, *model.get_layer("down").adapter("b").variables], seed=seed, scale=0.1)
    return model


def test_several_adapters_round_trip_onto_a_fresh_model_with_biases_head_and_active_state(tmp_path):
    model = trained()
    path = tmp_path / "two.weights.h5"
    save_gralora_weights(model, path)
    fresh = mlp()  # the same base, but biases and head as first drawn: the file brings the trained ones
    assert load_gralora_weights(fresh, path) == ["up", "down"]
    assert keras_gralora.adapter_names(fresh) == ["a", "b"] and keras_gralora.active_adapters(fresh) == ["a"]
    assert fresh.get_layer("down").adapter("b").config == model.get_layer("down").adapter("b").config
    for name in ("head/kernel", "head/bias", "up/bias", "down/bias"):
        np.testing.assert_array_equal(snapshot(fresh)[name], snapshot(model)[name])
    assert {v.path for v in fresh.trainable_weights} == {v.path for v in model.trainable_weights}
    keras_gralora.set_active_adapters(model, ["a", "b"])
    keras_gralora.set_active_adapters(fresh, ["a", "b"])
    np.testing.assert_allclose(to_numpy(fresh(X)), to_numpy(model(X)), atol=1e-6)


def test_a_subset_loads_under_a_new_name_beside_existing_adapters(tmp_path):
    path = tmp_path / "two.weights.h5"
    save_gralora_weights(trained(), path, adapter_names="b")
    with h5py.File(path) as f:
        assert list(f["adapters"]) == ["b"]
    model = trained(seed=3)
    assert load_gralora_weights(model, path, adapter_names={"b": "b2"}) == ["down"]
    down = model.get_layer("down")
    assert down.adapter_names == ["a", "b", "b2"] and keras_gralora.active_adapters(model) == ["a"]
    for ours, theirs in zip(down.adapter("b2").variables, trained().get_layer("down").adapter("b").variables):
        np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


def test_loading_into_the_same_adapter_replaces_its_weights_even_merged(tmp_path):
    path = tmp_path / "two.weights.h5"
    source = trained()
    save_gralora_weights(source, path)
    model = trained(seed=3)
    keras_gralora.merge_gralora(model)
    load_gralora_weights(model, path)
    assert model.get_layer("down").merged_adapters == ["a"]
    np.testing.assert_allclose(to_numpy(model(X)), to_numpy(source(X)), atol=1e-5)


def _corrupt(edit):
    def apply(path):
        with h5py.File(path, "r+") as f:
            edit(f)

    return apply


@pytest.mark.parametrize(
    "prepare, kwargs, message",
    [
        (None, dict(adapter_names=["z"]), r"has no adapter \['z'\]; it holds \['a', 'b'\]"),
        (
            None,
            dict(adapter_names={"a": "b"}),
            r"already has an adapter named 'b', on layers \[\] that .* lacks, and the "
            r"file has it on \['up'\].*adapter_names=\{'a': 'b_2'\}",
        ),
        (None, dict(adapter_names={"a": "x", "b": "x"}), r"gives two adapters the same name"),
        (None, dict(adapter_names=5), r"adapter_names=5 must be a name"),
        (
            _corrupt(lambda f: f["adapters/a/modules/0"].attrs.update(key="tail/kernel", path="tail/kernel")),
            {},
            r"holds weight 'tail/kernel' .* in model 'functional.*' it is missing",
        ),
    ],
)
def test_bad_loads_change_nothing(tmp_path, prepare, kwargs, message):
    path = tmp_path / "two.weights.h5"
    save_gralora_weights(trained(), path)
    if prepare:
        prepare(path)
    model = mlp(seed=5)
    enable_gralora(model, r=4, k=2, target_layer_names=["down"], adapter_name="b")
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        load_gralora_weights(model, path, **kwargs)
    assert not moved(model, before) and keras_gralora.adapter_names(model) == ["b"]


def test_a_second_bias_owner_from_a_file_is_refused(tmp_path):
    path = tmp_path / "two.weights.h5"
    save_gralora_weights(trained(), path, adapter_names=["a"])
    model = mlp()
    enable_gralora(model, r=4, k=2, target_layer_names=["up"], adapter_name="c", bias="all")
    with pytest.raises(ValueError, match=r"adapters \['c', 'a'\] .* would all train biases"):
        load_gralora_weights(model, path)


def test_saving_into_a_missing_folder_names_the_users_path(tmp_path):
    path = tmp_path / "no" / "such" / "a.weights.h5"
    message = rf"save_gralora_weights: cannot save '{path}': the folder '.*no/such' does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        save_gralora_weights(trained(), path)


def test_a_backbone_cannot_save_an_adapters_head_it_does_not_hold(tmp_path):
    model = trained()
    with pytest.raises(ValueError, match=r"save_gralora_weights: model 'z' has no adapter named \['q'\]"):
        save_gralora_weights(keras.Model(model.inputs, model.outputs, name="z"), tmp_path / "x.weights.h5", "q")


def write_version_1(path, model):
    """A file as keras_gralora 0.1 wrote it: one unnamed adapter, layers at the top."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="keras_gralora.lifecycle.adapters", format_version=1)
        for i, layer in enumerate(inject.adapted_layers(model)):
            config = layer.adapter("a").config
            group = f.create_group(f"layers/{i}")
            group.attrs.update(
                path=layer.path,
                in_features=layer.matrix_shape_of(layer)[0],
                out_features=layer.matrix_shape_of(layer)[1],
                config=json.dumps(
                    {k: getattr(config, k) for k in ("r", "k", "hybrid_r", "alpha", "dropout", "init_weights")}
                ),
            )
            for role, v in zip(("gralora_a", "gralora_b"), layer.adapter("a").variables):
                group.create_dataset(role, data=to_numpy(v))


def test_a_version_1_file_still_loads_as_the_default_adapter(tmp_path):
    model = trained()
    keras_gralora.set_active_adapters(model, "a")
    write_version_1(tmp_path / "old.weights.h5", model)
    fresh = mlp()
    for name in ("up", "down", "head"):  # the same base (v1 files carry no biases or head)
        fresh.get_layer(name)._kernel.assign(model.get_layer(name)._kernel)
        fresh.get_layer(name).bias.assign(model.get_layer(name).bias)
    assert load_gralora_weights(fresh, tmp_path / "old.weights.h5") == ["up", "down"]
    assert keras_gralora.adapter_names(fresh) == ["default"] and keras_gralora.active_adapters(fresh) == ["default"]
    np.testing.assert_allclose(to_numpy(fresh(X)), to_numpy(model(X)), atol=1e-6)
    assert os.path.getsize(tmp_path / "old.weights.h5") > 0


def test_a_layer_config_and_weights_from_version_1_still_load():
    old_config = {
        **keras.layers.Dense(8, name="proj").get_config(),
        "r": 4,
        "k": 2,
        "hybrid_r": 0,
        "alpha": None,
        "dropout": 0.0,
        "init_weights": True,
    }
    layer = keras_gralora.GraLoRADense.from_config(old_config)
    layer.build((None, 8))
    assert layer.adapter_names == ["default"]
    rng = np.random.default_rng(0)
    shapes = {"kernel": (8, 8), "bias": (8,), "gralora_a": (2, 4, 4), "gralora_b": (2, 4, 4)}
    store = {name: rng.standard_normal(shape).astype("float32") for name, shape in shapes.items()}
    layer.load_own_variables(store)
    np.testing.assert_array_equal(to_numpy(layer.adapter("default").variables[1]), store["gralora_b"])
