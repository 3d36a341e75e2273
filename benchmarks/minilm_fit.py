"""Training throughput of pretrained MiniLM: GraLoRA vs KerasHub's `enable_lora`.

Both adapt the backbone's query and value projections (KerasHub's default
LoRA targets) at the same r and train only those factors and the
classifier head (Keras LoRA's query/value biases are frozen like ours; its
`EinsumDense` factors the kernel's last axis only, so its A is larger).
Both models live in one process and take `train_on_batch` steps (the step
`fit` runs) on the same pre-tokenized batch, round robin after warm-up;
tokens/s from each one's median step. Needs the examples' assets (`scripts/env.sh` installs them).

    KERAS_BACKEND=jax python benchmarks/minilm_fit.py --r 8 --steps 8
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import sentiment_task
from stack import interleaved_medians

import keras_gralora  # noqa: F401  (adds Backbone.enable_gralora)


def token_batch(vocabulary_size, batch, seq):
    """A pre-tokenized batch, so tokenization is not timed."""
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1000, vocabulary_size, (batch, seq)).astype("int32"),
        "segment_ids": np.zeros((batch, seq), "int32"),
        "padding_mask": np.ones((batch, seq), "int32"),
    }
    return x, rng.integers(0, 3, batch).astype("int32")


def enable_lora_factors_only(backbone, r):
    """KerasHub's `enable_lora(r)` with the adapted layers' biases frozen: it trains what GraLoRA trains."""
    backbone.enable_lora(r)
    for layer in backbone._flatten_layers():
        if getattr(layer, "lora_enabled", False) and layer.bias is not None:
            layer.bias.trainable = False


def adapted_classifier(method, r):
    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertTextClassifier.from_preset(
        sentiment_task.minilm_preset(), num_classes=3, preprocessor=None
    )
    if method == "gralora":
        model.backbone.enable_gralora(r=r, k=2)
    else:
        enable_lora_factors_only(model.backbone, r)
    sentiment_task.compile_for_training(model, 1e-4)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed rounds (after 2 warm-up steps each)")
    args = parser.parse_args()
    x, y = token_batch(30522, args.batch, args.seq)
    names = {"lora": f"Keras LoRA r={args.r} on q/v", "gralora": f"GraLoRA k=2 r={args.r} on q/v"}
    models = {name: adapted_classifier(method, args.r) for method, name in names.items()}
    steps = {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}
    seconds = interleaved_medians(steps, args.steps)
    results = {m: (seconds[m], sum(int(np.prod(v.shape)) for v in models[m].trainable_weights)) for m in models}
    lora_seconds = results[names["lora"]][0]
    for name, (seconds, trainable) in results.items():
        print(
            json.dumps(
                {
                    "bench": "minilm_fit",
                    "backend": keras.backend.backend(),
                    "config": name,
                    "ms": 1000 * seconds,
                    "tokens_per_s": args.batch * args.seq / seconds,
                    "vs_lora": seconds / lora_seconds,
                    "trainable": trainable,
                }
            )
        )


if __name__ == "__main__":
    main()
