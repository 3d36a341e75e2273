"""The real thing: Gemma 3 270M fine-tuned with GraLoRA on a causal-LM task, then served by llama.cpp.

Task: VADER's lexicon as instruction text, `Sentiment of "<word>":` followed
by ` negative`, ` neutral` or ` positive`; a held-out word scores by the
next-token choice among the three label tokens (chance: 1/3).

1. `gemma_model.py` prepares the real model once (KerasHub-loadable, checked).
2. GraLoRA on every attention and MLP projection (`target_layer_names="all"`),
   `--quantize int8` for a frozen int8 base (QLoRA-style); `model.fit`, with
   the loss on the label token (the next token after the prompt).
3. Held-out score, a few label choices and free greedy generations before and after.
4. The adapter file reloads onto a fresh backbone (equal logits); merging
   gives the same logits (float32 rounding); `save_lora_adapter(...,
   runtime="llama.cpp")` writes the exact LoRA and `adapter.gguf`.
5. llama.cpp (llama-cpp-python) serves the original Q4_K_M GGUF plus our
   adapter: its held-out score beside Keras'.

    KERAS_BACKEND=jax python examples/causal_lm.py [--quantize int8]
"""

import argparse
import ctypes
import functools
import os
import sys
import time

import keras
import keras_hub
import numpy as np

import keras_gralora

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gemma_model
import sentiment_task

LABELS = (" negative", " neutral", " positive")


def prompt(word):
    return f'Sentiment of "{word}":'


class Task:
    """Token ids of the prompts (BOS first, right-padded), the position of each prompt's last token, the labels."""

    def __init__(self, tokenizer, words, labels, length=16):
        self.words, self.labels = list(words), np.asarray(labels, "int32")
        ids = [[tokenizer.start_token_id, *_ids(tokenizer, prompt(w))][:length] for w in self.words]
        self.ids = [np.asarray(i, "int32") for i in ids]
        self.x = {
            "token_ids": np.stack([np.pad(i, (0, length - len(i))) for i in ids]).astype("int32"),
            "padding_mask": np.stack([np.arange(length) < len(i) for i in ids]),
            "position": np.array([len(i) - 1 for i in ids], "int32"),
        }


def _ids(tokenizer, text):
    return [int(t) for t in keras.ops.convert_to_numpy(tokenizer(text))]


def label_tokens(tokenizer):
    tokens = [_ids(tokenizer, label) for label in LABELS]
    if any(len(t) != 1 for t in tokens) or len({t[0] for t in tokens}) != 3:
        raise SystemExit(f"The label words are not three single tokens: {tokens}.")
    return np.array([t[0] for t in tokens], "int32")


def next_token_model(backbone, length=16):
    """`inputs -> logits [batch, vocab]` of the token after each prompt (the tied output embedding)."""
    inputs = {
        "token_ids": keras.Input((length,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((length,), dtype="bool", name="padding_mask"),
        "position": keras.Input((), dtype="int32", name="position"),
    }
    hidden = backbone({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]})
    last = keras.layers.Lambda(
        lambda a: keras.ops.take_along_axis(a[0], keras.ops.reshape(a[1], (-1, 1, 1)), axis=1)[:, 0],
        output_shape=(backbone.hidden_dim,),
    )([hidden, inputs["position"]])
    return keras.Model(inputs, backbone.token_embedding(last, reverse=True))


def score(logits, label_ids, labels):
    """Accuracy of the argmax among the label tokens."""
    return float(np.mean(np.argmax(np.asarray(logits)[:, label_ids], axis=1) == labels))


def backbone_of(preset, quantize):
    backbone = keras_hub.models.Gemma3Backbone.from_preset(preset, dtype="float32")
    if quantize:
        backbone.quantize(quantize)
    return backbone


def answers(model, task, label_ids, count=4):
    logits = np.asarray(model.predict({k: v[:count] for k, v in task.x.items()}, verbose=0))
    return [f"{str(w)!r} -> {LABELS[i].strip()}" for w, i in zip(task.words, np.argmax(logits[:, label_ids], axis=1))]


def generations(backbone, tokenizer, words, tokens=3):
    """Free greedy text after a few prompts (KerasHub's `generate`), not restricted to the label words."""
    preprocessor = keras_hub.models.Gemma3CausalLMPreprocessor(tokenizer, sequence_length=16)
    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=preprocessor)
    lm.compile(sampler="greedy")
    texts = lm.generate([prompt(w) for w in words], max_length=16, strip_prompt=True)
    return [f"{prompt(w)}{text[: tokens * 12]!r}" for w, text in zip(words, texts)]


