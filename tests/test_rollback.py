"""Every mutator's write goes through one rollback helper: a write that fails midway leaves the model as it was."""

import keras
import numpy as np
import pytest
from helpers import X, adapted_model, assert_unchanged, base_model, randomize, snapshot

import keras_gralora
from keras_gralora.surgery import inject
from keras_gralora.surgery.rollback import Snapshot


class Boom(RuntimeError):
    pass


@pytest.fixture
def failing_assign(monkeypatch):
    """`arm(n)`: the n-th variable assignment from now raises (a device error midway through a write)."""
    original = keras.Variable.assign
    left = [None]

    def assign(self, value):
        if left[0] is not None:
            left[0] -= 1
            if left[0] == 0:
                raise Boom("injected failure")
        return original(self, value)

    monkeypatch.setattr(keras.Variable, "assign", assign)

    def arm(n):
        left[0] = n

    return arm


def state(model):
    """Everything a mutator may change: values, classes, adapters, active set, trainable flags."""
    layers = model._flatten_layers(include_self=False)
    return (
        [(layer.path, type(layer).__name__, layer.trainable) for layer in layers],
        {layer.path: layer.adapter_names for layer in inject.adapted_layers(model)},
        keras_gralora.active_adapters(model) if inject.adapted_layers(model) else [],
        [(v.path, v.trainable) for v in model.weights],
    )


def test_enable_gralora_failing_on_a_later_layer_leaves_the_model_unadapted(monkeypatch):
    model = base_model()
    before, values = state(model), snapshot(model)
    original, calls = inject.adapt_in_place, []

    def adapt(layer, name, config):
        calls.append(layer.path)
        if len(calls) == 3:
            raise Boom("injected failure")
        original(layer, name, config)

    monkeypatch.setattr(inject, "adapt_in_place", adapt)
    with pytest.raises(Boom):
        keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["query", "ffn", "value"])
    assert state(model) == before and len(calls) == 3
    assert_unchanged(model, values)
    monkeypatch.undo()
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["query", "ffn", "value"])  # still adaptable


def test_a_second_adapter_failing_midway_is_removed_and_the_first_keeps_its_state(monkeypatch):
    model = adapted_model()
    keras_gralora.merge_gralora(model)
    before, values = state(model), snapshot(model)
    original = type(model.get_layer("value")).add_adapter

    def add(self, name, config):
        if self.path == "value":
            raise Boom("injected failure")
        original(self, name, config)

    monkeypatch.setattr(type(model.get_layer("value")), "add_adapter", add)
    with pytest.raises(Boom):
        keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b", target_layer_names=["ffn", "value"])
    assert state(model) == before
    assert_unchanged(model, values)


def test_a_load_failing_midway_through_its_writes_puts_back_values_kernels_and_adapters(tmp_path, failing_assign):
    donor = adapted_model(seed=3)
    path = str(tmp_path / "a.gralora.weights.h5")
    keras_gralora.save_gralora_weights(donor, path)
    model = adapted_model()
    keras_gralora.merge_gralora(model)
    expected = model.predict(X, verbose=0)
    before, values = state(model), snapshot(model)
    failing_assign(5)
    with pytest.raises(Boom):
        keras_gralora.load_gralora_weights(model, path, adapter_names={"default": "other"})
    failing_assign(None)
    assert state(model) == before
    assert_unchanged(model, values)
    np.testing.assert_array_equal(model.predict(X, verbose=0), expected)


def test_a_hotswap_failing_midway_leaves_the_old_adapter_in_place(tmp_path, failing_assign):
    donor = adapted_model(seed=3)
    path = str(tmp_path / "a.gralora.weights.h5")
    keras_gralora.save_gralora_weights(donor, path)
    model = adapted_model()
    values = snapshot(model)
    failing_assign(4)
    with pytest.raises(Boom):
        keras_gralora.hotswap_adapter(model, path, adapter_name="default")
    failing_assign(None)
    assert_unchanged(model, values)
    keras_gralora.hotswap_adapter(model, path, adapter_name="default")
    assert_unchanged(model, {**values, **{k: v for k, v in snapshot(donor).items() if "gralora" in k}})


def test_a_snapshot_restores_kernels_bit_for_bit_after_unmerge_and_new_adapters():
    model = adapted_model()
    keras_gralora.merge_gralora(model)
    before, values = state(model), snapshot(model)
    taken = Snapshot(model, kernels=inject.adapted_layers(model), structure=True)
    keras_gralora.unmerge_gralora(model)
    keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b", target_layer_names=["ffn", "value"])
    keras_gralora.set_active_adapters(model, ["b"])
    taken.restore()
    assert state(model) == before
    assert_unchanged(model, values)


def test_switching_adapters_failing_on_a_later_layer_leaves_every_layer_as_it_was(monkeypatch):
    model = adapted_model()
    keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b", target_layer_names=["ffn", "value"])
    before = state(model)
    original = type(model.get_layer("value")).set_active_adapters

    def switch(self, names):
        original(self, names)
        if self.path == "value" and names == ["b"]:
            raise Boom("injected failure")

    monkeypatch.setattr(type(model.get_layer("value")), "set_active_adapters", switch)
    with pytest.raises(Boom):
        keras_gralora.set_active_adapters(model, ["b"])
    assert state(model) == before


def test_a_delete_failing_on_a_later_layer_puts_the_adapter_back_everywhere(monkeypatch):
    model = adapted_model()
    keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b", target_layer_names=["ffn", "value"])
    randomize(model.get_layer("ffn").adapter("b").variables, seed=4)
    keras_gralora.set_active_adapters(model, ["default", "b"])
    expected = model.predict(X, verbose=0)
    before, values = state(model), snapshot(model)
    original = type(model.get_layer("value")).delete_adapter

    def delete(self, name):
        original(self, name)
        if self.path == "value":
            raise Boom("injected failure")

    monkeypatch.setattr(type(model.get_layer("value")), "delete_adapter", delete)
    with pytest.raises(Boom):
        keras_gralora.delete_adapter(model, "default")  # "query" is unadapted on the way: it only had it
    monkeypatch.undo()
    assert state(model) == before
    assert_unchanged(model, values)
    np.testing.assert_array_equal(model.predict(X, verbose=0), expected)
    keras_gralora.delete_adapter(model, "default")
    assert keras_gralora.adapter_names(model) == ["b"]
