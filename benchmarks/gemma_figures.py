"""The Gemma 3 270M figures of the performance guide, drawn from the benchmarks' JSON lines.

- `docs/gemma-step.png`: each configuration's train step and peak memory over
  Keras LoRA's, per backend (`gemma_step.py`'s lines in `docs/gemma-step.jsonl`);
- `docs/gemma-quality.png`: held-out score vs r, one line per method, the
  range over seeds as error bars, full fine-tuning as a line
  (`gemma_quality.py`'s lines in `docs/gemma-quality.jsonl`).

    python benchmarks/gemma_figures.py
"""

import argparse
import json
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from gemma_quality import key, runs, summary


def step(path, figure):
    """Bars: each configuration's train step (and peak memory) over Keras LoRA's, per backend, with the range."""
    with open(path) as file:
        rows = [json.loads(line) for line in file if line.strip()]
    backends = ["jax", "torch", "tensorflow"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (mode, title) in zip(axes, [("time", "train step"), ("memory", "peak memory (RSS)")]):
        found = [row for row in rows if row["mode"] == mode and row["config"] not in ("keras-lora", "head")]
        configs = list(dict.fromkeys(row["config"] for row in found))
        if not configs:
            ax.set_axis_off()
            continue
        width, labelled = 0.8 / len(configs), set()
        for i, config in enumerate(configs):
            for j, backend in enumerate(backends):
                row = next((r for r in found if r["config"] == config and r["backend"] == backend), None)
                if row is None:
                    continue
                value, spread = _ratio(row, rows, mode)
                label = None if config in labelled else config
                labelled.add(config)
                ax.bar(j + i * width, value, width, color=f"C{i}", label=label, yerr=spread)
        ax.axhline(1.0, color="black", lw=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(backends))], backends)
        ax.set_ylabel(f"{title} / Keras LoRA's")
        ax.set_title(f"Gemma 3 270M, r=32: {title}")
        ax.legend(fontsize=7, loc="lower left")
    fig.savefig(figure, dpi=110, bbox_inches="tight")


def _ratio(row, rows, mode):
    """`(ratio to Keras LoRA, [[below], [above]] range)` of one configuration's row."""
    if mode == "time":
        low, high = row["vs_keras_lora_range"]
        return row["vs_keras_lora"], [[row["vs_keras_lora"] - low], [high - row["vs_keras_lora"]]]
    lora = next(r for r in rows if r["mode"] == mode and r["backend"] == row["backend"] and r["config"] == "keras-lora")
    value = row["peak_mib"] / lora["peak_mib"]  # unrounded, so the median lies inside its range
    low, high = (peak / lora["peak_mib"] for peak in row["peak_mib_range"])
    return value, [[value - low], [high - value]]


def quality(path, figure):
    table = summary(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for shift, method in zip((0.93, 1.0, 1.07), ("lora", "gralora k=2", "gralora k=4")):
        points = sorted((r, scores) for (m, r), (_, scores) in table.items() if m == method)
        if not points:
            continue
        ranks = [r * shift for r, _ in points]  # side by side, so the seeds' ranges stay apart
        medians = [statistics.median(s) for _, s in points]
        low = [m - min(s) for m, (_, s) in zip(medians, points)]
        high = [max(s) - m for m, (_, s) in zip(medians, points)]
        ax.errorbar(ranks, medians, yerr=[low, high], marker="o", capsize=4, label=method)
    if ("full", 0) in table:
        scores = table[("full", 0)][1]
        ax.axhspan(min(scores), max(scores), color="0.9", label="full fine-tuning, range")
        ax.axhline(statistics.median(scores), color="black", ls="--", label="full fine-tuning, median")
    ax.set_xscale("log", base=2)
    ranks = sorted({r for (m, r) in table if m != "full"})
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("r (the same trainable parameters for every method at one r)")
    ax.set_ylabel("held-out score (median, range over seeds)")
    ax.set_title("Gemma 3 270M, lexicon sentiment as the next token")
    ax.legend(fontsize=8)
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    for (method, r), (lr, scores) in table.items():
        print(
            f"{method:12s} r={r:3d} lr={lr:g}: median {statistics.median(scores):.3f} "
            f"({min(scores):.3f}-{max(scores):.3f}, {len(scores)} seeds)"
        )


def memory_table(path):
    """The performance guide's peak-memory table (markdown), from `gemma_memory.py`'s lines."""
    with open(path) as file:
        rows = [json.loads(line) for line in file if line.strip()]
    print("| backend | configuration | peak MiB (range) | / Keras LoRA | step MiB (range) | XLA temporaries MiB |")
    print("|---|---|---|---:|---|---:|")
    for row in (row for row in rows if row["mode"] == "memory"):
        peak, step_mib = (
            f"{row[f]:.0f} ({row[f + '_range'][0]:.0f}-{row[f + '_range'][1]:.0f})" for f in ("peak_mib", "step_mib")
        )
        temp = f"{row['xla_temp_mib']:.0f}" if row.get("xla_temp_mib") is not None else "-"
        print(f"| {row['backend']} | {row['config']} | {peak} | {row['vs_keras_lora']:.2f} | {step_mib} | {temp} |")


def quality_tables(path):
    """The guide's quality tables (markdown): the seed-0 rate sweep, then each method's best rate over seeds."""
    done = runs(path)
    methods = ("lora", "gralora k=2", "gralora k=4")
    print("| r | learning rate | LoRA | GraLoRA k=2 | GraLoRA k=4 |\n|---|---|---:|---:|---:|")
    for r, lr in sorted({(run["r"], run["lr"]) for run in done if run["method"] != "full"}):
        cells = [next((f"{x['score']:.3f}" for x in done if key(x) == (m, r, lr, 0)), "-") for m in methods]
        print(f"| {r} | {lr:g} | " + " | ".join(cells) + " |")
    print("\n| method | r | best rate (seed 0) | median (range) over 3 seeds |\n|---|---:|---|---|")
    for (method, r), (lr, scores) in sorted(summary(path).items(), key=lambda item: (item[0][1], item[0][0])):
        spread = f"{statistics.median(scores):.3f} ({min(scores):.3f}-{max(scores):.3f})"
        print(f"| {method} | {r or '-'} | {lr:g} | {spread} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", default="docs/gemma-step.jsonl")
    parser.add_argument("--quality", default="docs/gemma-quality.jsonl")
    args = parser.parse_args()
    step(args.step, args.step.replace(".jsonl", ".png"))
    quality(args.quality, args.quality.replace(".jsonl", ".png"))
    memory_table(args.step)
    quality_tables(args.quality)


if __name__ == "__main__":
    main()
