"""Fine-tune pretrained MiniLM with GraLoRA on a real sentiment task, on any backend.

Loads all-MiniLM-L6-v2 as a KerasHub `BertTextClassifier` (or another local
KerasHub preset with `--preset`), adapts every Dense/EinsumDense of the
backbone with GraLoRA, trains the adapters together with the new 3-class
head on VADER's human-rated lexicon, and reports held-out accuracy before
and after. Then it saves the adapter file (adapters plus head: PEFT's
`modules_to_save`), loads it onto a fresh classifier whose head is drawn
from another seed (same accuracy, checked: the file plus the preset is the
whole fine-tune), merges and exports a plain `.keras` model for serving.

    KERAS_BACKEND=torch python examples/finetune.py --r 16 --k 4 --epochs 3
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import sentiment_task

import keras_gralora


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=int, default=8, help="GraLoRA rank (default 8)")
    parser.add_argument("--k", type=int, default=2, help="blocks per side (default 2)")
    parser.add_argument("--hybrid-r", type=int, default=0, help="extra plain-LoRA rank (default 0)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--examples", type=int, default=2048, help="training examples (default 2048)")
    parser.add_argument("--test-examples", type=int, default=512, help="held-out examples (default 512)")
    parser.add_argument("--steps", type=int, default=None, help="train steps per epoch (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/finetune", help="output folder (default runs/finetune)")
    parser.add_argument("--preset", default=None, help="local KerasHub BERT preset directory (default: MiniLM)")
    parser.add_argument(
        "--quantize",
        choices=("int8", "int4"),
        default=None,
        help="quantize the pretrained backbone (Keras' own int8/int4) before adapting it",
    )
    return parser.parse_args(argv)


def build(args):
    return sentiment_task.gralora_classifier(
        args.preset, args.seed, args.r, args.k, args.hybrid_r, args.learning_rate, quantize=args.quantize
    )


def accuracy(model, test):
    return model.evaluate(*test, batch_size=64, verbose=0, return_dict=True)["accuracy"]


def main(argv=None):
    args = parse_args(argv)
    args.preset = args.preset or sentiment_task.minilm_preset()
    os.makedirs(args.out, exist_ok=True)
    train, test = sentiment_task.load_lexicon(args.examples, args.test_examples, args.seed)
    print(f"backend={keras.backend.backend()}  preset={args.preset}  base={args.quantize or 'float32'}")
    print(f"train {len(train[0])} / held-out {len(test[0])} lexicon entries, classes {sentiment_task.CLASSES}")

    model = build(args)
    keras_gralora.gralora_summary(model)
    before = accuracy(model, test)
    print(f"held-out accuracy before training: {before:.4f}")
    start = time.perf_counter()
    batches = sentiment_task.shuffled_batches(*train, args.batch_size, args.seed)
    model.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps, shuffle=False)  # shuffled above
    print(f"trained in {time.perf_counter() - start:.0f} s")
    after = accuracy(model, test)
    print(f"held-out accuracy after training:  {after:.4f}  ({after - before:+.4f})")
    logits = model.predict(test[0], batch_size=64, verbose=0)

    adapter_file = os.path.join(args.out, "minilm-sentiment.gralora.weights.h5")
    keras_gralora.save_gralora_weights(model, adapter_file)  # the task: its head travels with the adapters
    print(f"adapter file: {adapter_file} ({os.path.getsize(adapter_file) / 2**20:.2f} MiB, adapters + head)")
    # Another head (replaced by the file's), on the same base: float or quantized.
    reloaded = sentiment_task.classifier(args.preset, seed=args.seed + 1, quantize=args.quantize)
    keras_gralora.load_gralora_weights(reloaded, adapter_file)
    sentiment_task.compile_for_training(reloaded, args.learning_rate)
    reloaded_accuracy = accuracy(reloaded, test)
    check_same("reloaded", reloaded, test, logits, reloaded_accuracy, after)

    keras_gralora.merge_gralora(model)
    merged_accuracy = accuracy(model, test)
    if args.quantize:  # the merged kernel is requantized: lossy, so report the change rather than require none
        difference = np.abs(model.predict(test[0], batch_size=64, verbose=0) - logits).max()
        print(
            f"merged {args.quantize} model (requantized): held-out accuracy {merged_accuracy:.4f} "
            f"({merged_accuracy - after:+.4f}), largest logit change {difference:.2e}"
        )
    else:
        check_same("merged", model, test, logits, merged_accuracy, after)
    exported = os.path.join(args.out, "minilm-sentiment-merged.keras")
    keras_gralora.export_merged(model, exported)
    print(f"merged model for serving: {exported} (plain Keras layers, loads without keras_gralora)")
    return {"before": before, "after": after, "reloaded": reloaded_accuracy, "merged": merged_accuracy}


def check_same(what, model, test, expected_logits, value, expected):
    """The model's held-out logits and accuracy equal the trained model's."""
    difference = np.abs(model.predict(test[0], batch_size=64, verbose=0) - expected_logits).max()
    if difference > 1e-4 or not np.isclose(value, expected, atol=1e-6):
        raise SystemExit(
            f"{what} model differs from the trained one: accuracy {value:.6f} vs {expected:.6f}, "
            f"largest logit difference {difference:.2e}"
        )
    print(f"{what} model: held-out accuracy {value:.4f}, logits within {difference:.1e} of the trained model's")


if __name__ == "__main__":
    main()
