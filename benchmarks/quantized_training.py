"""Does a quantized causal LM train? Loss and gradient cosine for float, int8 and int4 bases, side by side.

For tiny random Gemma (logits tied to the embedding) and Llama (untied)
causal LMs, each base (float32, int8, int4) is trained with:

- GraLoRA (`enable_gralora`, which gives the reverse embedding the
  straight-through gradient of `fix_quantized_gradients`);
- GraLoRA on Keras' own reverse embedding (the gradient before the fix);
- Keras' LoRA (`enable_lora`), and Keras' LoRA plus `fix_quantized_gradients`.

All configurations start from the same base and adapter weights and take
their steps round-robin in one process, on one batch of a learnable task
(each next token is a fixed permutation of the current one). Per seed it
reports the loss drop over the steps as a share of the float base's drop
with the same adapters, and the lowest cosine, over adapter variables, of
the first step's gradient with the float base's. Medians and ranges over
the seeds are printed as a Markdown table.

    KERAS_BACKEND=torch python benchmarks/quantized_training.py --steps 12 --seeds 3
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import helpers
import keras
import keras_hub
import numpy as np
from keras import ops

import keras_gralora

VOCAB, SEQ, BATCH = 64, 16, 16
MODELS = {
    "gemma": lambda: keras_hub.models.GemmaCausalLM(
        keras_hub.models.GemmaBackbone(
            vocabulary_size=VOCAB,
            num_layers=2,
            hidden_dim=32,
            intermediate_dim=64,
            num_query_heads=2,
            num_key_value_heads=1,
            head_dim=16,
        ),
        preprocessor=None,
    ),
    "llama": lambda: keras_hub.models.LlamaCausalLM(
        keras_hub.models.LlamaBackbone(
            vocabulary_size=VOCAB,
            num_layers=2,
            hidden_dim=32,
            intermediate_dim=64,
            num_query_heads=4,
            num_key_value_heads=2,
        ),
        preprocessor=None,
    ),
}
BASES = ("float32", "int8", "int4")


def gralora(lm):
    lm.backbone.enable_gralora(r=4, k=2)


def gralora_keras_gradient(lm):
    lm.backbone.enable_gralora(r=4, k=2)
    lm.backbone.token_embedding.__class__ = keras.layers.ReversibleEmbedding  # undo the fix, to measure


def lora(lm):
    lm.backbone.enable_lora(4)


def lora_fixed(lm):
    lm.backbone.enable_lora(4)
    keras_gralora.fix_quantized_gradients(lm)


ADAPTERS = {
    "GraLoRA": gralora,
    "GraLoRA, Keras' gradient": gralora_keras_gradient,
    "Keras LoRA": lora,
    "Keras LoRA + fix": lora_fixed,
}


def batch(seed):
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(VOCAB)
    tokens = np.empty((BATCH, SEQ), "int32")
    tokens[:, 0] = rng.integers(0, VOCAB, BATCH)
    for t in range(1, SEQ):
        tokens[:, t] = permutation[tokens[:, t - 1]]
    return {"token_ids": tokens[:, :-1], "padding_mask": np.ones_like(tokens[:, :-1])}, tokens[:, 1:]


def build(name, base, adapter, seed):
    keras.utils.set_random_seed(seed)
    lm = MODELS[name]()
    if base != "float32":
        lm.backbone.quantize(base)
    ADAPTERS[adapter](lm)
    rng = np.random.default_rng(seed + 1)  # the same non-zero adapters for every base
    for v in lm.trainable_weights:
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.05)
    lm.compile(optimizer=keras.optimizers.Adam(2e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return lm


def run(name, seed, steps):
    x, y = batch(seed)

    def loss(logits):
        return ops.mean(keras.losses.sparse_categorical_crossentropy(y, ops.cast(logits, "float32"), from_logits=True))

    lms = {(base, adapter): build(name, base, adapter, seed) for base in BASES for adapter in ADAPTERS}
    grads = {key: helpers.gradients(lm, x, loss) for key, lm in lms.items()}
    losses = {key: [] for key in lms}
    for _ in range(steps):  # round-robin: one step of each in turn
        for key, lm in lms.items():
            losses[key].append(float(lm.train_on_batch(x, y, return_dict=True)["loss"]))
    rows = {}
    for (base, adapter), found in losses.items():
        reference = losses[("float32", adapter)]
        drop = (found[0] - found[-1]) / (reference[0] - reference[-1])
        cosine = min(_cosine(g, e) for g, e in zip(grads[(base, adapter)], grads[("float32", adapter)]))
        rows[(base, adapter)] = (found[0], found[-1], drop, cosine)
    return rows


def _cosine(a, b):
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)
    print(
        f"KERAS_BACKEND={keras.backend.backend()}, {args.steps} steps, Adam 2e-2, r=4 (k=2), seeds 0..{args.seeds - 1}"
    )
    print("\n| model | base | adapters | loss: first -> last step | drop vs float | lowest gradient cosine |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        runs = [run(name, seed, args.steps) for seed in range(args.seeds)]
        for key in runs[0]:
            first, last, drop, cosine = (np.array(values) for values in zip(*(r[key] for r in runs)))
            print(
                f"| {name} | {key[0]} | {key[1]} | {np.median(first):.3f} -> {np.median(last):.3f} | "
                f"{_median_range(drop * 100, '%')} | {_median_range(cosine)} |"
            )
    return 0


def _median_range(values, unit=""):
    return f"{np.median(values):.2f}{unit} ({values.min():.2f}..{values.max():.2f})"


if __name__ == "__main__":
    sys.exit(main())
