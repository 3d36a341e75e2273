"""A file lands only on the layers, and the whole model, it was saved from (`saved_structure.py`)."""

import json

import h5py
import keras
import keras_hub
import numpy as np
import pytest
import safetensors.numpy
from helpers import assert_unchanged, snapshot, to_numpy

import keras_gralora
from keras_gralora import load_gralora_weights, save_gralora_weights
from keras_gralora.surgery import inject


def bert(num_layers, seed=0):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=num_layers, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=6
    )


def trained(num_layers, path):
    backbone = bert(num_layers)
    backbone.enable_gralora(r=2, k=2, target_layer_names="all")
    for variable in backbone.trainable_weights:
        variable.assign(np.random.default_rng(3).standard_normal(variable.shape).astype("float32"))
    backbone.save_gralora_weights(path)
    return backbone


def features(backbone):
    ids = np.arange(12).reshape(2, 6) % 40
    return to_numpy(backbone({"token_ids": ids, "segment_ids": 0 * ids, "padding_mask": ids >= 0})["sequence_output"])


def test_a_smaller_models_file_is_refused_unless_allow_partial(tmp_path):
    path = str(tmp_path / "two.gralora.weights.h5")
    trained(2, path)
    larger = bert(4)
    before = snapshot(larger)
    with pytest.raises(ValueError, match=r"without layers \['transformer_layer_2/.* and \d+ more.*allow_partial=True"):
        larger.load_gralora_weights(path)
    assert_unchanged(larger, before)
    assert not inject.adapted_layers(larger)
    served = bert(4)  # a hot-swap source is checked the same way
    served.enable_gralora(r=2, k=2, target_layer_names="all")
    with pytest.raises(ValueError, match="allow_partial=True"):
        keras_gralora.hotswap_adapter(served, path)
    loaded = larger.load_gralora_weights(path, allow_partial=True)
    assert loaded and all(p.startswith(("transformer_layer_0/", "transformer_layer_1/")) for p in loaded)
    assert {p.split("/")[0] for p in loaded} == {"transformer_layer_0", "transformer_layer_1"}


def test_the_same_configuration_and_a_task_around_the_backbone_load(tmp_path):
    path = str(tmp_path / "four.gralora.weights.h5")
    saved = trained(4, path)
    fresh = bert(4)  # a second build: other auto-generated names
    fresh.load_gralora_weights(path)
    np.testing.assert_allclose(features(fresh), features(saved), atol=1e-6)
    task = keras_hub.models.BertTextClassifier(bert(4, seed=1), num_classes=2, preprocessor=None)
    assert len(load_gralora_weights(task, path)) == len(inject.adapted_layers(saved))  # the head is no layer lacked
    smaller_file = str(tmp_path / "task.gralora.weights.h5")
    save_gralora_weights(task, smaller_file)  # saved from the task: loads into its backbone
    assert len(bert(4).load_gralora_weights(smaller_file)) == len(inject.adapted_layers(saved))


def test_files_without_the_record_load_as_before(tmp_path):
    path = str(tmp_path / "two.gralora.weights.h5")
    trained(2, path)
    with h5py.File(path, "a") as f:
        del f["model_layers"]
    assert len(bert(4).load_gralora_weights(path)) == 2 * 6  # checked by paths only, as files written before


@pytest.mark.parametrize("bad", [np.arange(3), np.array([["a"]], dtype=h5py.string_dtype())])
def test_a_malformed_record_is_refused(tmp_path, bad):
    path = str(tmp_path / "two.gralora.weights.h5")
    trained(2, path)
    with h5py.File(path, "a") as f:
        del f["model_layers"]
        f["model_layers"] = bad
    with pytest.raises(ValueError, match="'model_layers' is no list of strings"):
        bert(2).load_gralora_weights(path)


def test_a_whole_model_file_is_refused_before_any_adapter_is_enabled(tmp_path):
    path = str(tmp_path / "two.weights.h5")
    bert(2).enable_gralora(r=2, k=2)
    small = bert(2)
    small.enable_gralora(r=2, k=2)
    small.save_weights(path)
    larger = bert(4)
    with pytest.raises(ValueError, match=r"lacked layers \['transformer_layer_2/.*allow_partial=True"):
        larger.load_weights(path)
    assert not inject.adapted_layers(larger)
    same = bert(2, seed=4)
    same.load_weights(path)  # the model it was saved from loads
    np.testing.assert_array_equal(features(same), features(small))


def as_peft_wrote(directory, config):
    """The directory with `config`, its tensors as PEFT writes them (no hash of our config beside them)."""
    (directory / "adapter_config.json").write_text(json.dumps(config))
    tensors = safetensors.numpy.load_file(directory / "adapter_model.safetensors")
    safetensors.numpy.save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})


def test_a_peft_directory_whose_targets_reach_layers_it_lacks_is_refused(tmp_path):
    """PEFT writes the targets as given (`["query", "value"]`) and adapts every module they reach."""
    directory = tmp_path / "peft"
    small = bert(2)
    small.enable_gralora(r=2, k=2)
    keras_gralora.save_peft_adapter(small, directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    assert all(".layer." in module for module in config["target_modules"])  # ours: the modules' full names
    assert len(keras_gralora.load_peft_adapter(bert(4), directory)) == 4  # which reach blocks 0 and 1 only
    config["target_modules"] = ["query", "value"]  # as PEFT writes a user's targets
    as_peft_wrote(directory, config)
    assert len(keras_gralora.load_peft_adapter(bert(2), directory)) == 4
    larger = bert(4)
    with pytest.raises(ValueError, match=r"without layers \['transformer_layer_2/self_attention_layer/query'"):
        keras_gralora.load_peft_adapter(larger, directory)
    assert not inject.adapted_layers(larger)
    assert len(keras_gralora.load_peft_adapter(larger, directory, allow_partial=True)) == 4
    config["layers_to_transform"] = [0, 1]  # blocks named: not followed, nothing refused
    as_peft_wrote(directory, config)
    assert len(keras_gralora.load_peft_adapter(bert(4), directory)) == 4


@pytest.mark.parametrize("argument", [{"allow_partial": "no"}, {"check_paths": 0}])
def test_the_flags_take_booleans_only(tmp_path, argument):
    path = str(tmp_path / "two.gralora.weights.h5")
    trained(2, path)
    larger = bert(4)
    with pytest.raises(ValueError, match=f"{next(iter(argument))}=.* must be True or False"):
        larger.load_gralora_weights(path, **argument)
    assert not inject.adapted_layers(larger)
