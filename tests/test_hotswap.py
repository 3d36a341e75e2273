"""Hot-swapping adapters into compiled predict and generate, and routed generate, with no new trace."""

import sys
import threading

import keras
import numpy as np
import pytest
from helpers import BASE, alone, assert_unchanged, layouts_model, random_input, snapshot, tiny_gemma, to_numpy

import keras_gralora
from keras_gralora.layers.adapter import GraLoRAAdapter

COMPILED = keras.backend.backend() != "torch"  # torch runs predict and generate eagerly: no trace to count


@pytest.fixture
def calls(monkeypatch):
    """Python calls of the adapters' forward pass: one per trace when compiled."""
    count = [0]
    original = GraLoRAAdapter._gralora_output

    def counting(self, *args):
        count[0] += 1
        return original(self, *args)

    monkeypatch.setattr(GraLoRAAdapter, "_gralora_output", counting)
    return count


def randomize(model, scale=0.3, seed=0, adapter=""):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "gralora" in v.path and v.path.endswith(adapter):
            v.assign(rng.standard_normal(v.shape).astype("float32") * scale)


def donor_file(model, tmp_path, **settings):
    """Adapter "donor" (settings given) saved from `model` to a file; returns the file and `model`'s outputs with it."""
    keras_gralora.enable_gralora(model, adapter_name="donor", **settings)
    randomize(model, scale=settings.pop("scale", 0.3), seed=7, adapter="_donor")
    tmp_path.mkdir(exist_ok=True)
    path = str(tmp_path / "donor.gralora.weights.h5")
    keras_gralora.save_gralora_weights(model, path, adapter_names="donor")
    deltas = {
        layer.path: to_numpy(layer.delta_matrix("donor"))
        for layer in model._flatten_layers()
        if isinstance(layer, GraLoRAAdapter) and "donor" in layer.adapter_names
    }
    keras_gralora.delete_adapter(model, "donor")
    return path, deltas


def test_prepare_pads_with_zeros_and_keeps_the_outputs():
    model = layouts_model()
    x = random_input((2, 5, 16))
    want = {name: alone(model, [name] * 2, x, model) for name in ("a", "b")}
    keras_gralora.prepare_model_for_compiled_hotswap(model, target_rank=16, target_hybrid_rank=4, adapter_names="a")
    config = model.get_layer("dense").adapter("a").config
    assert (config.r, config.hybrid_r, config.scale) == (16, 4, 2.0)
    assert tuple(model.get_layer("key").adapter("a").variables[0].shape) == (2, 8, 16)
    for name in ("a", "b"):
        np.testing.assert_allclose(alone(model, [name] * 2, x, model), want[name], rtol=1e-5, atol=1e-5)
    assert keras_gralora.adapter_names(model) == ["b", "c", "a"]  # "a"'s new variables are the newest
    for target, match in [(5, "multiple of k=2"), (2, "integer >= 4")]:
        with pytest.raises(ValueError, match=match):
            keras_gralora.prepare_model_for_compiled_hotswap(model, target_rank=target, adapter_names="c")


def test_a_smaller_adapter_of_another_scale_hot_swaps_into_compiled_predict(tmp_path, calls):
    model = layouts_model()
    path, deltas = donor_file(model, tmp_path, r=2, k=2, alpha=7.0, target_layer_names=["dense", "out"])
    x = random_input((4, 5, 16))
    keras_gralora.set_active_adapters(model, "a")
    before = model.predict(x, verbose=0)
    function, traced = model.predict_function, calls[0]
    assert keras_gralora.hotswap_adapter(model, path, "a") == ["dense", "query", "key", "out"]
    for layer in ("dense", "out"):
        np.testing.assert_allclose(to_numpy(model.get_layer(layer).delta_matrix("a")), deltas[layer], atol=1e-6)
    for layer in ("query", "key"):  # the donor does not adapt them: their base
        assert not to_numpy(model.get_layer(layer).delta_matrix("a")).any()
    got = model.predict(x, verbose=0)
    assert model.predict_function is function and np.abs(got - before).max() > 1e-3
    if COMPILED:
        assert calls[0] == traced
    np.testing.assert_allclose(got, to_numpy(model(x)), rtol=1e-5, atol=1e-5)  # eager: the variables as they are


