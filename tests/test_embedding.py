"""GraLoRA on embedding tables: the numpy math, Keras LoRA at k = 1, PEFT's embedding LoRA, and the refusals.

The layer harness (`test_layer_kinds.py`) runs Embedding and a tied
ReversibleEmbedding through adapters, merging, files and exports.
"""

import keras
import numpy as np
import pytest
import reference
from helpers import randomize, tiny_gemma, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_gralora
from keras_gralora.layers.quantized import ReadOnlyView

VOCABULARY, WIDTH = 24, 8


def _tied_model(r=4, k=2, hybrid_r=0, seed=0, soft_cap=None):
    inputs = keras.Input((5,), dtype="int32")
    table = keras.layers.ReversibleEmbedding(VOCABULARY, WIDTH, logit_soft_cap=soft_cap, name="tokens")
    hidden = keras.layers.Dense(WIDTH, name="mix")(table(inputs))
    model = keras.Model(inputs, table(hidden, reverse=True))
    randomize(model.weights, seed=seed, scale=0.3)
    keras_gralora.enable_gralora(model, r=r, k=k, hybrid_r=hybrid_r, alpha=3.0, target_layer_names=["tokens"])
    layer = model.get_layer("tokens")
    randomize(layer.adapter("default").variables, seed=seed + 1, scale=0.3)
    return model, layer


def _ids(seed=2):
    return np.random.default_rng(seed).integers(0, VOCABULARY, (3, 5)).astype("int32")


@settings(max_examples=6, deadline=None)
@given(k=st.sampled_from([1, 2, 4]), s=st.integers(1, 2), hybrid=st.booleans(), soft_cap=st.sampled_from([None, 5.0]))
def test_rows_and_tied_logits_are_the_numpy_table(k, s, hybrid, soft_cap):
    """Rows are `(W + delta)[ids]`, logits `h @ (W + delta).T` (soft-capped), delta from the reference grid."""
    model, layer = _tied_model(r=s * k, k=k, hybrid_r=2 if hybrid else 0, soft_cap=soft_cap)
    a, b, *pair = (np.asarray(to_numpy(v), np.float64) for v in layer.adapter("default").variables)
    table = to_numpy(layer._embeddings).astype(np.float64) + reference.delta(
        a, b, layer.adapter("default").config.scale, *pair
    )
    ids = _ids()
    np.testing.assert_allclose(to_numpy(layer(ids)), table[ids], rtol=1e-5, atol=1e-5)
    mix = model.get_layer("mix")
    hidden = table[ids] @ to_numpy(mix.kernel) + to_numpy(mix.bias)
    logits = hidden @ table.T
    if soft_cap:
        logits = np.tanh(logits / soft_cap) * soft_cap
    np.testing.assert_allclose(to_numpy(model(ids)), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reversible", [False, True])
def test_k1_equals_keras_lora_embedding(reversible):
    """GraLoRA with k = 1 and Keras' `Embedding.enable_lora` give the same rows (and tied logits)."""
    make = keras.layers.ReversibleEmbedding if reversible else keras.layers.Embedding
    ours, lora = make(VOCABULARY, WIDTH, name="ours"), make(VOCABULARY, WIDTH, name="lora")
    for layer in (ours, lora):
        layer.build()
    randomize(ours.weights, seed=0, scale=0.3)
    lora.set_weights(ours.get_weights())
    model = keras.Sequential([keras.Input((5,), dtype="int32"), ours])
    keras_gralora.enable_gralora(model, r=4, k=1, alpha=3.0, target_layer_names=["ours"])
    randomize(ours.adapter("default").variables, seed=1, scale=0.3)
    lora.enable_lora(4, lora_alpha=3.0)
    a, b = (to_numpy(v) for v in ours.adapter("default").variables)
    lora.lora_embeddings_a.assign(a[0])
    lora.lora_embeddings_b.assign(b[0])
    ids = _ids()
    np.testing.assert_allclose(to_numpy(ours(ids)), to_numpy(lora(ids)), rtol=1e-5, atol=1e-6)
    if reversible:
        hidden = np.random.default_rng(3).standard_normal((3, 5, WIDTH)).astype("float32")
        np.testing.assert_allclose(
            to_numpy(ours(hidden, reverse=True)), to_numpy(lora(hidden, reverse=True)), rtol=1e-5, atol=1e-5
        )


def test_lora_factors_load_into_peft_embedding_lora_with_the_same_rows():
    """`lora_factors` of a table is PEFT's `lora_embedding_A = a.T`, `lora_embedding_B = b.T`: equal rows."""
    import peft
    import torch

    _, layer = _tied_model(r=4, k=2, hybrid_r=2)
    a, b, error = keras_gralora.lora_factors(layer)
    assert error < 1e-6
    wrapper = torch.nn.Sequential()
    wrapper.add_module("tokens", torch.nn.Embedding(VOCABULARY, WIDTH))
    wrapper.tokens.weight.data = torch.from_numpy(to_numpy(layer._embeddings))
    rank = a.shape[1]
    peft_model = peft.get_peft_model(
        wrapper, peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=["tokens"], init_lora_weights=False)
    )
    module = peft_model.base_model.model.tokens
    module.lora_embedding_A["default"].data = torch.from_numpy(np.ascontiguousarray(a.T))
    module.lora_embedding_B["default"].data = torch.from_numpy(np.ascontiguousarray(b.T))
    ids = _ids()
    with torch.no_grad():
        found = peft_model(torch.from_numpy(ids.astype("int64"))).numpy()
    np.testing.assert_allclose(found, to_numpy(layer(ids)), rtol=1e-5, atol=1e-5)


