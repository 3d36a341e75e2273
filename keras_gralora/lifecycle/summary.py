"""`gralora_summary`: PEFT's `print_trainable_parameters`, per layer and adapter."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras

from keras_gralora.surgery import inject, selection


def gralora_summary(model: keras.Layer, print_fn: Callable[[str], object] | None = print) -> dict:
    """PEFT's `print_trainable_parameters`, per layer and adapter.

    Prints one row per layer and adapter, block 0 first, active adapters
    marked `*`, then the trainable and total parameter counts.

    Args:
        model: Any Keras model or layer (one without adapters has no rows).
        print_fn: Receives the table as one string; `None` prints nothing.

    Returns:
        `{"layers": [...], "trainable": int, "total": int, "share": float}`;
        each row holds path, adapter, active, merged, in_features,
        out_features, r, k, hybrid_r, alpha (its value) and the adapter's
        parameter count: per layer, as patterns set them.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> summary = keras_gralora.gralora_summary(model, print_fn=None)
        >>> summary["layers"][0]["parameters"], summary["trainable"], summary["total"]
        (32, 32, 104)
    """
    rows = []
    for layer in _in_block_order(model, inject.adapted_layers(model)):
        in_features, out_features = layer.matrix_shape_of(layer)
        for name in layer.adapter_names:
            adapter = layer.adapter(name)
            rows.append(
                dict(
                    path=layer.path,
                    adapter=name,
                    active=name in layer.active_adapters,
                    merged=name in layer.merged_adapters,
                    in_features=in_features,
                    out_features=out_features,
                    r=adapter.config.r,
                    k=adapter.config.k,
                    hybrid_r=adapter.config.hybrid_r,
                    alpha=adapter.config.effective_alpha,
                    parameters=sum(_size(v) for v in adapter.variables),
                )
            )
    trainable = sum(_size(v) for v in model.trainable_weights)
    total = sum(_size(v) for v in model.weights)
    summary = {"layers": rows, "trainable": trainable, "total": total, "share": trainable / max(total, 1)}
    if print_fn is not None:
        print_fn(_format_summary(summary))
    return summary


def _in_block_order(model, layers):
    """Block 0 first (Keras may list a backbone's blocks last to first); layers outside blocks last."""

    def key(item):
        position, layer = item
        block = selection.block_index(model, layer)
        return (math.inf if block is None else block, position)

    return [layer for _, layer in sorted(enumerate(layers), key=key)]


def _size(variable):
    return math.prod(variable.shape)


def _format_summary(summary):
    header = ("path", "adapter", "in", "out", "r", "k", "hybrid_r", "alpha", "params")
    rows = [
        (
            row["path"],
            row["adapter"] + ("*" if row["active"] else "") + (" (merged)" if row["merged"] else ""),
            row["in_features"],
            row["out_features"],
            row["r"],
            row["k"],
            row["hybrid_r"],
            f"{row['alpha']:g}",
            f"{row['parameters']:,}",
        )
        for row in summary["layers"]
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    lines.append("(* active)")
    lines.append(
        f"trainable params: {summary['trainable']:,} || all params: {summary['total']:,} "
        f"|| trainable%: {100 * summary['share']:.4f}"
    )
    return "\n".join(lines)
