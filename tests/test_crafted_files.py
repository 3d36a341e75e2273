"""Adapter files and PEFT directories crafted as an attacker or a broken tool would: each refused, nothing changed.

Every case compares every variable of the model before and after, on a
fresh model (nothing may get enabled) and on an adapted one (nothing may be
overwritten).
"""

import json
import os
import struct

import h5py
import numpy as np
import pytest
from helpers import X, adapted_model, assert_unchanged, base_model, snapshot, to_numpy

import keras_gralora
from keras_gralora import load_gralora_weights, save_gralora_weights
from keras_gralora.interop import peft_files
from keras_gralora.surgery import inject


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.weights.h5"
    save_gralora_weights(adapted_model(seed=7), path)
    return path


def crafted(good_file, tmp_path, edit):
    path = tmp_path / "crafted.weights.h5"
    path.write_bytes(good_file.read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f, tmp_path)
    return path


def _replace(f, name, **create):
    del f[name]
    f.create_dataset(name, **create)


def external_storage(f, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(64, dtype="float32").tobytes())
    _replace(
        f,
        "adapters/default/layers/0/gralora_b",
        shape=(2, 4, 8),
        dtype="float32",
        external=[(str(secret), 0, 2 * 4 * 8 * 4)],
    )


def external_link(f, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["data"] = np.ones((2, 4, 8), "float32")
    del f["adapters/default/layers/0/gralora_b"]
    f["adapters/default/layers/0/gralora_b"] = h5py.ExternalLink(str(other), "/data")


def soft_link(f, tmp_path):
    del f["adapters/default/layers/1/gralora_a"]
    f["adapters/default/layers/1/gralora_a"] = h5py.SoftLink("/adapters/default/layers/0/gralora_a")


def virtual_dataset(f, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["data"] = np.ones((2, 4, 8), "float32")
    layout = h5py.VirtualLayout(shape=(2, 4, 8), dtype="float32")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(2, 4, 8))
    del f["adapters/default/layers/0/gralora_b"]
    f["adapters/default/layers/0"].create_virtual_dataset("gralora_b", layout)


def huge_shape(f, tmp_path):  # 1 PiB declared, no byte of it stored
    _replace(f, "adapters/default/layers/0/gralora_a", shape=(2**48,), dtype="float32", chunks=(1024,))


def string_dataset(f, tmp_path):  # in the second layer: the first must not be overwritten meanwhile
    _replace(f, "adapters/default/layers/1/gralora_b", data=np.full((2, 4, 16), "x", dtype="S1"))


def complex_dataset(f, tmp_path):
    a = f["adapters/default/layers/2/gralora_a"][()]
    _replace(f, "adapters/default/layers/2/gralora_a", data=a.astype("complex64") * (1 + 1j))


def missing_tensor(f, tmp_path):
    del f["adapters/default/layers/1/gralora_b"]


def missing_attribute(f, tmp_path):
    del f["adapters/default/layers/1"].attrs["in_features"]


def no_layers(f, tmp_path):
    del f["adapters/default/layers"]
    f.create_group("adapters/default/layers")


def config_not_json(f, tmp_path):
    f["adapters/default/layers/0"].attrs["config"] = "{r: 4"


def config_a_list(f, tmp_path):
    f["adapters/default/layers/0"].attrs["config"] = "[4, 2]"


def no_adapters(f, tmp_path):
    del f["adapters"]


CASES = {
    external_storage: r"dataset '/adapters/default/layers/0/gralora_b' is stored in external files",
    external_link: r"'/adapters/default/layers/0/gralora_b' is a ExternalLink",
    soft_link: r"'/adapters/default/layers/1/gralora_a' is a SoftLink",
    virtual_dataset: r"dataset '/adapters/default/layers/0/gralora_b' is a virtual dataset",
    huge_shape: r"layer 'query' needs adapter variables .* holds .*'gralora_a': \(281474976710656,\)",
    string_dataset: r"holds adapter 'default' 'gralora_b' of layer 'ffn' as \|S1 \(bytes\)",
    complex_dataset: r"'gralora_a' of layer 'value' as complex64 \(complex: its imaginary part would be lost\)",
    missing_tensor: r"layer 'ffn' needs adapter variables .* holds",
    missing_attribute: r"'/adapters/default/layers/1' needs attribute 'in_features' as int, but it is missing",
    no_layers: r"'/adapters/default' holds no adapted layer",
    config_not_json: r"'/adapters/default/layers/0' has a config that is not JSON",
    config_a_list: r"has a config that is no JSON object \(list\)",
    no_adapters: r"'/' has no group 'adapters'",
}


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "adapted"])
@pytest.mark.parametrize("edit", list(CASES), ids=[edit.__name__ for edit in CASES])
def test_crafted_adapter_files_are_refused_before_any_change(good_file, tmp_path, edit, fresh):
    path = crafted(good_file, tmp_path, edit)
    model = base_model() if fresh else adapted_model(seed=3)
    before = snapshot(model)
    with pytest.raises(ValueError, match=CASES[edit]) as error:
        load_gralora_weights(model, path)
    assert str(path) in str(error.value)
    assert_unchanged(model, before)
    assert bool(inject.adapted_layers(model)) == (not fresh)