def test_all_leaves_embeddings_out_and_names_take_them():
    inputs = keras.Input((5,), dtype="int32")
    hidden = keras.layers.Embedding(VOCABULARY, WIDTH, name="tokens")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(keras.layers.Dense(WIDTH, name="mix")(hidden)))
    assert keras_gralora.enable_gralora(model, r=2, k=2, target_layer_names="all") == ["mix"]
    assert keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="emb", target_layer_names=["tokens"]) == [
        "tokens"
    ]


def test_training_moves_only_the_table_adapters():
    model, layer = _tied_model()
    model.compile("adam", "mse")
    table, before = to_numpy(layer._embeddings), [to_numpy(v) for v in layer.adapter("default").variables]
    model.fit(_ids(), np.zeros((3, 5, VOCABULARY), "float32"), epochs=2, verbose=0)
    np.testing.assert_array_equal(to_numpy(layer._embeddings), table)
    assert all(not np.array_equal(to_numpy(v), old) for v, old in zip(layer.adapter("default").variables, before))
    assert sorted(v.name for v in model.trainable_variables) == ["gralora_a_default", "gralora_b_default"]


def test_dropout_on_a_table_is_refused_by_name():
    inputs = keras.Input((5,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Embedding(VOCABULARY, WIDTH, name="tokens")(inputs))
    with pytest.raises(ValueError, match=r"Embedding 'tokens'.*dropout=0.1.*dropout=0"):
        keras_gralora.enable_gralora(model, r=2, k=2, dropout=0.1, target_layer_names=["tokens"])
    assert type(model.get_layer("tokens")) is keras.layers.Embedding


def _table_model(seed=0):
    """Token ids -> a tied table's rows, and logits of the rows (the table's reverse)."""
    inputs = keras.Input((5,), dtype="int32")
    table = keras.layers.ReversibleEmbedding(VOCABULARY, WIDTH, logit_soft_cap=4.0, name="tokens")
    rows = table(inputs)
    model = keras.Model(inputs, [rows, table(rows, reverse=True)])
    randomize(model.weights, seed=seed, scale=0.3)
    return model


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("quantize_first", [True, False])
def test_a_quantized_table_adds_the_adapters_to_keras_quantized_lookup(mode, quantize_first):
    """Rows are Keras' quantized rows plus the delta's; tied logits Keras' quantized ones plus `h @ delta.T`.

    Quantizing before adapting or after gives the same layer. Merging requantizes the table (within a
    quantization step of the unmerged rows); unmerging restores its integer storage bit for bit.
    """
    plain, model = _table_model(), _table_model()
    plain.quantize(mode)
    if quantize_first:
        model.quantize(mode)
    keras_gralora.enable_gralora(model, r=4, k=2, hybrid_r=2, alpha=3.0, target_layer_names=["tokens"])
    if not quantize_first:
        model.quantize(mode)
    layer, reference_table = model.get_layer("tokens"), plain.get_layer("tokens")
    assert layer.quantization_mode == mode and isinstance(layer, keras_gralora.GraLoRAReversibleEmbedding)
    randomize(layer.adapter("default").variables, seed=1, scale=0.3)
    a, b, *pair = (np.asarray(to_numpy(v), np.float64) for v in layer.adapter("default").variables)
    delta = reference.delta(a, b, layer.adapter("default").config.scale, *pair)
    ids = _ids()
    rows = to_numpy(layer(ids))
    np.testing.assert_allclose(rows, to_numpy(reference_table(ids)) + delta[ids], rtol=1e-5, atol=1e-5)
    hidden = np.random.default_rng(4).standard_normal((3, 5, WIDTH)).astype("float32")
    uncapped = to_numpy(_keras_call(mode)(ReadOnlyView(reference_table, logit_soft_cap=None), hidden, reverse=True))
    expected = np.tanh((uncapped + hidden @ delta.T) / 4.0) * 4.0
    np.testing.assert_allclose(to_numpy(layer(hidden, reverse=True)), expected, rtol=1e-4, atol=1e-4)
    storage = {v.name: to_numpy(v) for v in layer.weights if not v.name.startswith("gralora")}
    keras_gralora.merge_gralora(model)
    step = 1.0 / np.min(to_numpy(layer.embeddings_scale))  # the coarsest quantization step of a row
    np.testing.assert_allclose(to_numpy(layer(ids)), rows, atol=step)
    keras_gralora.unmerge_gralora(model)
    assert all(np.array_equal(to_numpy(v), storage[v.name]) for v in layer.weights if v.name in storage)


def _keras_call(mode):
    return getattr(keras.layers.ReversibleEmbedding, f"_{mode}_call")


def test_a_quantized_table_trains_its_adapters():
    model = _table_model()
    model.quantize("int8")
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names=["tokens"])
    layer = model.get_layer("tokens")
    storage = to_numpy(layer._embeddings)
    before = [to_numpy(v) for v in layer.adapter("default").variables]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=["mse", "mse"])
    model.fit(_ids(), [np.ones((3, 5, WIDTH), "float32"), np.zeros((3, 5, VOCABULARY), "float32")], epochs=2, verbose=0)
    np.testing.assert_array_equal(to_numpy(layer._embeddings), storage)
    assert all(not np.array_equal(to_numpy(v), old) for v, old in zip(layer.adapter("default").variables, before))


