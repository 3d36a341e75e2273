"""GraLoRA vs LoRA on the MiniLM sentiment task, at equal trainable-parameter counts over a range of r.

Every method adapts every Dense/EinsumDense of the backbone with the same
trainable count, `r * (in + out)` per layer:

- LoRA: GraLoRA with k=1 (one block: exactly LoRA's math, init and scale);
- GraLoRA k=2 and k=4 (r split into k x k blocks of rank r/k);
- GraLoRA k=2 + hybrid: block rank 3r/4 plus a plain LoRA of rank r/4.

Same data, seeds, steps and learning rate for all; several seeds per point.
`--full` adds the ceiling: full fine-tuning (every backbone weight trains,
the head stays as drawn, as for the adapters), at each of `--full-lrs` on
the first seed, then on every seed at the best of them.
Writes `compare.csv` and `compare.png` (held-out accuracy vs r, one line per
method, mean and min-max over seeds; full fine-tuning as a band) to `--out`
and prints the table. `--resume` keeps the runs already in `compare.csv`
and runs only the missing ones.

    KERAS_BACKEND=torch python examples/compare.py --ranks 8 16 32 64 --seeds 0 1 2
    KERAS_BACKEND=torch python examples/compare.py --out docs --resume --full   # add the ceiling to docs/
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
FULL = "Full fine-tuning"


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
    parser.add_argument("--full", action="store_true", help="also full fine-tuning (the ceiling)")
    parser.add_argument("--full-lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4, 1e-3])
    parser.add_argument("--resume", action="store_true", help="keep the runs in OUT/compare.csv")
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--preset", default=None, help="local KerasHub BERT preset directory (default: MiniLM)")
    return parser.parse_args(argv)


def run_one(args, method, r, seed, learning_rate):
    # The data split and its order stay fixed (seed 0); `seed` draws the head and the adapters.
    train, test = sentiment_task.load_lexicon(args.examples, args.test_examples, seed=0)
    if method == FULL:
        model = sentiment_task.classifier(args.preset, seed)
        model.get_layer("logits").trainable = False  # the head stays as drawn, as for the adapters
        sentiment_task.compile_for_training(model, learning_rate)
    else:
        block_r, k, hybrid_r = METHODS[method](r)
        model = sentiment_task.gralora_classifier(
            args.preset,
            seed,
            block_r,
            k,
            hybrid_r,
            learning_rate,
            train_head=False,  # as docs/compare.csv was run
        )
    # A task with a preprocessor feeds arrays in their order (Keras ignores `shuffle=True` there): the
    # split's order, the same for every run, as docs/compare.csv was run.
    model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, verbose=0)
    result = model.evaluate(*test, batch_size=64, verbose=0, return_dict=True)
    trainable = sum(int(keras.ops.size(v)) for v in model.trainable_weights)
    keras.backend.clear_session()
    return {
        "method": method,
        "r": r,
        "seed": seed,
        "trainable": trainable,
        "accuracy": result["accuracy"],
        "learning_rate": learning_rate,
    }


def read_rows(path, learning_rate):
    """The runs in an earlier `compare.csv` (rows without a learning rate ran at `learning_rate`)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.update(r=int(row["r"]), seed=int(row["seed"]), trainable=int(row["trainable"]))
        row.update(accuracy=float(row["accuracy"]), learning_rate=float(row.get("learning_rate") or learning_rate))
    return rows


def best_full_lr(rows, seed):
    """Full fine-tuning's learning rate with the best accuracy on `seed`."""
    sweep = [row for row in rows if row["method"] == FULL and row["seed"] == seed]
    return max(sweep, key=lambda row: row["accuracy"])["learning_rate"]


def plan(args, rows):
    """Yields `(method, r, seed, learning_rate)` to run, after what `rows` holds (it grows as runs finish)."""
    for r in args.ranks:
        for method in args.methods:
            for seed in args.seeds:
                yield method, r, seed, args.learning_rate
    if args.full:
        for lr in args.full_lrs:
            yield FULL, 0, args.seeds[0], lr
        for seed in args.seeds[1:]:
            yield FULL, 0, seed, best_full_lr(rows, args.seeds[0])


def summarize(rows, methods, ranks):
    """Mean accuracy per (method, r): `{method: {r: (mean, min, max)}}`; full fine-tuning (at its best
    rate) has the same figures at every r."""
    summary = {}
    for method in methods:
        for r in ranks:
            values = [row["accuracy"] for row in rows if row["method"] == method and row["r"] == r]
            summary.setdefault(method, {})[r] = (statistics.mean(values), min(values), max(values))
    full = [row for row in rows if row["method"] == FULL]
    if full:
        lr = best_full_lr(rows, min(row["seed"] for row in full))
        values = [row["accuracy"] for row in full if row["learning_rate"] == lr]
        summary[f"{FULL} (lr {lr:g})"] = {r: (statistics.mean(values), min(values), max(values)) for r in ranks}
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
        if method.startswith(FULL):
            mean, low, high = by_r[ranks[0]]
            axes.axhspan(low, high, color="0.85", label=f"{method}, min-max")
            axes.axhline(mean, color="0.4", linestyle="--")
            continue
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
    path = os.path.join(args.out, "compare.csv")
    rows = read_rows(path, args.learning_rate) if args.resume else []
    for method, r, seed, lr in plan(args, rows):
        if any((row["method"], row["r"], row["seed"], row["learning_rate"]) == (method, r, seed, lr) for row in rows):
            continue
        rows.append(run_one(args, method, r, seed, lr))
        print(
            f"{method:<22} r={r:<3} seed={seed} lr={lr:g}  trainable={rows[-1]['trainable']:,}  "
            f"accuracy={rows[-1]['accuracy']:.4f}",
            flush=True,
        )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows, args.methods, args.ranks)
    print_table(summary, args.ranks, args.seeds)
    plot(summary, args.ranks, os.path.join(args.out, "compare.png"))
    print(f"\nwrote {args.out}/compare.csv and {args.out}/compare.png")
    return rows


if __name__ == "__main__":
    main()