def test_a_round_trip_keeps_no_adapter_active_and_bias_settings(tmp_path):
    model = adapted_model()
    keras_gralora.set_active_adapters(model, [])
    save_gralora_weights(model, tmp_path / "none.weights.h5")
    fresh = base_model()
    load_gralora_weights(fresh, tmp_path / "none.weights.h5")
    assert keras_gralora.active_adapters(fresh) == []
    np.testing.assert_array_equal(to_numpy(fresh(X)), to_numpy(base_model()(X)))


# --- PEFT directories ---


def write_lora_directory(directory, tensors, config=None, metadata=None):
    """A PEFT LoRA directory for `tests.helpers.base_model` is not possible (no name table): use llama's names."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    config = config or {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata=metadata)
    return directory


def sparse_safetensors(path, key, shape):
    """A safetensors file declaring float32 `shape` whose data is a hole (sparse): tiny on disk."""
    size = int(np.prod(shape)) * 4
    header = json.dumps({key: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + size)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("keras_hub")
    import hf_checkpoints as hf

    return hf.write_checkpoint("llama", str(tmp_path_factory.mktemp("hf") / "llama"))


def llama_backbone(checkpoint):
    import keras_hub

    return keras_hub.models.Backbone.from_preset(checkpoint)


Q = "base_model.model.model.layers.0.self_attn.q_proj"


def _lora(r=4, dtype="float32"):
    rng = np.random.default_rng(0)
    return {
        f"{Q}.lora_A.weight": rng.standard_normal((r, 16)).astype(dtype),
        f"{Q}.lora_B.weight": rng.standard_normal((16, r)).astype(dtype),
    }


def peft_cases(tmp_path):
    cases = {}
    huge = tmp_path / "huge"
    write_lora_directory(huge, _lora())
    sparse_safetensors(huge / "adapter_model.safetensors", f"{Q}.lora_A.weight", (2**18, 2**10))  # 1 GiB declared
    cases[huge] = r"tensor 'model.layers.0.self_attn.q_proj.lora_A.weight' declares shape \(262144, 1024\)"
    cases[write_lora_directory(tmp_path / "ints", _lora(dtype="int32"))] = r"lora_A.weight' is I32"
    cases[write_lora_directory(tmp_path / "missing", {f"{Q}.lora_A.weight": _lora()[f"{Q}.lora_A.weight"]})] = (
        r"module 'model.layers.0.self_attn.q_proj' has no tensor 'lora_B.weight'"
    )
    mixed = write_lora_directory(tmp_path / "mixed", _lora(), metadata={peft_files.CONFIG_HASH: "0" * 64})
    cases[mixed] = r"mixes two saves: its adapter_model.safetensors was written with another adapter_config.json"
    foreign = write_lora_directory(
        tmp_path / "foreign", _lora(r=4), {"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["q_proj"]}
    )
    cases[foreign] = r"declares shape \(4, 16\); .* needs \(8, 16\)\. The config and the weights do not belong together"
    not_json = write_lora_directory(tmp_path / "not_json", _lora())
    (not_json / "adapter_config.json").write_text("{'peft_type': 'LORA'")
    cases[not_json] = r"adapter_config.json' is not JSON"
    a_list = write_lora_directory(tmp_path / "a_list", _lora())
    (a_list / "adapter_config.json").write_text("[1, 2]")
    cases[a_list] = r"holds a JSON list, not the object of a PEFT config"
    truncated = write_lora_directory(tmp_path / "truncated", _lora())
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    cases[truncated] = r"cannot read .*adapter_model.safetensors' as safetensors"
    linked = write_lora_directory(tmp_path / "linked", _lora())
    os.remove(linked / "adapter_model.safetensors")
    os.symlink(huge / "adapter_model.safetensors", linked / "adapter_model.safetensors")
    cases[linked] = r"adapter_model.safetensors' is a symbolic link"
    return cases


def test_crafted_peft_directories_are_refused_before_any_change(llama, tmp_path):
    backbone = llama_backbone(llama)
    before = snapshot(backbone)
    for directory, message in peft_cases(tmp_path).items():
        with pytest.raises(ValueError, match=message):
            keras_gralora.load_peft_adapter(backbone, directory)
        assert_unchanged(backbone, before)
        assert not keras_gralora.adapter_names(backbone), directory
