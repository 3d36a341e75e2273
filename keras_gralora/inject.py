"""Model surgery: find Dense/EinsumDense layers, adapt them in place, freeze, merge.

Layers are adapted in place (their class becomes the GraLoRA variant and the
adapter weights are added), so the layer object, its name, its `path` and
its base weights stay what they were, and any reference a user holds keeps
pointing at the adapted layer.
"""

import math
import re

import keras

from keras_gralora.config import GraLoRAConfig
from keras_gralora.layers.adapter import GraLoRAAdapter, check_base_layer, describe
from keras_gralora.layers.dense import GraLoRADense
from keras_gralora.layers.einsum_dense import GraLoRAEinsumDense

ADAPTED_CLASS = {keras.layers.Dense: GraLoRADense, keras.layers.EinsumDense: GraLoRAEinsumDense}
BASE_CLASS = {adapted: base for base, adapted in ADAPTED_CLASS.items()}
FALLBACK_TARGETS = ("query", "value", "query_dense", "value_dense")


def enable_gralora(model, r=32, k=2, hybrid_r=0, alpha=None, dropout=0.0, target_layer_names=None):
    """Adds GraLoRA adapters to the targeted layers of `model` and freezes the rest.

    Every targeted `Dense`/`EinsumDense` inside `model`, at any depth, becomes
    a `GraLoRADense`/`GraLoRAEinsumDense` in place. Afterwards every weight of
    `model` is frozen except the adapters (biases too, as PEFT's
    `bias="none"`); layers outside `model` (a task's head when `model` is
    its backbone) keep their trainability.

    Args:
        model: A built Keras model or layer, e.g. a KerasHub backbone or task.
        r, k, hybrid_r, alpha, dropout: The adapter settings, see
            `GraLoRADense`.
        target_layer_names: Which layers to adapt: a list of layer names; a
            regular expression that must match a layer's whole `path`;
            `"all"` for every Dense/EinsumDense whose features divide by `k`
            except a task's output head; or `None` for the backbone's
            `default_lora_layer_names()` (KerasHub), else
            `["query", "value", "query_dense", "value_dense"]`.

    Returns:
        The adapted layers' paths.

    Example:

    >>> inputs = keras.Input((16,))
    >>> outputs = keras.layers.Dense(8, name="head")(
    ...     keras.layers.Dense(32, name="query")(inputs))
    >>> model = keras.Model(inputs, outputs)
    >>> enable_gralora(model, r=4, k=2)
    ['query']
    """
    config = GraLoRAConfig(r, k, hybrid_r, alpha, dropout)
    config.validate("enable_gralora")
    if not model.built:
        raise ValueError(
            f"enable_gralora: model '{model.name}' is not built yet; call it on data or build it first."
        )
    targets = select_targets(model, target_layer_names, config)
    return enable_on_layers(model, [(layer, config) for layer in targets])


def enable_on_layers(model, layer_configs):
    """Adapts each `(layer, config)` pair after checking them all; freezes `model`.

    Returns the adapted layers' paths. Nothing changes when a check fails.
    """
    for layer, config in layer_configs:
        check_adaptable(layer, config)
    freeze(model)
    for layer, config in layer_configs:
        adapt_in_place(layer, config)
    reset_compiled_functions(model)
    return [layer.path for layer, _ in layer_configs]


def check_adaptable(layer, config):
    """Raises `ValueError` unless `layer` (plain Dense/EinsumDense) can carry `config`."""
    if isinstance(layer, GraLoRAAdapter):
        raise ValueError(f"{describe(layer)} at '{layer.path}' already carries a GraLoRA adapter.")
    check_base_layer(layer, config)
    config.validate_features(*ADAPTED_CLASS[type(layer)].matrix_shape_of(layer), describe(layer))


def adaptable_layers(model):
    """Every plain Dense/EinsumDense (or adapted one) inside `model`, in order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if type(layer) in ADAPTED_CLASS or isinstance(layer, GraLoRAAdapter)
    ]


def adapted_layers(model):
    """The GraLoRA layers inside `model`."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, GraLoRAAdapter)]


