"""The name tables are KerasHub's converters, and every architecture goes to PEFT and back with them.

For each architecture of `tiny_transformers.TINY`: the shipped table equals
the one derived again from KerasHub's converter, our GraLoRA adapter saved
as a PEFT directory and merged by PEFT itself gives the weights our merge
gives (both read back through KerasHub's converter), and PEFT's adapter
loaded by us does the same. Weights after merging carry the whole delta of
every adapted module, so equal weights mean equal outputs.
"""

import json
import os
import re
import sys

import keras
import numpy as np
import peft
import pytest
import tiny_transformers as tiny
import torch
import transformers

import keras_gralora
from keras_gralora.interop import names
from keras_gralora.surgery import structure

keras_hub = pytest.importorskip("keras_hub")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import name_tables  # noqa: E402

ROUNDED = {"mistral": 1e-3}  # convert_mistral.py stores weights through float16
with open(names.TABLES) as _file:
    SHIPPED = json.load(_file)


@pytest.mark.parametrize("model_type", list(tiny.TINY))
def test_the_shipped_table_is_what_kerashubs_converter_does(model_type, tmp_path):
    assert name_tables.derive(model_type, str(tmp_path)) == SHIPPED[model_type]


def test_every_kerashub_converter_has_a_table_or_says_why_not():
    from keras_hub.src.utils.transformers import preset_loader

    def converter(model_type):
        return preset_loader.TransformersPresetLoader("unused", {"model_type": model_type}).converter.__name__

    converters = {value.__name__ for name, value in vars(preset_loader).items() if name.startswith("convert_")}
    covered = {converter(model_type).rsplit(".", 1)[1] for model_type in tiny.TINY}
    assert set(SHIPPED) == set(tiny.TINY)
    assert {name.rsplit(".", 1)[1] for name in converters} == covered | set(tiny.NO_TABLE)
    assert not covered & set(tiny.NO_TABLE)


def _checkpoint(model_type, root):
    directory = str(root / "base")
    classes = tiny.write(model_type, directory)
    architecture = next(a for a in names.ARCHITECTURES if a.name == model_type)
    return directory, classes, architecture


def _adaptable(backbone, architecture):
    """Layer paths of the mapped modules that GraLoRA adapts (Dense / EinsumDense kernels, block 0 and 1)."""
    layers = {layer.path: layer for layer in backbone._flatten_layers(include_self=False)}
    paths = [names._fill(path, [block] * path.count("{")) for path in architecture.modules.values() for block in (0, 1)]
    dense = (keras.layers.Dense, keras.layers.EinsumDense)
    return sorted({p for p in paths if isinstance(layers.get(p), dense) and len(layers[p].kernel.shape) <= 3})


def _through_peft_merge(model_type, checkpoint, classes, class_name, adapter, root):
    """PEFT merges `adapter` into the checkpoint; the result read back by KerasHub's converter: `{path: array}`."""
    written, base, _ = classes
    model = getattr(transformers, class_name).from_pretrained(checkpoint).eval()
    merged = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    full = getattr(transformers, written).from_pretrained(checkpoint)
    target = full.base_model if class_name == base else full
    own = target.state_dict()
    state = {key: value for key, value in merged.state_dict().items() if key in own}  # RobertaModel adds a pooler
    assert len(state) > len(own) // 2
    target.load_state_dict(state, strict=False)
    full.save_pretrained(str(root / "merged"))
    tiny.with_transformers_4_keys(model_type, str(root / "merged"), full.config)
    return _weights(keras_hub.models.Backbone.from_preset(str(root / "merged")))


def _weights(model):
    """`{structure key: array}`: keyed by the object structure, as two builds have auto-generated names of their own."""
    keys = structure.variable_keys(model)
    return {keys[id(v)]: keras.ops.convert_to_numpy(v) for v in model.weights}


def _assert_weights_equal(ours, theirs, model_type, changed):
    assert set(ours) == set(theirs)
    tolerance = ROUNDED.get(model_type, 1e-5)
    for path in theirs:
        scale = max(1.0, float(np.abs(theirs[path]).max()))
        np.testing.assert_allclose(ours[path], theirs[path], atol=tolerance * scale, err_msg=path)
    assert changed  # the adapters moved some kernels


@pytest.mark.parametrize("model_type", list(tiny.TINY))
def test_our_adapter_merged_by_peft_equals_our_merge(model_type, tmp_path):
    checkpoint, classes, architecture = _checkpoint(model_type, tmp_path)
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    targets = _adaptable(backbone, architecture)
    assert targets, f"{model_type}: no adaptable mapped layer"
    base = _weights(backbone)
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, alpha=6, target_layer_names="|".join(map(re.escape, targets)))
    rng = np.random.default_rng(0)
    for variable in backbone.trainable_weights:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    keras_gralora.save_peft_adapter(backbone, tmp_path / "adapter", base_model_name_or_path=checkpoint)
    class_name = architecture.saves_as["Backbone"]
    theirs = _through_peft_merge(model_type, checkpoint, classes, class_name, tmp_path / "adapter", tmp_path)
    keras_gralora.merge_and_unload(backbone)
    ours = _weights(backbone)
    changed = [p for p in ours if p in base and np.abs(ours[p] - base[p]).max() > 1e-3]
    _assert_weights_equal(ours, theirs, model_type, changed)


@pytest.mark.parametrize("model_type", list(tiny.TINY))
def test_a_peft_adapter_loads_and_merges_as_peft_merges_it(model_type, tmp_path):
    checkpoint, classes, architecture = _checkpoint(model_type, tmp_path)
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    class_name = architecture.saves_as["Backbone"]
    prefix = architecture.classes[class_name][0]
    modules = [
        names.transformers_module(architecture, class_name, p, "test") for p in _adaptable(backbone, architecture)
    ]
    config = peft.GraloraConfig(r=4, gralora_k=2, hybrid_r=2, alpha=6, target_modules=modules, init_weights=False)
    torch.manual_seed(1)
    model = getattr(transformers, class_name).from_pretrained(checkpoint)
    peft.get_peft_model(model, config).save_pretrained(tmp_path / "adapter")
    assert all(m.startswith(prefix) for m in modules)
    keras_gralora.load_peft_adapter(backbone, tmp_path / "adapter")
    base = _weights(keras_hub.models.Backbone.from_preset(checkpoint))
    theirs = _through_peft_merge(model_type, checkpoint, classes, class_name, tmp_path / "adapter", tmp_path)
    keras_gralora.merge_and_unload(backbone)
    ours = _weights(backbone)
    changed = [p for p in ours if np.abs(ours[p] - base[p]).max() > 1e-3]
    _assert_weights_equal(ours, theirs, model_type, changed)
