"""`fit` throughput of pretrained MiniLM: GraLoRA vs KerasHub's `enable_lora`.

Both adapt the backbone's query and value projections (KerasHub's default
LoRA targets) at the same r; the same token batches feed `model.fit`, timed
per batch by a callback; tokens/s from the median batch after warm-up.
Needs the examples' assets (`scripts/env.sh` installs them).

    KERAS_BACKEND=jax python benchmarks/minilm_fit.py --r 8 --steps 8
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import sentiment_task  # noqa: E402

import keras_gralora  # noqa: E402, F401  (adds Backbone.enable_gralora)


class BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def token_batches(vocabulary_size, batch, seq, steps):
    """Pre-tokenized inputs, so tokenization is not timed."""
    rng = np.random.default_rng(0)
    size = batch * steps
    x = {
        "token_ids": rng.integers(1000, vocabulary_size, (size, seq)).astype("int32"),
        "segment_ids": np.zeros((size, seq), "int32"),
        "padding_mask": np.ones((size, seq), "int32"),
    }
    return x, rng.integers(0, 3, size).astype("int32")


def median_batch_seconds(method, r, x, y, batch, warmup):
    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertTextClassifier.from_preset(
        sentiment_task.minilm_preset(), num_classes=3, preprocessor=None
    )
    if method == "gralora":
        model.backbone.enable_gralora(r=r, k=2)
    else:
        model.backbone.enable_lora(r)
    sentiment_task.compile_for_training(model, 1e-4)
    timer = BatchTimer()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return statistics.median(timer.seconds[warmup:]), trainable


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed batches (after 2 warm-up batches)")
    args = parser.parse_args()
    warmup = 2
    x, y = token_batches(30522, args.batch, args.seq, args.steps + warmup)
    results = {m: median_batch_seconds(m, args.r, x, y, args.batch, warmup) for m in ("lora", "gralora")}
    lora_seconds = results["lora"][0]
    for method, (seconds, trainable) in results.items():
        print(json.dumps({
            "bench": "minilm_fit", "backend": keras.backend.backend(),
            "config": f"{'GraLoRA k=2' if method == 'gralora' else 'Keras LoRA'} r={args.r} on q/v",
            "ms": 1000 * seconds, "tokens_per_s": args.batch * args.seq / seconds,
            "vs_lora": seconds / lora_seconds, "trainable": trainable,
        }))


if __name__ == "__main__":
    main()