def test_what_does_not_fit_is_refused_and_nothing_changes(tmp_path):
    model = layouts_model()
    big, _ = donor_file(model, tmp_path / "big", r=16, k=2, target_layer_names=["dense"])
    other_k, _ = donor_file(model, tmp_path / "k4", r=4, k=4, target_layer_names=["dense"])
    wide, _ = donor_file(model, tmp_path / "wide", r=4, k=2, target_layer_names=["dense", "query"])
    biased, _ = donor_file(model, tmp_path / "bias", r=4, k=2, target_layer_names=["dense"], bias="gralora_only")
    before = snapshot(model)
    for source, name, match in [
        (big, "a", "r=16 above the slot's r=4"),
        (other_k, "a", "k=4 in the source"),
        (wide, "c", "adapts layer 'query', where adapter 'c' does not exist"),
        (biased, "a", "trained biases"),
        (big, "zzz", "no adapter named"),
    ]:
        with pytest.raises(ValueError, match=match):
            keras_gralora.hotswap_adapter(model, source, name)
    assert_unchanged(model, before)


PROMPT = {
    "token_ids": np.array([[5, 9, 3, 0, 0, 0, 0, 0]] * 4, "int32"),
    "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]] * 4, bool),
}


def test_routed_generate_and_hot_swaps_from_a_file_and_a_peft_directory_without_a_new_trace(tmp_path, calls):
    backbone, lm = tiny_gemma()

    def generate(_=None):
        return np.asarray(lm.generate(PROMPT, stop_token_ids=None)["token_ids"])[:1]

    for name in ("a", "b"):
        backbone.enable_gralora(r=4, k=2, adapter_name=name, target_layer_names="all")
    randomize(backbone, scale=1.0)
    single = {name: alone(backbone, [name], [None], generate) for name in ("a", "b", BASE)}
    keras_gralora.enable_gralora(backbone, r=2, k=2, alpha=3.0, adapter_name="donor", target_layer_names="all")
    randomize(backbone, scale=1.0, seed=7, adapter="_donor")
    single["donor"] = alone(backbone, ["donor"], [None], generate)
    path = str(tmp_path / "donor.gralora.weights.h5")
    keras_gralora.save_gralora_weights(backbone, path, adapter_names="donor")
    keras_gralora.save_peft_adapter(backbone, tmp_path / "peft", adapter_name="donor")
    keras_gralora.delete_adapter(backbone, "donor")

    def routed(names):
        return np.asarray(lm.generate(PROMPT, stop_token_ids=None)["token_ids"])

    names = ["a", BASE, "b", "a"]
    with keras_gralora.adapter_routing(backbone, names) as routing:
        np.testing.assert_array_equal(routed(names), np.concatenate([single[n] for n in names]))
        traced = calls[0]
        routing.route(names[::-1])
        np.testing.assert_array_equal(routed(names), np.concatenate([single[n] for n in names[::-1]]))
        routing.route(names)
        keras_gralora.hotswap_adapter(backbone, path, "a")  # the rank-2 donor into the rank-4 slot
        expected = [single[n] for n in ["donor", BASE, "b", "donor"]]
        np.testing.assert_array_equal(routed(names), np.concatenate(expected))
        keras_gralora.hotswap_adapter(backbone, tmp_path / "peft", "b")  # PEFT's layout
        np.testing.assert_array_equal(routed(names)[2], single["donor"][0])
        if COMPILED:
            assert calls[0] == traced
    with pytest.raises(ValueError, match="3 adapter names for 4 prompts"):
        with keras_gralora.adapter_routing(backbone, names[:3]):
            routed(names)


