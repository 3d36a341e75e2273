"""Several named adapters, bias modes and modules_to_save against PEFT's own GraLoRA.

The same tiny MLP in torch (PEFT) and Keras, base and adapter weights copied
across; PEFT runs in torch whatever Keras' backend is.
"""

import collections

import keras
import numpy as np
import pytest
from helpers import array, copy_peft_adapter, random_input, to_numpy

import keras_gralora
from keras_gralora.surgery import inject

peft = pytest.importorskip("peft")
torch = pytest.importorskip("torch")

SETTINGS = {"a": dict(r=8, k=2, hybrid_r=0, alpha=12.0), "b": dict(r=4, k=4, hybrid_r=2, alpha=6.0)}
X = random_input((5, 16), seed=3)


def torch_mlp():
    torch.manual_seed(0)
    layers = collections.OrderedDict(
        up=torch.nn.Linear(16, 32), act=torch.nn.ReLU(), down=torch.nn.Linear(32, 16), head=torch.nn.Linear(16, 4)
    )
    return torch.nn.Sequential(layers)


def peft_config(name, **kwargs):
    s = SETTINGS[name]
    return peft.GraloraConfig(
        r=s["r"],
        gralora_k=s["k"],
        hybrid_r=s["hybrid_r"],
        alpha=s["alpha"],
        target_modules=["up", "down"],
        init_weights=False,
        **kwargs,
    )


def peft_two_adapters(**kwargs):
    model = peft.get_peft_model(torch_mlp(), peft_config("a", **kwargs), adapter_name="a")
    model.add_adapter("b", peft_config("b"))
    return model


def keras_mlp(peft_model=None):
    inputs = keras.Input((16,))
    x = keras.layers.Dense(32, activation="relu", name="up")(inputs)
    x = keras.layers.Dense(16, name="down")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    if peft_model is not None:
        for name in ("up", "down", "head"):
            module = peft_model.base_model.model.get_submodule(name)
            module = getattr(module, "base_layer", getattr(module, "original_module", module))
            model.get_layer(name).set_weights([array(module.weight).T, array(module.bias)])
    return model


def keras_two_adapters(peft_model, **kwargs):
    model = keras_mlp(peft_model)
    for name in ("a", "b"):
        keras_gralora.enable_gralora(
            model,
            **SETTINGS[name],
            target_layer_names=["up", "down"],
            adapter_name=name,
            **(kwargs if name == "a" else {}),
        )
        for layer in ("up", "down"):
            copy_peft_adapter(model.get_layer(layer), peft_model.base_model.model.get_submodule(layer), name)
    return model


def peft_output(model):
    with torch.no_grad():
        return model(torch.from_numpy(X)).numpy()


def assert_output(model, expected):
    np.testing.assert_allclose(to_numpy(model(X)), expected, rtol=1e-5, atol=1e-5)


def test_active_adapters_sum_switch_and_disable_like_peft():
    peft_model = peft_two_adapters()
    model = keras_two_adapters(peft_model)
    assert keras_gralora.active_adapters(model) == ["a"]  # a new adapter is not made active
    assert_output(model, peft_output(peft_model))

    peft_model.base_model.set_adapter(["a", "b"])
    keras_gralora.set_active_adapters(model, ["a", "b"])
    both = peft_output(peft_model)
    assert_output(model, both)
    assert not np.allclose(both, to_numpy(keras_two_adapters(peft_model)(X)), atol=1e-3)  # b matters

    peft_model.base_model.set_adapter("b")
    keras_gralora.set_active_adapters(model, "b")
    assert_output(model, peft_output(peft_model))
    assert {v.name for v in model.trainable_weights} == {
        f"{role}_b" for role in ("gralora_a", "gralora_b", "gralora_hybrid_a", "gralora_hybrid_b")
    }

    with peft_model.disable_adapter():
        base = peft_output(peft_model)
    with keras_gralora.disable_gralora(model):
        assert_output(model, base)
    assert_output(model, peft_output(peft_model))  # as before on exit


def test_merging_a_subset_keeps_outputs_and_equals_peft_kernels():
    peft_model = peft_two_adapters()
    model = keras_two_adapters(peft_model)
    peft_model.base_model.set_adapter(["a", "b"])
    keras_gralora.set_active_adapters(model, ["a", "b"])
    expected = peft_output(peft_model)
    keras_gralora.merge_gralora(model, ["b"])
    assert [model.get_layer(n).merged_adapters for n in ("up", "down")] == [["b"], ["b"]]
    assert_output(model, expected)  # merged b in the kernel, a still added on top
    peft_model.base_model.merge_adapter(["b"])
    for name in ("up", "down"):
        weight = array(peft_model.base_model.model.get_submodule(name).base_layer.weight).T
        np.testing.assert_allclose(to_numpy(model.get_layer(name)._kernel), weight, rtol=1e-5, atol=1e-6)

    with keras_gralora.disable_gralora(model):  # unmerged inside, restored exactly after
        with peft_model.disable_adapter():
            assert_output(model, peft_output(peft_model))
    assert_output(model, expected)
    with pytest.raises(ValueError, match=r"adapter 'b' is merged into \['up', 'down'\]; unmerge first"):
        keras_gralora.delete_adapter(model, "b")
    keras_gralora.unmerge_gralora(model)
    assert not any(layer.merged for layer in inject.adapted_layers(model))
    assert_output(model, expected)


def test_delete_adapter_like_peft_then_plain_layers():
    peft_model = peft_two_adapters()
    model = keras_two_adapters(peft_model)
    up = model.get_layer("up")
    peft_model.base_model.set_adapter(["a", "b"])
    keras_gralora.set_active_adapters(model, ["a", "b"])
    peft_model.delete_adapter("a")
    keras_gralora.delete_adapter(model, "a")
    assert up.adapter_names == ["b"] and keras_gralora.active_adapters(model) == ["b"]
    assert "gralora_a_a" not in {v.name for v in model.weights}
    assert_output(model, peft_output(peft_model))
    with peft_model.disable_adapter():
        base = peft_output(peft_model)
    keras_gralora.delete_adapter(model, "b")
    assert type(up) is keras.layers.Dense and model.get_layer("up") is up
    assert not inject.adapted_layers(model) and not model.trainable_weights
    assert_output(model, base)


@pytest.mark.parametrize("bias", ["none", "all", "gralora_only"])
@pytest.mark.parametrize("modules_to_save", [None, ["head"]])
def test_trainable_counts_equal_peft(bias, modules_to_save):
    peft_model = peft_two_adapters(bias=bias, modules_to_save=modules_to_save)
    model = keras_two_adapters(peft_model, bias=bias, modules_to_save=modules_to_save)
    expected = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected
    assert_output(model, peft_output(peft_model))
    if modules_to_save:  # only the active adapter's module copy trains in PEFT
        keras_gralora.set_active_adapters(model, "b")
        peft_model.base_model.set_adapter("b")
        expected = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected
