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
from gemma_quality import summary


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
    low, high = (peak / lora["peak_mib"] for peak in row["peak_mib_range"])
    return row["vs_keras_lora"], [[row["vs_keras_lora"] - low], [high - row["vs_keras_lora"]]]


def quality(path, figure):
    table = summary(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in ("lora", "gralora k=2", "gralora k=4"):
        points = sorted((r, scores) for (m, r), (_, scores) in table.items() if m == method)
        if not points:
            continue
        ranks = [r for r, _ in points]
        medians = [statistics.median(s) for _, s in points]
        low = [m - min(s) for m, (_, s) in zip(medians, points)]
        high = [max(s) - m for m, (_, s) in zip(medians, points)]
        ax.errorbar(ranks, medians, yerr=[low, high], marker="o", capsize=4, label=method)
    if ("full", 0) in table:
        scores = table[("full", 0)][1]
        ax.axhline(statistics.median(scores), color="black", ls="--", label="full fine-tuning")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("r (the same trainable parameters for every method at one r)")
    ax.set_ylabel("held-out score (median, range over seeds)")
    ax.set_title("Gemma 3 270M, lexicon sentiment as the next token")
    ax.legend()
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    for (method, r), (lr, scores) in table.items():
        print(
            f"{method:12s} r={r:3d} lr={lr:g}: median {statistics.median(scores):.3f} "
            f"({min(scores):.3f}-{max(scores):.3f}, {len(scores)} seeds)"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", default="docs/gemma-step.jsonl")
    parser.add_argument("--quality", default="docs/gemma-quality.jsonl")
    args = parser.parse_args()
    step(args.step, args.step.replace(".jsonl", ".png"))
    quality(args.quality, args.quality.replace(".jsonl", ".png"))


if __name__ == "__main__":
    main()