def two_versions(model, tmp_path, name="a"):
    """Files holding two trainings of adapter `name` (the model keeps the second); their outputs on `x`."""
    paths = []
    for seed in (1, 2):
        randomize(model, scale=0.5, seed=seed, adapter=f"_{name}")
        paths.append(str(tmp_path / f"v{seed}.gralora.weights.h5"))
        keras_gralora.save_gralora_weights(model, paths[-1], adapter_names=name)
    return paths


@pytest.fixture
def interleaving():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside every call
    yield
    sys.setswitchinterval(interval)


@pytest.mark.parametrize("serve", ["call", "predict"])
def test_a_hotswap_beside_serving_threads_is_all_or_nothing(tmp_path, serve, interleaving):
    """Passes in other threads see the old adapter or the new one, never a mix; no pass or swap fails.

    One thread predicts (jax's `predict` takes the model's variables out while it runs, so Keras itself
    cannot run two at once on one model); three call the model eagerly.
    """
    model = layouts_model()
    keras_gralora.set_active_adapters(model, "a")
    paths = two_versions(model, tmp_path)
    x = random_input((4, 5, 16))
    expected = []
    for path in paths:
        keras_gralora.hotswap_adapter(model, path, "a")
        expected.append(to_numpy(model(x)))
    assert np.abs(expected[0] - expected[1]).max() > 1e-2
    wrong, failures, done = [], [], threading.Event()

    def one_pass():
        return model.predict(x, verbose=0) if serve == "predict" else to_numpy(model(x))

    def client():
        try:
            while not done.is_set():
                out = one_pass()
                if not any(np.allclose(out, want, rtol=1e-5, atol=1e-5) for want in expected):
                    wrong.append(min(np.abs(out - want).max() for want in expected))
        except Exception as error:  # reported below, with the swaps'
            failures.append(repr(error))

    clients = [threading.Thread(target=client) for _ in range(1 if serve == "predict" else 3)]
    for thread in clients:
        thread.start()
    try:
        for i in range(12):
            keras_gralora.hotswap_adapter(model, paths[i % 2], "a")
    finally:
        done.set()
        for thread in clients:
            thread.join()
    assert (wrong, failures) == ([], [])
    np.testing.assert_allclose(to_numpy(model(x)), expected[1], rtol=1e-5, atol=1e-5)  # the last swap holds


def test_a_hotswap_inside_disable_gralora_or_a_pass_is_refused_and_a_missing_source_named(tmp_path):
    model = layouts_model()
    path = two_versions(model, tmp_path)[0]
    keras_gralora.merge_gralora(model, ["a"])
    kernels = {v.path: to_numpy(v) for v in model.weights if v.path.endswith("kernel")}
    before = snapshot(model)
    with keras_gralora.disable_gralora(model):  # on exit it puts the old merged kernel back
        with pytest.raises(ValueError, match="inside `disable_gralora\\(\\)`"):
            keras_gralora.hotswap_adapter(model, path, "a")
    assert_unchanged(model, before)
    keras_gralora.unmerge_gralora(model)
    keras_gralora.merge_gralora(model, ["a"])
    for v in model.weights:  # the base was not corrupted: merging again gives the same merged kernels
        if v.path in kernels:
            np.testing.assert_allclose(to_numpy(v), kernels[v.path], rtol=1e-6, atol=1e-6)
    keras_gralora.unmerge_gralora(model)
    swapping = keras.callbacks.LambdaCallback(
        on_predict_batch_end=lambda *_, **__: keras_gralora.hotswap_adapter(model, path)
    )
    with pytest.raises(ValueError, match="inside a forward pass, predict or generate of this thread"):
        model.predict(random_input((2, 5, 16)), verbose=0, callbacks=[swapping])
    with pytest.raises(FileNotFoundError, match="'missing-dir/' does not exist; the source is a `.weights.h5`"):
        keras_gralora.hotswap_adapter(model, "missing-dir/", "a")
