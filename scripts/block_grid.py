"""Draws GraLoRA's block grid beside plain LoRA: `docs/block-grid.png`.

The update of a layer with `in` inputs and `out` outputs, as a matrix
(inputs down, outputs across, as Keras kernels are laid out):

- LoRA: one product `A [in, r] @ B [r, out]`, rank at most `r`;
- GraLoRA with `k` blocks per side: cell `(i, j)` (input block `i`, output
  block `j`) is its own product `A_ij [in/k, r/k] @ B_ij [r/k, out/k]`, so
  the update's rank reaches `k * r` with the same `r * (in + out)`
  parameters. In PEFT's layout `A[i]` holds the `A_ij` of input block `i`
  side by side, `B[j]` the `B_ij` of output block `j` stacked;
- the hybrid LoRA (`hybrid_r`) adds one plain product over the whole matrix.

    python scripts/block_grid.py [--out docs/block-grid.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]


def factor_pair(ax, x, y, width, height, color, label, fontsize, thin=0.14):
    """A cell `[x, x + width] x [y, y + height]` holding `A` (a tall strip) and `B` (a wide strip)."""
    ax.add_patch(Rectangle((x, y), width, height, facecolor=color, alpha=0.18, edgecolor=color, lw=1.5))
    ax.add_patch(Rectangle((x, y), width * thin, height, facecolor=color, alpha=0.75, lw=0))
    ax.add_patch(Rectangle((x, y + height * (1 - thin)), width, height * thin, facecolor=color, alpha=0.75, lw=0))
    ax.text(x + width * 0.57, y + height * 0.43, label, ha="center", va="center", fontsize=fontsize)


def panel(ax, k, title, hybrid=False):
    size = 1.0
    ax.set_xlim(-0.22, 1.05)
    ax.set_ylim(1.2, -0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    cell = size / k
    for i in range(k):  # input block i: rows
        for j in range(k):  # output block j: columns
            name = "A B" if k == 1 else f"A{i}{j}\nB{i}{j}"
            color = COLORS[(i + j) % len(COLORS)]
            factor_pair(ax, j * cell, i * cell, cell, cell, color, name, fontsize=10 if k < 4 else 7)
    for i in range(k):
        ax.text(-0.05, (i + 0.5) * cell, f"x{i}" if k > 1 else "x", ha="right", va="center", fontsize=10)
        ax.text((i + 0.5) * cell, -0.05, f"y{i}" if k > 1 else "y", ha="center", va="bottom", fontsize=10)
    rank = "r" if k == 1 else f"{k}r"
    note = f"rank <= {rank}" + (" + hybrid_r" if hybrid else "")
    if hybrid:  # one plain LoRA over the whole matrix, drawn as a frame with its two factors
        ax.add_patch(Rectangle((0, 0), size, size, fill=False, edgecolor="black", lw=2.5, ls="--"))
        ax.text(0.5, 1.08, "+ hybrid: A_h [in, hybrid_r] @ B_h [hybrid_r, out], whole matrix", ha="center", fontsize=8)
    params = "(r + hybrid_r)(in + out)" if hybrid else "r (in + out)"
    ax.text(0.5, 1.16, f"{params} parameters, {note}", ha="center", fontsize=9)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/block-grid.png")
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    panel(axes[0], 1, "LoRA: one product of rank r")
    panel(axes[1], 2, "GraLoRA k=2: cell (i, j) maps x_i to y_j\nwith its own rank-r/2 product")
    panel(axes[2], 4, "GraLoRA k=4, hybrid_r > 0\n16 cells of rank r/4, plus a hybrid LoRA", hybrid=True)
    fig.text(
        0.5,
        0.04,
        "The update as an [in, out] matrix: input blocks down, output blocks across. Strips: each cell's A "
        "(tall, in/k x r/k) and B (wide, r/k x out/k).",
        ha="center",
        fontsize=9,
    )
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
