"""GraLoRA under keras.distribution on 8 devices: ModelParallel (2 x 4 mesh, KerasHub's layout maps), DataParallel.

Runs on jax with 8 virtual CPU devices (`XLA_FLAGS` set before jax starts:
see `conftest.py` and the README's test command). Every case is compared
with the same seed and data on one device.
"""

import contextlib
import re

import keras
import numpy as np
import pytest
from helpers import to_numpy

import keras_gralora
from keras_gralora.surgery import inject

keras_hub = pytest.importorskip("keras_hub")
models = keras_hub.models

SIZES = dict(
    vocabulary_size=48, num_layers=2, hidden_dim=16, intermediate_dim=32, num_query_heads=4, num_key_value_heads=4
)  # heads and widths divide the 2 x 4 mesh's axes
CASES = {
    "gemma": (
        lambda: models.GemmaBackbone(head_dim=8, **SIZES),
        models.GemmaCausalLM,
        models.GemmaBackbone,
        ["query", "value", "ffw_linear"],
    ),
    "llama": (
        lambda: models.LlamaBackbone(**SIZES),
        models.LlamaCausalLM,
        models.LlamaBackbone,
        ["query", "value", "feedforward_output_dense"],
    ),
}
SEQ, BATCH = 8, 8


def distribution(kind, backbone_class, layout_map_extra=None):
    devices = keras.distribution.list_devices()
    if kind == "data_parallel":
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices=devices)
    layout_map = backbone_class.get_layout_map(mesh)
    for key, layout in (layout_map_extra or {}).items():
        layout_map[key] = layout
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def data():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, 48, (2 * BATCH, SEQ)).astype("int32")
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}, np.roll(token_ids, -1, axis=1)


def trained(name, dist=None, steps=2, hybrid_r=2):
    """A tiny adapted CausalLM trained `steps` batches under `dist` (or one device): (task, losses)."""
    make, task_class, _, targets = CASES[name]
    with dist.scope() if dist else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        task = task_class(make(), preprocessor=None)
        task.backbone.enable_gralora(r=4, k=2, hybrid_r=hybrid_r, target_layer_names=targets)
        for v in task.backbone.trainable_weights:  # B starts at zero: make the adapters matter from step 0
            v.assign(np.random.default_rng(1).standard_normal(v.shape).astype("float32") * 0.1)
        task.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        x, y = data()
        history = task.fit(x, y, batch_size=BATCH, epochs=steps, shuffle=False, verbose=0)
    return task, history.history["loss"]


def specs(model):
    """`{path: partition spec}`, trailing `None`s dropped (jax writes `P('model', 'batch', None)` either way)."""

    def normal(spec):
        spec = tuple(spec)
        while spec and spec[-1] is None:
            spec = spec[:-1]
        return spec

    return {v.path: normal(v.value.sharding.spec) for v in model.weights}


def assert_close(a, b):
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["model_parallel", "data_parallel"])
@pytest.mark.parametrize("name", list(CASES))
def test_training_equals_one_device_and_keeps_every_layout(name, kind):
    _, _, backbone_class, _ = CASES[name]
    dist = distribution(kind, backbone_class)
    single, single_losses = trained(name)
    task, losses = trained(name, dist)
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
    for a, b in zip(task.backbone.trainable_weights, single.backbone.trainable_weights):
        assert a.path == b.path
        assert_close(a, b)
    with dist.scope():
        plain = CASES[name][0]()
    base, adapted = specs(plain), specs(task.backbone)
    assert {path: adapted[path] for path in base} == base  # the base kernels keep their layouts
    if kind == "model_parallel":
        sharded = [path for path, spec in base.items() if any(spec)]
        assert any("query/kernel" in path for path in sharded)
    adapters = [v.path for v in task.backbone.weights if "gralora_" in v.path]
    assert adapters and all(not any(adapted[path]) for path in adapters)  # replicated by default

    x, y = data()
    np.testing.assert_allclose(
        task.evaluate(x, y, batch_size=BATCH, verbose=0), single.evaluate(x, y, batch_size=BATCH, verbose=0), rtol=1e-5
    )
    assert_close(task.predict(x, batch_size=BATCH, verbose=0), single.predict(x, batch_size=BATCH, verbose=0))
    expected = to_numpy(task.backbone(x))
    keras_gralora.merge_gralora(task.backbone)
    assert specs(task.backbone) == adapted  # merged kernels keep their layouts
    assert_close(task.backbone(x), expected)


def test_a_layout_map_key_for_adapter_paths_is_honoured():
    dist = distribution("model_parallel", models.GemmaBackbone, {".*gralora_b_default": (None, None, "model")})
    task, _ = trained("gemma", dist, steps=1)
    layouts = specs(task.backbone)
    b = [path for path in layouts if path.endswith("gralora_b_default")]
    assert b and all(layouts[path] == (None, None, "model") for path in b)


