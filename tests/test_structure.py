"""Adapter identity by structure key: files load into any build of the same architecture (`structure.py`)."""

import h5py
import numpy as np
import pytest
from helpers import UNNAMED_X as X
from helpers import to_numpy
from helpers import unnamed_adapted as adapted
from helpers import unnamed_model as unnamed

import keras_gralora
from keras_gralora.surgery import inject, structure


def test_keys_are_the_same_in_every_build_and_after_enabling():
    first, second = unnamed(), unnamed()
    assert [layer.name for layer in first.layers] != [layer.name for layer in second.layers]  # auto-numbered
    keys = [structure.layer_keys(m) for m in (first, second)]
    assert [keys[0][id(layer)] for layer in first.layers] == [keys[1][id(layer)] for layer in second.layers]
    assert [keys[0][id(layer)] for layer in first.layers][1:3] == ["layers/dense", "layers/dense_1"]
    keras_gralora.enable_gralora(first, r=4, k=2, target_layer_names="all")  # GraLoRADense keeps its key
    assert structure.layer_keys(first) == keys[0]


def test_an_adapter_file_loads_into_a_second_build_whose_names_differ(tmp_path):
    model = adapted()
    path = tmp_path / "a.gralora.weights.h5"
    keras_gralora.save_gralora_weights(model, path)
    second = unnamed()  # other auto-numbered names and paths
    assert keras_gralora.load_gralora_weights(second, path) == [layer.path for layer in second.layers[1:4]]
    np.testing.assert_allclose(to_numpy(second(X)), to_numpy(model(X)), atol=1e-6)
    with h5py.File(path) as f:  # the path stays beside the key, for people
        layer = f["adapters/default/layers/0"]
        assert layer.attrs["key"] == "layers/dense" and layer.attrs["path"] == model.layers[1].path
        assert f["adapters/default/biases/0"].attrs["key"] == "layers/dense/bias"


def test_a_keras_file_reenables_adapters_on_a_second_build(tmp_path):
    """A backbone's slot keys its adapters by structure too (KerasHub: `hub.py`)."""
    keras_hub = pytest.importorskip("keras_hub")
    config = dict(
        vocabulary_size=32,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=8,
        intermediate_dim=16,
        num_experts=2,
        top_k=1,
    )
    backbone = keras_hub.models.MixtralBackbone(**config)  # auto-numbered expert layers
    backbone.enable_gralora(r=2, k=2, target_layer_names="all")
    for v in backbone.trainable_weights:
        v.assign(np.full(v.shape, 0.05, "float32"))
    path = tmp_path / "m.weights.h5"
    backbone.save_weights(path)
    second = keras_hub.models.MixtralBackbone(**config)
    second.load_weights(path)
    data = {"token_ids": np.arange(8).reshape(2, 4) % 32, "padding_mask": np.ones((2, 4), "int32")}
    np.testing.assert_allclose(to_numpy(second(data)), to_numpy(backbone(data)), atol=1e-5)
    assert len(inject.adapted_layers(second)) == len(inject.adapted_layers(backbone))


def test_another_architecture_is_refused_naming_both_sides(tmp_path):
    path = tmp_path / "a.gralora.weights.h5"
    keras_gralora.save_gralora_weights(adapted(depth=3), path)
    other = unnamed(depth=1)
    with pytest.raises(
        ValueError,
        match=r"has adapters for layers \['.*'\] that model .* lacks \(by structure "
        r"keys: \['layers/dense_2'\]\).*has Dense/EinsumDense layers at",
    ):
        keras_gralora.load_gralora_weights(other, path)
    assert not inject.adapted_layers(other)


def test_a_version_2_file_keyed_by_path_still_loads(tmp_path):
    model = adapted()
    expected = to_numpy(model(X))
    path = tmp_path / "v2.gralora.weights.h5"
    keras_gralora.save_gralora_weights(model, path)
    with h5py.File(path, "r+") as f:  # what keras_gralora 0.2 wrote: paths, no keys
        f.attrs["format_version"] = 2
        del f["adapters/default"].attrs["modules_to_save"]
        f.visititems(lambda name, obj: obj.attrs.__delitem__("key") if "key" in obj.attrs else None)
    with pytest.raises(ValueError, match=r"lacks \(by structure paths"):  # a rebuild has other paths
        keras_gralora.load_gralora_weights(unnamed(), path)
    for v in model.trainable_weights:
        v.assign(np.zeros(v.shape, "float32"))
    keras_gralora.load_gralora_weights(model, path)  # the same paths: found by path
    np.testing.assert_allclose(to_numpy(model(X)), expected, atol=1e-6)