@pytest.mark.parametrize("name", ["gemma", "llama"])
def test_save_lora_adapter_writes_the_table_as_peft_embedding_lora(name, tmp_path):
    """Gemma's tied table: `embed_tokens` and the tied `lm_head` in PEFT; Llama's untied one: `embed_tokens`."""
    import hf_checkpoints as hf
    import peft
    import torch

    keras_hub = pytest.importorskip("keras_hub")
    checkpoint = hf.write_checkpoint(name, str(tmp_path / name))
    backbone = keras_hub.models.Backbone.from_preset(checkpoint)
    backbone.enable_gralora(r=4, k=2, hybrid_r=2, alpha=6, target_layer_names=["token_embedding", "query", "value"])
    randomize(backbone.trainable_weights, seed=4, scale=0.1)
    inputs = hf.keras_inputs(name)
    hidden = backbone(inputs)
    logits = to_numpy(backbone.token_embedding(hidden, reverse=True))
    rows = keras_gralora.save_lora_adapter(backbone, tmp_path / "lora")
    modules = {row.module for row in rows}
    assert "model.embed_tokens" in modules and ("lm_head" in modules) == (name == "gemma")
    with pytest.raises(ValueError, match=r"embedding tables \['model.embed_tokens'\].*without runtime="):
        keras_gralora.save_lora_adapter(backbone, tmp_path / "vllm", runtime="vllm")
    assert not (tmp_path / "vllm").exists()
    model = peft.PeftModel.from_pretrained(hf.load(name, checkpoint), tmp_path / "lora").base_model.model
    with torch.no_grad():
        theirs = model(torch.tensor(hf.TOKENS))
    scale = np.abs(logits).max()
    np.testing.assert_allclose(theirs.logits.numpy(), logits, rtol=1e-4, atol=1e-4 * scale)


def test_save_peft_adapter_refuses_a_table_peft_gralora_cannot_load(tmp_path):
    import hf_checkpoints as hf

    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.Backbone.from_preset(hf.write_checkpoint("gemma", str(tmp_path / "gemma")))
    backbone.enable_gralora(r=4, k=2, target_layer_names=["token_embedding", "query"])
    with pytest.raises(
        ValueError,
        match=r"\['token_embedding'\] are convolutions, embedding tables or expert weights.*save_lora_adapter",
    ):
        keras_gralora.save_peft_adapter(backbone, tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


def test_a_gemma_table_adapter_reloads_into_a_second_build_and_unloads(tmp_path):
    """KerasHub's tied `token_embedding`: its adapter file loads into a fresh backbone; unloading keeps the logits."""

    pytest.importorskip("keras_hub")
    backbone = tiny_gemma()[0]
    base = [to_numpy(w) for w in backbone.weights]
    backbone.enable_gralora(r=2, k=2, target_layer_names=["token_embedding", "query"])
    randomize(backbone.trainable_variables, seed=1, scale=0.1)
    x = {"token_ids": np.array([[1, 2, 3, 4]]), "padding_mask": np.ones((1, 4))}
    logits = to_numpy(backbone.token_embedding(backbone(x), reverse=True))
    backbone.save_gralora_weights(tmp_path / "a.gralora.weights.h5")
    second = tiny_gemma()[0]
    for variable, value in zip(second.weights, base):
        variable.assign(value)
    second.load_gralora_weights(tmp_path / "a.gralora.weights.h5")
    np.testing.assert_allclose(to_numpy(second.token_embedding(second(x), reverse=True)), logits, atol=1e-6)
    keras_gralora.merge_and_unload(second)
    assert not isinstance(second.token_embedding, keras_gralora.GraLoRAAdapter)
    np.testing.assert_allclose(to_numpy(second.token_embedding(second(x), reverse=True)), logits, atol=1e-5)
