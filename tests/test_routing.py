"""Per-row adapter routing: each row equals its adapter alone, no retrace on a new routing, refusals change nothing."""

import threading

import keras
import numpy as np
import pytest
from helpers import (
    BASE,
    alone,
    assert_unchanged,
    layouts_model,
    random_input,
    randomize,
    snapshot,
    tiny_gemma,
    to_numpy,
)

import keras_gralora
from keras_gralora.layers import routed

NAMES = ["a", "b", BASE, "c", "b", "a"]


@pytest.fixture
def traces(monkeypatch):
    """How often a routed layer's output was computed in Python: once per trace when compiled."""
    count = [0]
    original = routed.routed_output

    def counting(*args):
        count[0] += 1
        return original(*args)

    monkeypatch.setattr(routed, "routed_output", counting)
    return count


@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
def test_each_row_equals_its_adapter_alone_in_calls_and_predict(quantize):
    model = layouts_model(quantize)
    x = random_input((6, 5, 16))
    want = alone(model, NAMES, x, model)
    with keras_gralora.adapter_routing(model, NAMES) as routing:
        np.testing.assert_allclose(to_numpy(model(x)), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model.predict(x, batch_size=4, verbose=0), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_numpy(model.predict_on_batch(x)), want, rtol=1e-5, atol=1e-5)
        assert routing.names == NAMES
    np.testing.assert_allclose(to_numpy(model(x[:1])), want[:1], rtol=1e-5, atol=1e-5)  # outside: adapter 'a'


def test_base_rows_are_the_base_model_and_a_layer_without_the_adapter_computes_its_base():
    model = layouts_model()
    x = random_input((3, 5, 16))
    with keras_gralora.disable_gralora(model):
        base = to_numpy(model(x))
    with keras_gralora.adapter_routing(model, [BASE] * 3):
        np.testing.assert_allclose(to_numpy(model(x)), base, rtol=1e-6, atol=1e-6)
    want = alone(model, ["c"] * 3, x, model)
    with keras_gralora.adapter_routing(model, ["c"] * 3):  # 'c' lacks query and key: those layers give base
        np.testing.assert_allclose(to_numpy(model(x)), want, rtol=1e-5, atol=1e-5)


def test_a_new_routing_between_predicts_gives_new_outputs_without_a_new_trace(traces):
    model = layouts_model()
    x = random_input((6, 5, 16))
    other = NAMES[::-1]
    want, want_other = alone(model, NAMES, x, model), alone(model, other, x, model)
    with keras_gralora.adapter_routing(model, NAMES) as routing:
        np.testing.assert_allclose(model.predict(x, batch_size=6, verbose=0), want, rtol=1e-5, atol=1e-5)
        function, traced = model.predict_function, traces[0]
        routing.route(other)
        np.testing.assert_allclose(model.predict(x, batch_size=6, verbose=0), want_other, rtol=1e-5, atol=1e-5)
    with keras_gralora.adapter_routing(model, NAMES):  # entering again: the same compiled function
        np.testing.assert_allclose(model.predict(x, batch_size=6, verbose=0), want, rtol=1e-5, atol=1e-5)
    assert model.predict_function is function
    if keras.backend.backend() != "torch":  # torch runs predict eagerly: every call computes anew
        assert traces[0] == traced
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), want[:1], rtol=1e-5, atol=1e-5)  # unrouted again


def test_routing_holds_in_its_own_thread_only():
    model = layouts_model()
    x = random_input((2, 5, 16))
    plain = to_numpy(model(x))
    seen = {}
    entered, done = threading.Event(), threading.Event()

    def other_thread():
        entered.wait()
        seen["other"] = to_numpy(model(x))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with keras_gralora.adapter_routing(model, ["b", "c"]):
        entered.set()
        done.wait()
        routed_output = to_numpy(model(x))
    thread.join()
    np.testing.assert_allclose(seen["other"], plain, rtol=1e-6, atol=1e-6)
    assert np.abs(routed_output - plain).max() > 1e-3


def test_every_refusal_names_the_problem_and_changes_nothing():
    model = layouts_model()
    x = random_input((2, 5, 16))
    before = snapshot(model)
    for names, match in [(["a", "zzz"], "no adapter named"), ("a", "must be a list with one adapter name")]:
        with pytest.raises(ValueError, match=match):
            keras_gralora.adapter_routing(model, names).__enter__()
    with keras_gralora.adapter_routing(model, ["a", "b", "c"]):
        with pytest.raises(ValueError, match="3 adapter names, but .* batch of 2 rows"):
            model(x)
        with pytest.raises(ValueError, match="3 adapter names for 2 rows"):
            model.predict(x, verbose=0)
        with pytest.raises(ValueError, match="training=True"):
            model(random_input((3, 5, 16)), training=True)
        model.compile(optimizer="sgd", loss="mse")
        with pytest.raises(ValueError, match="training: model .* for inference"):
            model.fit(random_input((3, 5, 16)), np.zeros((3, 5, 8)), verbose=0)
        with pytest.raises(ValueError, match="evaluation"):
            model.evaluate(random_input((3, 5, 16)), np.zeros((3, 5, 8)), verbose=0)
        for change in (
            keras_gralora.merge_gralora,
            lambda m: keras_gralora.disable_gralora(m).__enter__(),
            lambda m: keras_gralora.delete_adapter(m, "c"),
            lambda m: keras_gralora.set_active_adapters(m, "b"),
        ):
            with pytest.raises(ValueError, match="inside adapter_routing"):
                change(model)
        with pytest.raises(ValueError, match="needs the rows in memory"):
            model.predict(iter([x]), verbose=0)
    assert_unchanged(model, before)
    keras_gralora.merge_gralora(model)
    with pytest.raises(ValueError, match="merged"):
        keras_gralora.adapter_routing(model, ["a"]).__enter__()
    keras_gralora.unmerge_gralora(model)


