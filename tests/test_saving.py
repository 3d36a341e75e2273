"""Adapter files, whole-model files, the merged export, and cross-backend loading."""

import json
import os

import h5py
import keras
import numpy as np
import pytest
from helpers import (
    UNNAMED_X,
    X,
    adapted_model,
    assert_unchanged,
    base_model,
    run_python,
    snapshot,
    to_numpy,
    unnamed_model,
)

import keras_gralora
from keras_gralora import load_gralora_weights, save_gralora_weights
from keras_gralora.surgery import inject

BACKEND = keras.backend.backend()


def test_adapter_file_round_trip_onto_a_fresh_model(tmp_path):
    model = adapted_model()
    path = tmp_path / "task.gralora.weights.h5"
    save_gralora_weights(model, path)
    fresh = base_model()
    assert load_gralora_weights(fresh, path) == ["query", "ffn", "value"]
    np.testing.assert_array_equal(to_numpy(fresh(X)), to_numpy(model(X)))
    assert {v.name for v in fresh.trainable_weights} == {
        "gralora_a_default",
        "gralora_b_default",
        "gralora_hybrid_a_default",
        "gralora_hybrid_b_default",
    }
    adapter_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.trainable_weights)
    assert adapter_bytes < os.path.getsize(path) <= adapter_bytes + 16 * 1024


def test_adapter_file_loads_onto_an_adapted_and_merged_model(tmp_path):
    model = adapted_model()
    save_gralora_weights(model, tmp_path / "a.weights.h5")
    other = adapted_model(seed=0)
    for v in other.trainable_weights:
        v.assign(np.zeros(v.shape, "float32"))
    keras_gralora.merge_gralora(other)
    load_gralora_weights(other, tmp_path / "a.weights.h5")
    assert all(layer.merged for layer in inject.adapted_layers(other))
    np.testing.assert_allclose(to_numpy(other(X)), to_numpy(model(X)), atol=1e-5)


@pytest.mark.parametrize("name", ["task.h5", "task.weights.keras", "task.lora.h5"])
def test_adapter_file_names_must_end_in_weights_h5(tmp_path, name):
    model = adapted_model()
    with pytest.raises(ValueError, match=r"must end in '\.weights\.h5'.*For example: 'task\.gralora\.weights\.h5'"):
        save_gralora_weights(model, tmp_path / name)
    assert not os.listdir(tmp_path)
    with pytest.raises(ValueError, match=r"must end in '\.weights\.h5'"):
        load_gralora_weights(model, tmp_path / name)


def test_a_refused_save_leaves_the_existing_file_byte_for_byte(tmp_path):
    path = tmp_path / "task.weights.h5"
    save_gralora_weights(adapted_model(), path)
    original = path.read_bytes()
    with pytest.raises(ValueError, match=r"model 'tiny' has no GraLoRA adapters to save"):
        save_gralora_weights(base_model(), path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["task.weights.h5"]  # no temporary file left behind


def _write_variant(path, edit):
    """Copies a valid adapter file to `path` and lets `edit(h5file)` corrupt it."""
    save_gralora_weights(adapted_model(), path)
    with h5py.File(path, "r+") as f:
        edit(f)


def _foreign(f):
    del f.attrs["format"]
    f.attrs["something"] = "else"


def _set(name, value):
    def edit(f):
        f.attrs[name] = value

    return edit


def _group_attr(name, value):
    def edit(f):
        f["adapters/default/layers/1"].attrs[name] = value

    return edit


def _config_value(name, value):
    def edit(f):
        config = json.loads(f["adapters/default/layers/0"].attrs["config"])
        f["adapters/default/layers/0"].attrs["config"] = json.dumps({**config, name: value})

    return edit


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "adapted"])
@pytest.mark.parametrize(
    "edit, message",
    [
        (_foreign, r"is an HDF5 file but not a keras_gralora adapter file"),
        (_set("format_version", 7), r"has format version 7; this keras_gralora reads versions \[1, 2, 3\]"),
        (
            _group_attr("key", "layers/encoder/ffn"),
            r"has adapters for layers \['ffn'\] that model 'tiny' lacks \(by "
            r"structure keys: \['layers/encoder/ffn'\]\)",
        ),
        (_group_attr("in_features", 64), r"layer 'ffn' maps 16 -> 32 features, '.*' was saved from 64 -> 32"),
    ],
)
def test_bad_adapter_files_change_nothing(tmp_path, fresh, edit, message):
    path = tmp_path / "bad.weights.h5"
    _write_variant(path, edit)
    model = base_model() if fresh else adapted_model(seed=3)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        load_gralora_weights(model, path)
    assert_unchanged(model, before)
    assert bool(inject.adapted_layers(model)) == (not fresh)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("r", 8, r"adapter 'default' of layer 'query' has other settings .*: r=4 here, 8 in the file"),
        ("k", 1, r"adapter 'default' of layer 'query' has other settings .*: k=2 here, 1 in the file"),
        ("hybrid_r", 0, r"adapter 'default' of layer 'query' has other settings .*: hybrid_r=2 here, 0 in the file"),
        ("bias", "all", r"has other settings .*: bias='none' here, 'all' in the file"),
        ("dropout", 0.5, r"has other settings .*: dropout=0.0 here, 0.5 in the file"),
    ],
)
def test_settings_that_differ_from_the_adapted_model_are_refused(tmp_path, name, value, message):
    path = tmp_path / "other.weights.h5"
    _write_variant(path, _config_value(name, value))
    model = adapted_model(seed=3)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        load_gralora_weights(model, path)
    assert_unchanged(model, before)