def test_adapter_and_keras_files_save_from_and_load_onto_sharded_models(tmp_path):
    dist = distribution("model_parallel", models.LlamaBackbone)
    task, _ = trained("llama", dist, steps=1)
    x, _ = data()
    expected = to_numpy(task.backbone(x))
    task.backbone.save_gralora_weights(tmp_path / "a.weights.h5")
    task.backbone.save(tmp_path / "backbone.keras")
    with dist.scope():
        keras.utils.set_random_seed(0)  # the trained model's base weights (`trained` draws them first)
        fresh = CASES["llama"][0]()
        fresh.load_gralora_weights(tmp_path / "a.weights.h5")  # creates the adapters under the mesh
        assert_close(fresh(x), expected)
        assert specs(fresh) == specs(task.backbone)
        reloaded = keras.models.load_model(tmp_path / "backbone.keras")
        assert_close(reloaded(x), expected)
    keras.utils.set_random_seed(0)
    single = CASES["llama"][0]()
    single.load_gralora_weights(tmp_path / "a.weights.h5")
    assert_close(single(x), expected)


def test_new_adapters_outside_the_models_distribution_are_refused_with_nothing_changed():
    dist = distribution("data_parallel", models.GemmaBackbone)
    with dist.scope():
        backbone = CASES["gemma"][0]()
    before = [v.path for v in backbone.weights]
    with pytest.raises(ValueError, match=r"was built under a keras.distribution .* no distribution is active now"):
        backbone.enable_gralora(r=4, k=2)
    assert [v.path for v in backbone.weights] == before
    plain = CASES["gemma"][0]()
    with dist.scope(), pytest.raises(ValueError, match=r"built without a keras.distribution, but DataParallel"):
        plain.enable_gralora(r=4, k=2)
    assert not inject.adapted_layers(plain)
    keras.distribution.set_distribution(dist)  # set globally instead of a scope: works the same
    try:
        assert backbone.enable_gralora(r=4, k=2)
        backbone.enable_gralora(r=8, k=2, adapter_name="other")  # the named-adapter functions, sharded
        layouts = specs(backbone)
        keras_gralora.set_active_adapters(backbone, ["default", "other"])
        x, _ = data()
        with keras_gralora.disable_gralora(backbone):
            base = to_numpy(backbone(x))
        keras_gralora.delete_adapter(backbone, "other")
        assert specs(backbone) == {path: spec for path, spec in layouts.items() if "_other" not in path}
        keras_gralora.set_active_adapters(backbone, [])
        assert_close(backbone(x), base)
    finally:
        keras.distribution.set_distribution(None)


def test_the_compiled_train_step_keeps_the_adapter_features_split_by_token():
    """No all-gather of token-sized tensors in the adapters' matmuls of Keras' compiled train step (2 x 4 mesh).

    Without `backend.keep_tokens_sharded` XLA gathers each adapted
    projection's `[1, 64, 8]` output gradient over the batch axis here.
    """
    import jax

    dist = distribution("model_parallel", models.GemmaBackbone)
    task, _ = trained("gemma", dist, steps=1, hybrid_r=0)  # with a hybrid this tiny model shows no gather either way
    x, y = data()
    with dist.scope():
        put = lambda v: jax.device_put(v[:BATCH], dist.get_data_layout(v[:BATCH].shape).backend_layout)  # noqa: E731
        state = tuple(
            [v.value for v in variables]
            for variables in (
                task.trainable_variables,
                task.non_trainable_variables,
                task.optimizer.variables,
                task.metrics_variables,
            )
        )
        step = jax.jit(task.train_step, donate_argnums=0, out_shardings=(None, task._get_state_sharding_spec()))
        text = step.lower(state, ({k: put(v) for k, v in x.items()}, put(y), None)).compile().as_text()
    adapter_gathers = re.findall(r"= \w+\[([\d,]*)\]\S* all-gather(?:-start)?\(.*/(?:query|value)/dot_general", text)
    tokens = str(BATCH * SEQ)
    assert "all-gather" in text and not [dims for dims in adapter_gathers if tokens in dims.split(",")]


PROMPTS = ["airplane at airport", " airplane"]


def test_generate_from_text_equals_one_device():
    merges = ["Ġ a", "a i", "p l", "n e", "Ġa t", "p o", "r t", "ai r", "pl a", "po rt", "Ġa i", "Ġai r", "pla ne"]
    tokens = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    for merge in merges:
        tokens += [t for t in (*merge.split(), merge.replace(" ", "")) if t not in tokens]
    vocabulary = {token: i for i, token in enumerate(tokens)}  # under the model's 48

    def generated(dist):
        with dist.scope() if dist else contextlib.nullcontext():
            keras.utils.set_random_seed(0)
            tokenizer = keras_hub.tokenizers.Llama3Tokenizer(vocabulary=vocabulary, merges=merges)
            preprocessor = models.Llama3CausalLMPreprocessor(tokenizer, sequence_length=SEQ)
            lm = models.Llama3CausalLM(models.Llama3Backbone(**SIZES), preprocessor=preprocessor)
            lm.backbone.enable_gralora(r=4, k=2)
            for v in lm.backbone.trainable_weights:
                v.assign(np.random.default_rng(1).standard_normal(v.shape).astype("float32") * 0.1)
            lm.compile(sampler="greedy")
            return lm.generate(PROMPTS, max_length=SEQ)

    sharded = generated(distribution("model_parallel", models.LlamaBackbone))
    assert len(sharded) == 2 and all(text.startswith(prompt) for text, prompt in zip(sharded, PROMPTS))
    assert sharded == generated(None)