def test_adapters_that_train_shared_weights_are_refused():
    model = layouts_model()
    keras_gralora.enable_gralora(
        model, r=2, k=2, adapter_name="heads", target_layer_names=["dense"], modules_to_save=["head"]
    )
    with pytest.raises(ValueError, match="modules_to_save"):
        keras_gralora.adapter_routing(model, ["a"]).__enter__()
    keras_gralora.delete_adapter(model, "heads")
    keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="biased", target_layer_names=["dense"], bias="all")
    with pytest.raises(ValueError, match="trains biases"):
        keras_gralora.adapter_routing(model, ["a"]).__enter__()


def test_a_task_with_a_preprocessor_routes_raw_strings_in_predict():
    keras_hub = pytest.importorskip("keras_hub")
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=6)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=6,
    )
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    for name in ("pos", "neg"):
        backbone.enable_gralora(r=2, k=2, adapter_name=name, target_layer_names="all")
    rng = np.random.default_rng(0)
    for v in backbone.weights:
        if "gralora" in v.path:
            v.assign(rng.standard_normal(v.shape).astype("float32"))
    texts = ["good film", "very bad film", "bad", "good"]
    names = ["pos", "neg", BASE, "neg"]
    want = alone(backbone, names, np.array(texts), lambda t: classifier.predict(list(t), verbose=0))
    with keras_gralora.adapter_routing(backbone, names):
        np.testing.assert_allclose(classifier.predict(texts, batch_size=2, verbose=0), want, rtol=1e-5, atol=1e-5)


def test_a_task_without_a_preprocessor_routes_its_arrays_in_predict():
    """KerasHub batches a task's inputs into a dataset first: the rows must still go in beside them."""
    pytest.importorskip("keras_hub")
    backbone, lm = tiny_gemma()
    for name in ("a", "b"):
        backbone.enable_gralora(r=2, k=2, adapter_name=name)
    randomize([v for v in backbone.weights if "gralora" in v.path], seed=3)
    ids = np.random.default_rng(0).integers(1, 48, (4, 6)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    names = ["a", BASE, "b", "a"]
    want = alone(backbone, names, np.arange(4), lambda i: lm.predict({k: v[i] for k, v in x.items()}, verbose=0))
    with keras_gralora.adapter_routing(backbone, names):
        np.testing.assert_allclose(lm.predict(x, batch_size=2, verbose=0), want, rtol=1e-5, atol=1e-5)


def test_nested_routings_over_two_models_each_route_their_own_model():
    outer, inner = layouts_model(), layouts_model()
    x = random_input((3, 5, 16))
    names = {id(outer): ["a", "b", BASE], id(inner): ["c", BASE, "a"]}
    want = {id(m): alone(m, names[id(m)], x, m) for m in (outer, inner)}
    with keras_gralora.adapter_routing(outer, names[id(outer)]):
        with keras_gralora.adapter_routing(inner, names[id(inner)]):
            for model in (outer, inner):
                np.testing.assert_allclose(to_numpy(model(x)), want[id(model)], rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(model.predict(x, verbose=0), want[id(model)], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_numpy(outer(x)), want[id(outer)], rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="is inside adapter_routing"):  # the same model twice: refused
            keras_gralora.adapter_routing(outer, ["b", "b", "b"]).__enter__()


def test_an_empty_batch_routes_and_base_is_no_adapter_name():
    model = layouts_model()
    empty = random_input((0, 5, 16))
    with keras_gralora.adapter_routing(model, []) as routing:
        assert routing.names == [] and tuple(model(empty).shape) == (0, 5, 8)
    for make in (
        lambda: keras_gralora.enable_gralora(model, r=2, k=2, adapter_name=BASE),
        lambda: model.get_layer("dense").add_adapter(BASE, keras_gralora.GraLoRAConfig(r=2, k=2)),
    ):
        with pytest.raises(ValueError, match="adapter_name='__base__' is reserved: `adapter_routing` reads it"):
            make()
    assert keras_gralora.adapter_names(model) == ["a", "b", "c"]
