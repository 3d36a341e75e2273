"""Quality on the real Gemma 3 270M: GraLoRA vs LoRA at the same parameter count, and full fine-tuning.

The causal-LM job's task (`examples/causal_lm.py`: a VADER lexicon word's
sentiment as the next token, scored on held-out words by the choice among
the three label tokens). Every projection of every block is adapted
(`target_layer_names="all"`), at the same `r` for every method:

- `lora`: GraLoRA with k=1, which is LoRA's math, initialisation and scale
  (as `examples/compare.py` uses it);
- `gralora k=2`, `gralora k=4`: the same `r * (in + out)` parameters;
- `full`: every weight trains (the ceiling), at the learning rates `--full-lrs`.

First a learning-rate sweep on seed 0 (`--lrs`, per method and rank; when
the best rate is an end of the sweep, up to `--extend` more rates past it on
the 1-3-10 ladder, so the best is never just the sweep's edge), then
`--seeds` more seeds at each method's best rate. One JSON line per run
(appended to `--out`, so an interrupted sweep resumes where it stopped);
`gemma_figures.py` draws held-out score vs rank from that file.

    KERAS_BACKEND=jax python benchmarks/gemma_quality.py --ranks 8 32 64 --out runs/gemma_quality.jsonl
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))


def runs(path):
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def key(run):
    return (run["method"], run["r"], run["lr"], run["seed"])


class Job:
    """The task's data and the pretrained weights, loaded once; `run` trains one configuration from them."""

    def __init__(self, train, test):
        import causal_lm
        import gemma_model
        import keras_hub
        import sentiment_task

        self.preset = gemma_model.preset_dir(verbose=False)
        tokenizer = keras_hub.models.Gemma3Tokenizer.from_preset(self.preset)
        self.label_ids = causal_lm.label_tokens(tokenizer)
        (train_words, train_labels), (test_words, test_labels) = sentiment_task.load_lexicon(train, test)
        self.train = causal_lm.Task(tokenizer, train_words, train_labels)
        self.test = causal_lm.Task(tokenizer, test_words, test_labels)
        self.base = keras_hub.models.Gemma3Backbone.from_preset(self.preset, dtype="float32")
        self.weights = self.base.get_weights()

    def run(self, method, r, lr, seed, batch_size, epochs):
        import causal_lm
        import keras
        import keras_hub
        import numpy as np

        keras.utils.set_random_seed(seed)
        backbone = keras_hub.models.Gemma3Backbone.from_config(self.base.get_config())
        backbone.set_weights(self.weights)
        if method != "full":
            k = 1 if method == "lora" else int(method.split("=")[1])
            backbone.enable_gralora(r=r, k=k, target_layer_names="all")
        model = causal_lm.next_token_model(backbone)
        model.compile(
            optimizer=keras.optimizers.AdamW(lr), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        started = time.perf_counter()
        history = model.fit(
            self.train.x, self.label_ids[self.train.labels], batch_size=batch_size, epochs=epochs, verbose=0
        )
        seconds = time.perf_counter() - started
        logits = np.asarray(model.predict(self.test.x, batch_size=64, verbose=0))
        score = causal_lm.score(logits, self.label_ids, self.test.labels)
        return {
            "method": method,
            "r": r,
            "lr": lr,
            "seed": seed,
            "score": score,
            "final_loss": float(history.history["loss"][-1]),
            "trainable": trainable,
            "train_s": round(seconds, 1),
            "backend": keras.backend.backend(),
        }


def best_lr(done, method, r):
    sweep = [run for run in done if run["method"] == method and run["r"] == r and run["seed"] == 0]
    return max(sweep, key=lambda run: run["score"])["lr"] if sweep else None


def sweep(args):
    done = runs(args.out)
    seen = {key(run) for run in done}
    job = None
    plan = [(method, r) for r in args.ranks for method in ("lora", "gralora k=2", "gralora k=4")]
    if args.full:
        plan.append(("full", 0))

    def train(method, r, lr, seed):
        nonlocal job
        if (method, r, lr, seed) in seen:
            return
        job = job or Job(args.train, args.test)
        run = job.run(method, r, lr, seed, args.batch_size, args.epochs)
        print(json.dumps(run), flush=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(run) + "\n")
        seen.add(key(run))

    for method, r in plan:  # the learning-rate sweep on seed 0, extended past an edge that wins
        lrs = sorted(args.full_lrs if method == "full" else args.lrs)
        for lr in lrs:
            train(method, r, lr, 0)
        for _ in range(args.extend):
            best = best_lr(runs(args.out), method, r)
            if best not in (lrs[0], lrs[-1]):
                break
            lr = next_rate(best, down=best == lrs[0])
            lrs = sorted(lrs + [lr])
            train(method, r, lr, 0)
    for method, r in plan:
        for seed in range(1, args.seeds + 1):
            train(method, r, best_lr(runs(args.out), method, r), seed)


def next_rate(lr, down):
    """The next rate past `lr` on the 1-3-10 ladder (`1e-4` -> `3e-5` down, `3e-4` up)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    ladder = [m * 10.0**e for e in range(exponent - 1, exponent + 2) for m in (1, 3)]
    step = min(range(len(ladder)), key=lambda i: abs(math.log(ladder[i] / lr)))
    return float(f"{ladder[step - 1 if down else step + 1]:.0e}")


def summary(path):
    """`{(method, r): (lr, [scores at that lr over seeds])}` at each method's best seed-0 rate."""
    done = runs(path)
    table = {}
    for method, r in sorted({(run["method"], run["r"]) for run in done}):
        lr = best_lr(done, method, r)
        scores = [run["score"] for run in done if (run["method"], run["r"], run["lr"]) == (method, r, lr)]
        table[(method, r)] = (lr, scores)
    return table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--full-lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    parser.add_argument("--full", action="store_true", help="also full fine-tuning")
    parser.add_argument("--seeds", type=int, default=2, help="seeds after seed 0, at the best rate")
    parser.add_argument("--extend", type=int, default=2, help="rates added past a winning edge of the sweep")
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="runs/gemma_quality.jsonl")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    sweep(args)


if __name__ == "__main__":
    main()