@functools.cache
def _quiet(llama_cpp):
    """A llama.cpp log callback that drops every line (cached: llama.cpp holds a C pointer to it)."""
    return llama_cpp.llama_log_callback(lambda level, text, user_data: None)


def llama_cpp_run(gguf, adapter, task, label_ids, words):
    """llama.cpp's held-out score and free greedy text: the base GGUF (Q4_K_M) plus `adapter` (a path or None)."""
    import llama_cpp

    llama_cpp.llama_log_set(_quiet(llama_cpp), ctypes.c_void_p(0))  # its info lines go to stderr otherwise
    kwargs = {"lora_path": adapter} if adapter else {}
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=64, logits_all=True, verbose=False, n_threads=2, **kwargs)
    picks = []
    for ids in task.ids:
        llm.reset()
        llm.eval(ids.tolist())
        picks.append(int(np.argmax(np.asarray(llm.scores[len(ids) - 1])[label_ids])))
    texts = []
    for word in words:
        llm.reset()
        out = llm.create_completion(prompt(word), max_tokens=3, temperature=0.0)
        texts.append(f"{prompt(word)}{out['choices'][0]['text']!r}")
    return float(np.mean(np.array(picks) == task.labels)), texts


class Results(dict):
    """The run's figures, each printed as it is measured (a run cut short still shows what it reached)."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        print(f"{key}: {value:.4g}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--train", type=int, default=2048, help="training words (default 2048)")
    parser.add_argument("--test", type=int, default=256, help="held-out words (default 256)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--quantize", choices=["int8"], default=None, help="a frozen int8 base (QLoRA-style)")
    parser.add_argument("--out", default="runs/causal_lm")
    parser.add_argument("--no-serve", action="store_true", help="skip llama.cpp")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    preset, gguf = gemma_model.preset_dir(), gemma_model.gguf_file()
    tokenizer = keras_hub.models.Gemma3Tokenizer.from_preset(preset)
    label_ids = label_tokens(tokenizer)
    (train_words, train_labels), (test_words, test_labels) = sentiment_task.load_lexicon(args.train, args.test)
    train, test = Task(tokenizer, train_words, train_labels), Task(tokenizer, test_words, test_labels)
    backbone = backbone_of(preset, args.quantize)
    model = next_token_model(backbone)
    result = Results()
    result["keras_before"] = score(model.predict(test.x, verbose=0), label_ids, test.labels)
    print(f"held-out score before: {result['keras_before']:.3f}; {answers(model, test, label_ids)}")
    shown = test.words[:3]
    print("generations before:", generations(backbone, tokenizer, shown))
    backbone.enable_gralora(r=args.r, k=args.k, target_layer_names="all")
    keras_gralora.gralora_summary(backbone)
    model.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    started = time.perf_counter()
    model.fit(train.x, label_ids[train.labels], batch_size=args.batch_size, epochs=args.epochs, verbose=1)
    result["train_s"] = time.perf_counter() - started
    logits = np.asarray(model.predict(test.x, verbose=0))
    result["keras_after"] = score(logits, label_ids, test.labels)
    print(f"held-out score after: {result['keras_after']:.3f}; {answers(model, test, label_ids)}")
    print("generations after:", generations(backbone, tokenizer, shown))
    os.makedirs(args.out, exist_ok=True)
    weights = os.path.join(args.out, "sentiment.gralora.weights.h5")
    backbone.save_gralora_weights(weights)
    fresh = backbone_of(preset, args.quantize)
    fresh.load_gralora_weights(weights)
    reloaded = np.asarray(next_token_model(fresh).predict(test.x, verbose=0))
    result["reload_max_diff"] = float(np.abs(reloaded - logits).max())
    if not args.quantize:
        keras_gralora.merge_gralora(backbone)
        result["merge_max_diff"] = float(np.abs(np.asarray(model.predict(test.x, verbose=0)) - logits).max())
        keras_gralora.unmerge_gralora(backbone)
    lora = os.path.join(args.out, "sentiment-lora")
    rows = keras_gralora.save_lora_adapter(backbone, lora, runtime="llama.cpp")
    result["lora_max_error"] = max(row.error for row in rows)
    if not args.no_serve:
        result["llama_cpp_before"], texts = llama_cpp_run(gguf, None, test, label_ids, shown)
        print("llama.cpp generations before:", texts)
        adapter = os.path.join(lora, "adapter.gguf")
        result["llama_cpp_after"], texts = llama_cpp_run(gguf, adapter, test, label_ids, shown)
        print("llama.cpp generations after:", texts)
        result["gap"] = result["keras_after"] - result["llama_cpp_after"]
    return result


if __name__ == "__main__":
    main()
