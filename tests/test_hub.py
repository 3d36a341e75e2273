"""GraLoRA on tiny, randomly initialised KerasHub backbones and tasks (nothing downloads)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gralora
from keras_gralora import GraLoRAEinsumDense

keras_hub = pytest.importorskip("keras_hub")
models = keras_hub.models

VOCAB, LAYERS, SEQ = 48, 2, 8
DECODER = dict(vocabulary_size=VOCAB, num_layers=LAYERS, hidden_dim=16, intermediate_dim=32)
LLAMA_LIKE = dict(DECODER, num_query_heads=4, num_key_value_heads=2)

# name: (backbone factory, task factory, expected EinsumDense equation of the adapted query)
CASES = {
    "gpt2": (lambda: models.GPT2Backbone(num_heads=2, max_sequence_length=SEQ, **DECODER),
             lambda b: models.GPT2CausalLM(b, preprocessor=None), "abc,cde->abde"),
    "llama": (lambda: models.LlamaBackbone(**LLAMA_LIKE),
              lambda b: models.LlamaCausalLM(b, preprocessor=None), "bqm,muh->bquh"),
    "gemma": (lambda: models.GemmaBackbone(num_query_heads=2, num_key_value_heads=1, head_dim=8, **DECODER),
              lambda b: models.GemmaCausalLM(b, preprocessor=None), "btd,ndh->btnh"),
    "qwen": (lambda: models.QwenBackbone(**LLAMA_LIKE),
             lambda b: models.QwenCausalLM(b, preprocessor=None), "bqm,muh->bquh"),
    "bert": (lambda: models.BertBackbone(num_heads=2, max_sequence_length=SEQ, **DECODER),
             lambda b: models.BertTextClassifier(b, num_classes=2, preprocessor=None), "abc,cde->abde"),
}


def batch(name):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, VOCAB, (4, SEQ)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    if name == "bert":
        x["segment_ids"] = np.zeros_like(token_ids)
        return x, np.array([0, 1, 1, 0])
    return x, np.roll(token_ids, -1, axis=1)


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x), np.float32)


@pytest.mark.parametrize("name", list(CASES))
def test_enable_fit_merge_on_a_keras_hub_task(name):
    make_backbone, make_task, query_equation = CASES[name]
    backbone = make_backbone()
    task = make_task(backbone)
    x, y = batch(name)
    head = [v for v in task.trainable_weights if not any(v is w for w in backbone.weights)]

    paths = backbone.enable_gralora(r=4, k=2)
    assert len(paths) == 2 * LAYERS  # query and value of each layer
    adapted = keras_gralora.inject.adapted_layers(backbone)
    assert {layer.name for layer in adapted} == {"query", "value"}
    assert {layer.equation for layer in adapted if layer.name == "query"} == {query_equation}
    assert all(isinstance(layer, GraLoRAEinsumDense) for layer in adapted)
    adapters = [v for layer in adapted for v in layer.adapter_variables]
    assert _ids(backbone.trainable_weights) == _ids(adapters)
    assert _ids(task.trainable_weights) == _ids(adapters + head)  # the head keeps training

    frozen = {v.path: to_numpy(v).copy() for v in backbone.weights if not v.trainable}
    start = {v.path: to_numpy(v).copy() for v in adapters}
    task.compile(optimizer=keras.optimizers.Adam(2e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = task.fit(x, y, epochs=6, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.array_equal(to_numpy(v), start[v.path]) for v in adapters)
    assert all(np.array_equal(to_numpy(v), frozen[v.path]) for v in backbone.weights if not v.trainable)

    expected = task.predict(x, verbose=0)
    keras_gralora.merge_gralora(task)  # the task, so its compiled functions are reset too
    np.testing.assert_allclose(task.predict(x, verbose=0), expected, atol=1e-4)
    assert all(layer.merged for layer in adapted)


def _ids(variables):
    return sorted(id(v) for v in variables)