def select_targets(model, target_layer_names, config):
    candidates = adaptable_layers(model)
    if target_layer_names is None:
        target_layer_names = default_target_names(model)
    if target_layer_names == "all":
        head = set(map(id, output_head_layers(model)))
        targets = [
            layer for layer in candidates
            if id(layer) not in head and _adaptable(layer, config)
        ]
    elif isinstance(target_layer_names, str):
        pattern = re.compile(target_layer_names)
        targets = [layer for layer in candidates if pattern.fullmatch(layer.path)]
    elif isinstance(target_layer_names, (list, tuple, set)) and all(
        isinstance(name, str) for name in target_layer_names
    ):
        names = set(target_layer_names)
        targets = [layer for layer in candidates if layer.name in names]
    else:
        raise ValueError(
            f"enable_gralora: target_layer_names={target_layer_names!r} is not a list of layer names, "
            "a regular expression string, 'all' or None."
        )
    if not targets:
        available = sorted({layer.name for layer in candidates})
        raise ValueError(
            f"enable_gralora: target_layer_names={target_layer_names!r} matched no Dense or "
            f"EinsumDense layer of '{model.name}'. Its Dense/EinsumDense layer names are: {available}"
            " (a string is a regular expression over whole layer paths, e.g. '.*(query|value)')."
        )
    if already := [layer.path for layer in targets if isinstance(layer, GraLoRAAdapter)]:
        raise ValueError(
            f"enable_gralora: GraLoRA is already enabled on {already}. Enabling a layer twice is "
            "not supported; load a fresh model, or target other layers."
        )
    return targets


def default_target_names(model):
    backbone = getattr(model, "backbone", model)
    if hasattr(backbone, "default_lora_layer_names"):
        return backbone.default_lora_layer_names()
    return list(FALLBACK_TARGETS)


def output_head_layers(model):
    """Layers a task adds on top of its backbone, or a functional model's output layers."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.layers.Layer) and backbone is not model:
        inside = {id(layer) for layer in backbone._flatten_layers(include_self=True)}
        return [layer for layer in model._flatten_layers(include_self=False) if id(layer) not in inside]
    try:
        return [history[0] for history in (t._keras_history for t in keras.tree.flatten(model.outputs))]
    except (AttributeError, ValueError):  # not a functional model
        return []


def _adaptable(layer, config):
    """Whether `config` can adapt `layer` ("all" skips the layers it cannot)."""
    cls = ADAPTED_CLASS.get(type(layer))
    if cls is None:
        return False
    try:  # an einsum that is no projection, or features that do not split into k blocks
        config.validate_features(*cls.matrix_shape_of(layer), where=layer.path)
    except ValueError:
        return False
    return True


def freeze(model):
    """Makes every weight of `model` non-trainable, as KerasHub's `enable_lora` does."""
    model.trainable = True
    for layer in model._flatten_layers(include_self=False):
        layer.trainable = False


def adapt_in_place(layer, config):
    """Turns a built Dense/EinsumDense into its GraLoRA variant, keeping the object."""
    layer.__class__ = ADAPTED_CLASS[type(layer)]
    layer.trainable = True  # the layer's own flag; its kernel and bias get frozen below
    layer._init_gralora(config)
    layer._build_gralora()


def merge_gralora(model, safe=False):
    """Folds every adapter inside `model` into its kernel (see `GraLoRADense.merge`)."""
    for layer in adapted_layers(model):
        layer.merge(safe=safe)
    reset_compiled_functions(model)


def unmerge_gralora(model):
    """Takes every merged adapter inside `model` back out of its kernel."""
    for layer in adapted_layers(model):
        layer.unmerge()
    reset_compiled_functions(model)


def reset_compiled_functions(model):
    # Compiled train/predict functions captured the layers as they were
    # traced (adapter on or off); drop them so the next call retraces.
    for name in ("train_function", "test_function", "predict_function", "generate_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def gralora_summary(model, print_fn=print):
    """Per adapted layer: path, in, out, r, k, hybrid_r, trainable count; and totals.

    Prints a table (PEFT's `print_trainable_parameters`, per layer) and
    returns `{"layers": [...], "trainable": int, "total": int, "share": float}`.
    """
    rows = []
    for layer in adapted_layers(model):
        in_features, out_features = layer.matrix_shape_of(layer)
        cfg = layer.gralora_config
        count = sum(_size(v) for v in layer.adapter_variables)
        rows.append(dict(path=layer.path, in_features=in_features, out_features=out_features,
                         r=cfg.r, k=cfg.k, hybrid_r=cfg.hybrid_r, trainable=count))
    trainable = sum(_size(v) for v in model.trainable_weights)
    total = sum(_size(v) for v in model.weights)
    summary = {"layers": rows, "trainable": trainable, "total": total, "share": trainable / max(total, 1)}
    if print_fn is not None:
        print_fn(_format_summary(summary))
    return summary


def _size(variable):
    return math.prod(variable.shape)


def _format_summary(summary):
    header = ("path", "in", "out", "r", "k", "hybrid_r", "trainable")
    rows = [
        (row["path"], row["in_features"], row["out_features"], row["r"], row["k"], row["hybrid_r"],
         f"{row['trainable']:,}")
        for row in summary["layers"]
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)) for line in [header, *rows]]
    lines.append(
        f"trainable params: {summary['trainable']:,} || all params: {summary['total']:,} "
        f"|| trainable%: {100 * summary['share']:.4f}"
    )
    return "\n".join(lines)