def test_layers_the_file_lacks_are_refused(tmp_path):
    path = tmp_path / "part.weights.h5"
    save_gralora_weights(adapted_model(targets=("query",)), path)
    model = adapted_model(seed=3)
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"already has an adapter named 'default', on layers \['ffn', 'value'\] "
        r"that '.*' lacks.*delete_adapter",
    ):
        load_gralora_weights(model, path)
    assert_unchanged(model, before)


def _stack(*names):
    inputs = keras.Input((8,))
    x = inputs
    for name in names:
        x = keras.layers.Dense(8, name=name)(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_a_file_never_lands_on_a_layer_it_was_not_saved_from(tmp_path):
    """A Dense put before the saved one takes its structure position: refused, naming both; check_paths=False loads."""
    path = tmp_path / "hidden.gralora.weights.h5"
    saved = _stack("hidden")
    keras_gralora.enable_gralora(saved, r=2, k=2, target_layer_names=["hidden"])
    save_gralora_weights(saved, path)
    model = _stack("new_first", "hidden")
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'hidden' -> 'new_first' .*check_paths=False"):
        load_gralora_weights(model, path)
    assert_unchanged(model, before)
    served = _stack("new_first", "hidden")  # a hot-swap source is checked the same way
    keras_gralora.enable_gralora(served, r=2, k=2, target_layer_names=["new_first"])
    with pytest.raises(ValueError, match=r"'hidden' -> 'new_first'"):
        keras_gralora.hotswap_adapter(served, path, "default")
    renamed = _stack("renamed")  # the same layers under another name: the explicit way
    assert load_gralora_weights(renamed, path, check_paths=False) == ["renamed"]
    assert load_gralora_weights(_stack("hidden"), path) == ["hidden"]  # a second build (numbered names) loads


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"no adapter file at"),
        (b"this is not hdf5", r"cannot read '.*' as HDF5 \(not an HDF5 file, or truncated\)"),
        ("truncated", r"cannot read '.*' as HDF5"),
    ],
)
def test_missing_unreadable_and_truncated_files(tmp_path, content, message):
    path = tmp_path / "broken.weights.h5"
    if content == "truncated":
        save_gralora_weights(adapted_model(), path)
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    elif content is not None:
        path.write_bytes(content)
    model = base_model()
    before = snapshot(model)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_gralora_weights(model, path)
    assert_unchanged(model, before)


def test_whole_model_weights_file_round_trip(tmp_path):
    model = adapted_model()
    model.save_weights(tmp_path / "model.weights.h5")
    fresh = adapted_model(seed=9)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(to_numpy(fresh(X)), to_numpy(model(X)))
    keras_gralora.merge_gralora(model)
    model.save(tmp_path / "merged.keras")  # saved unmerged, reloads with the same outputs
    loaded = keras.models.load_model(tmp_path / "merged.keras")
    np.testing.assert_allclose(to_numpy(loaded(X)), to_numpy(fresh(X)), atol=1e-5)
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_merged_export_loads_without_keras_gralora(tmp_path):
    model = adapted_model()
    expected = to_numpy(model(X))
    before = snapshot(model)
    keras_gralora.export_merged(model, tmp_path / "merged.keras")
    assert_unchanged(model, before)  # the export leaves the model as it was
    np.save(tmp_path / "x.npy", X)
    out = run_python(
        """
        import sys, numpy as np, keras
        model = keras.models.load_model(sys.argv[1] + "/merged.keras")
        assert "keras_gralora" not in sys.modules
        print(sorted({type(layer).__name__ for layer in model.layers}))
        np.save(sys.argv[1] + "/y.npy", keras.ops.convert_to_numpy(model(np.load(sys.argv[1] + "/x.npy"))))
        """,
        BACKEND,
        tmp_path,
    )
    assert "GraLoRA" not in out and "'Dense'" in out and "'EinsumDense'" in out
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


WRITER = """
    import sys, numpy as np
    sys.path.insert(0, ".")
    from helpers import UNNAMED_X, X, adapted_model, unnamed_adapted, unnamed_model
    import keras, keras_gralora
    model = adapted_model()
    keras_gralora.save_gralora_weights(model, sys.argv[1])
    np.save(sys.argv[2], keras.ops.convert_to_numpy(model(X)))
    [unnamed_model(depth=5) for _ in range(3)]  # other auto-numbered names than the reader's
    unnamed = unnamed_adapted()
    keras_gralora.save_gralora_weights(unnamed, sys.argv[3])
    np.save(sys.argv[4], keras.ops.convert_to_numpy(unnamed(UNNAMED_X)))
    print(",".join(layer.name for layer in unnamed.layers[1:]))
"""


@pytest.mark.parametrize("writer", [b for b in ("jax", "torch", "tensorflow") if b != BACKEND])
def test_adapter_files_cross_backends(tmp_path, writer):
    """Files written by another backend's process load here, also where auto-numbered names differ."""
    path, expected = tmp_path / f"{writer}.weights.h5", tmp_path / f"{writer}.npy"
    names = run_python(WRITER, writer, path, expected, tmp_path / "unnamed.weights.h5", tmp_path / "unnamed.npy")
    model = base_model()
    load_gralora_weights(model, path)
    np.testing.assert_allclose(to_numpy(model(X)), np.load(expected), rtol=1e-5, atol=1e-5)
    unnamed = unnamed_model()
    assert [layer.name for layer in unnamed.layers[1:]] != names.split()[-1].split(",")
    load_gralora_weights(unnamed, tmp_path / "unnamed.weights.h5")
    np.testing.assert_allclose(to_numpy(unnamed(UNNAMED_X)), np.load(tmp_path / "unnamed.npy"), rtol=1e-5, atol=1e-5)
