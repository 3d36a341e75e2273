"""GraLoRA vs LoRA on the MiniLM sentiment task, at equal trainable-parameter counts over a range of r.

Every method adapts every Dense/EinsumDense of the backbone with the same
trainable count, `r * (in + out)` per layer:

- LoRA: GraLoRA with k=1 (one block: exactly LoRA's math, init and scale);
- GraLoRA k=2 and k=4 (r split into k x k blocks of rank r/k);
- GraLoRA k=2 + hybrid: block rank 3r/4 plus a plain LoRA of rank r/4.

Same data, seeds, steps and learning rate for all; several seeds per point.
Writes `compare.csv` and `compare.png` (held-out accuracy vs r, one line per
method, mean and min-max over seeds) to `--out` and prints the table.

    KERAS_BACKEND=torch python examples/compare.py --ranks 8 16 32 64 --seeds 0 1 2
"""

import argparse
import csv
import os
import statistics

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import sentiment_task

import keras_gralora  # noqa: F401  (adds Backbone.enable_gralora)

METHODS = {  # name: r -> (block rank, k, hybrid rank)
    "LoRA": lambda r: (r, 1, 0),
    "GraLoRA k=2": lambda r: (r, 2, 0),
    "GraLoRA k=4": lambda r: (r, 4, 0),
    "GraLoRA k=2 + hybrid": lambda r: (r - r // 4, 2, r // 4),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--test-examples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--preset", default=None, help="local KerasHub BERT preset directory (default: MiniLM)")
    return parser.parse_args(argv)


def run_one(args, method, r, seed):
    block_r, k, hybrid_r = METHODS[method](r)
    # The data split stays fixed (seed 0); `seed` draws the head, adapters and batch order.
    train, test = sentiment_task.load_lexicon(args.examples, args.test_examples, seed=0)
    model = sentiment_task.gralora_classifier(
        args.preset,
        seed,
        block_r,
        k,
        hybrid_r,
        args.learning_rate,
        train_head=False,  # as docs/compare.csv was run
    )
    model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)
    result = model.evaluate(*test, batch_size=64, verbose=0, return_dict=True)
    trainable = sum(int(keras.ops.size(v)) for v in model.trainable_weights)
    keras.backend.clear_session()
    return {"method": method, "r": r, "seed": seed, "trainable": trainable, "accuracy": result["accuracy"]}


def summarize(rows, methods, ranks):
    """Mean accuracy per (method, r): `{method: {r: (mean, min, max)}}`."""
    summary = {}
    for method in methods:
        for r in ranks:
            values = [row["accuracy"] for row in rows if row["method"] == method and row["r"] == r]
            summary.setdefault(method, {})[r] = (statistics.mean(values), min(values), max(values))
    return summary


def print_table(summary, ranks, seeds):
    print(f"\nHeld-out accuracy, mean (min-max) over seeds {seeds}:\n")
    print("| method | " + " | ".join(f"r={r}" for r in ranks) + " |")
    print("|---|" + "---:|" * len(ranks))
    for method, by_r in summary.items():
        cells = [f"{mean:.3f} ({low:.3f}-{high:.3f})" for mean, low, high in (by_r[r] for r in ranks)]
        print(f"| {method} | " + " | ".join(cells) + " |")


def plot(summary, ranks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for method, by_r in summary.items():
        means = [by_r[r][0] for r in ranks]
        low = [by_r[r][0] - by_r[r][1] for r in ranks]
        high = [by_r[r][2] - by_r[r][0] for r in ranks]
        axes.errorbar(ranks, means, yerr=[low, high], marker="o", capsize=3, label=method)
    axes.set_xscale("log", base=2)
    axes.set_xticks(ranks, [str(r) for r in ranks])
    axes.set_xlabel("r (equal trainable parameters per method)")
    axes.set_ylabel("held-out accuracy")
    axes.set_title("MiniLM on VADER lexicon (3 classes), all layers adapted")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    args.preset = args.preset or sentiment_task.minilm_preset()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for r in args.ranks:
        for method in args.methods:
            for seed in args.seeds:
                rows.append(run_one(args, method, r, seed))
                print(
                    f"{method:<22} r={r:<3} seed={seed}  trainable={rows[-1]['trainable']:,}  "
                    f"accuracy={rows[-1]['accuracy']:.4f}",
                    flush=True,
                )
    with open(os.path.join(args.out, "compare.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows, args.methods, args.ranks)
    print_table(summary, args.ranks, args.seeds)
    plot(summary, args.ranks, os.path.join(args.out, "compare.png"))
    print(f"\nwrote {args.out}/compare.csv and {args.out}/compare.png")
    return rows


if __name__ == "__main__":
    main()
