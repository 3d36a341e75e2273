"""Model surgery: find Dense/EinsumDense/convolution layers, adapt them in place, set what trains.

Layers are adapted in place (their class becomes the GraLoRA variant and the
adapter weights are added), so the layer object, its name, its `path` and
its base weights stay what they were, and any reference a user holds keeps
pointing at the adapted layer. A layer that already carries adapters gets
the new one added beside them.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import keras
from keras.src.utils.io_utils import print_msg  # Keras' own console output (honours its logging settings)

from keras_gralora.backend import register_parameters
from keras_gralora.config import GraLoRAConfig, check_adapter_name
from keras_gralora.layers import routed
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.in_place import adapt_in_place, unadapt_in_place  # noqa: F401  (re-exported)
from keras_gralora.layers.named_adapter import check_base_layer, describe
from keras_gralora.surgery.distribution import check_placement
from keras_gralora.surgery.patterns import check_patterns, describe_choices, layer_configs
from keras_gralora.surgery.quantized_gradients import fix_quantized_gradients
from keras_gralora.surgery.rollback import rolled_back
from keras_gralora.surgery.selection import (  # noqa: F401  (re-exported: the rest of the package finds layers here)
    ADAPTED_CLASS,
    BASE_CLASS,
    active_adapters,
    adaptable_layers,
    adapted_class,
    adapted_layers,
    adapter_configs,
    modules_to_save_paths,
    select_expert_targets,
    select_targets,
)


def enable_gralora(
    model: keras.Layer,
    r: int = 32,
    k: int | Literal["auto"] = 2,
    hybrid_r: int = 0,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_layer_names: str | list[str] | None = None,
    adapter_name: str = "default",
    bias: Literal["none", "all", "gralora_only"] = "none",
    modules_to_save: str | list[str] | None = None,
    layers_to_transform: int | list[int] | None = None,
    layers_pattern: str | None = None,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
    k_pattern: dict[str, int] | None = None,
    target_parameters: str | list[str] | None = None,
) -> list[str]:
    """Adds the GraLoRA adapter `adapter_name` to the targeted layers of `model`.

    Every targeted `Dense`/`EinsumDense` inside `model`, at any depth, becomes
    a `GraLoRADense`/`GraLoRAEinsumDense` in place, or gets the adapter added
    beside the ones it has. Afterwards every weight of `model` is frozen
    except the active adapters, the biases `bias` names and the
    `modules_to_save` of active adapters; layers outside `model` (a task's
    head when `model` is its backbone) keep their trainability. The new
    adapter is active only when `model` had no adapter yet (as PEFT's
    `add_adapter`); see `set_active_adapters`.

    Args:
        model: A built Keras model or layer, e.g. a KerasHub backbone or task.
        r: Total rank of the block adapters, divisible by `k`.
        k: Blocks per side. `k="auto"` picks each layer's k as the paper
            advises (2 for r <= 32, else 4; smaller where that does not
            divide the layer's widths and rank) and prints the choices.
        hybrid_r: Rank of an extra plain LoRA over the whole matrix.
        alpha: Scale numerator, `scale = alpha / (r + hybrid_r)`; `None`
            gives a scale of 2.
        dropout: Dropout on the adapter input, in training only.
        target_layer_names: Which layers to adapt: a list of layer names; a
            regular expression that must match a layer's whole `path`;
            `"all"` for every Dense/EinsumDense and Conv1D/2D/3D (groups
            1) whose features divide by `k` except a task's output head and
            `modules_to_save`; or `None` for the backbone's
            `default_lora_layer_names()` (KerasHub), else `["query", "value",
            "query_dense", "value_dense"]`; a model without Dense/EinsumDense
            layers (a convolutional network) defaults to `"all"`.
        adapter_name: The new adapter's name; it must not exist in `model`.
        bias: `"none"`, `"all"` (every bias of `model` trains) or
            `"gralora_only"` (the adapted layers' biases train), as PEFT.
            At most one adapter of a model may use a mode other than "none".
        modules_to_save: Layer names, or a regular expression over layer
            paths, whose weights train with this adapter and are saved in
            its adapter file (e.g. a task's new head). Each layer belongs to
            one adapter (PEFT keeps a copy per adapter).
        layers_to_transform: An int or a list of ints: adapt the targets only
            in those blocks (only with a list of target names, as PEFT).
        layers_pattern: The name of the blocks that `layers_to_transform`
            counts, e.g. `"transformer_layer"` or `"decoder_block"`; default:
            the first path segment that ends in a number.
        rank_pattern: Per-layer `r`: a dict from a regular expression to a
            rank, PEFT's rule (the first key matching the end of a layer's
            path wins); other layers keep `r`.
        alpha_pattern: Per-layer `alpha`, by the same rule.
        k_pattern: Per-layer `k`, by the same rule.
        target_parameters: Expert weights to adapt as well (PEFT's word):
            the `[E, in, out]` weights of mixture-of-experts layers, which
            hold no Dense layers (KerasHub's Mixtral, Qwen-MoE, Qwen3-MoE,
            Qwen3.5-MoE, GPT-OSS, Gemma 4 experts). `"all"` for every one,
            a list of weight names (`"gate_up_proj"`) or path ends
            (`"<layer path>/<weight name>"`), or a regular expression over
            whole weight paths; each expert gets its own grid. With
            `target_layer_names=[]`, only these. The pattern arguments match
            `<layer path>/<weight name>`. See `docs/guides/layer-kinds.md`.

    Returns:
        The adapted layers' paths.

    Raises:
        ValueError: Before any change: bad settings or patterns, an
            unbuilt model, an adapter name that exists, no layer matching
            the targets, a second adapter training biases, or features
            that do not divide by `k`; each names the value and the fix.

    Examples:
        >>> import keras
        >>> from keras_gralora import enable_gralora
        >>> inputs = keras.Input((16,))
        >>> outputs = keras.layers.Dense(8, name="head")(
        ...     keras.layers.Dense(32, name="query")(inputs))
        >>> model = keras.Model(inputs, outputs)
        >>> enable_gralora(model, r=4, k=2, modules_to_save=["head"])
        ['query']
        >>> enable_gralora(model, r=8, k=4, adapter_name="other")  # inactive until set active
        ['query']
    """
    where = "enable_gralora"
    auto_k = isinstance(k, str) and k == "auto"
    config = GraLoRAConfig(r, 1 if auto_k else k, hybrid_r, alpha, dropout, bias=bias).validate(where)
    patterns = {"rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern, "k_pattern": k_pattern}
    check_patterns(patterns, where)
    check_adapter_name(adapter_name, where)
    if not model.built:
        raise ValueError(f"{where}: model '{model.name}' is not built yet; call it on data or build it first.")
    existing = adapter_configs(model)
    if adapter_name in existing:
        raise ValueError(
            f"{where}: model '{model.name}' already has an adapter named {adapter_name!r} "
            f"(adapters: {list(existing)}). Choose a new adapter_name, or `delete_adapter` it first."
        )
    check_bias_owner(model, existing, adapter_name, bias)
    saved = modules_to_save_paths(model, modules_to_save, existing)
    experts_only = target_parameters is not None and isinstance(target_layer_names, list) and not target_layer_names
    targets = (
        []
        if experts_only
        else select_targets(model, target_layer_names, config, layers_to_transform, layers_pattern, saved)
    )
    targets += select_expert_targets(model, target_parameters)
    config = dataclasses.replace(config, modules_to_save=tuple(saved))
    planned = layer_configs(targets, config, patterns, auto_k, block_sizes, where)
    paths = enable_on_layers(model, [(layer, adapter_name, layer_config) for layer, layer_config in planned])
    if auto_k:
        print_msg(f"{where}: adapter {adapter_name!r} with k='auto' (r={r}): {describe_choices(planned)}")
    return paths


def matrix_shape(layer):
    """`(in, out)` of a Dense/EinsumDense/convolution kernel read as a matrix (adapted or not)."""
    return adapted_class(layer).matrix_shape_of(layer)


def block_sizes(layer):
    """`(in, out)` sizes the `k` blocks of `layer` split (adapted or not): `GraLoRAAdapter.block_sizes_of`."""
    return adapted_class(layer).block_sizes_of(layer)


def check_bias_owner(model, configs, adapter_name, bias):
    """Only one adapter of a model may train biases (PEFT's rule)."""
    owners = [name for name, config in configs.items() if config.bias != "none"]
    if bias != "none" and owners:
        raise ValueError(
            f"enable_gralora: adapter {owners[0]!r} of model '{model.name}' already trains biases "
            f"(bias={configs[owners[0]].bias!r}); only one adapter may use a bias mode other than 'none', "
            f"so adapter {adapter_name!r} cannot use bias={bias!r}. Use bias='none'."
        )


def enable_on_layers(model, plan):
    """Adds each `(layer, adapter name, config)` after checking them all; sets trainability.

    The model's `ReversibleEmbedding` layers get the straight-through
    gradient of `fix_quantized_gradients`. Returns the adapted layers' paths. Nothing changes when a check fails.
    """
    if plan:
        check_placement(model, f"adding GraLoRA adapters to '{model.name}'")
        check_enabled(model, "enable_gralora")
    for layer, name, config in plan:
        check_adaptable(layer, name, config)
    if plan:  # the logits projection of a quantized LM: the right gradient for every layer below it
        fix_quantized_gradients(model)
    active = active_adapters(model)
    first = not adapted_layers(model)
    with rolled_back(model, structure=True):
        for layer, name, config in plan:
            if isinstance(layer, GraLoRAAdapter):
                layer.add_adapter(name, config)
            else:
                adapted = adapt_in_place(layer, name, config)
                if not first:  # a newly adapted layer follows the model's active set
                    adapted.set_active_adapters(active)
        freeze(model)
        sync_trainable(model)
    return [layer.path for layer, _, _ in plan]


def check_adaptable(layer, name, config):
    """Raises `ValueError` unless `layer` can take adapter `name` with `config`."""
    if isinstance(layer, GraLoRAAdapter):
        layer.check_new_adapter(name, config)
    else:
        if not layer.built:
            raise ValueError(
                f"{describe(layer)}: the layer is not built, so no forward pass of the model uses it (Keras builds "
                "a layer when it is first called) and an adapter there would never train. Leave it out of "
                "target_layer_names; 'all' and the default targets skip such layers."
            )
        check_base_layer(layer, config)
        config.validate_features(*adapted_class(layer).block_sizes_of(layer), describe(layer))


def freeze(model):
    """Makes every weight of `model` non-trainable, as KerasHub's `enable_lora` does."""
    model.trainable = True
    for layer in model._flatten_layers(include_self=False):
        layer.trainable = False


def sync_trainable(model):
    """Active adapters and their `modules_to_save` train; biases as the bias modes say.

    Leaves every other weight as it is (see `freeze`).
    """
    layers = adapted_layers(model)
    for layer in layers:
        layer.trainable = True  # the layer's own flag: its kernel and bias are frozen again next
        layer.freeze_base()
        layer._refresh()
    active = active_adapters(model)
    by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    for name, config in adapter_configs(model).items():
        for variable in bias_variables(model, config.bias):
            variable.trainable = True
        for path in config.modules_to_save:
            if path in by_path:
                by_path[path].trainable = name in active
    register_parameters(model)  # torch: `model.parameters()` lists the adapters (DistributedDataParallel)


def bias_variables(model, mode):
    """The biases bias mode `mode` trains in `model`: PEFT's every `bias` / the adapted layers'."""
    if mode == "gralora_only":
        return [layer.bias for layer in adapted_layers(model) if layer.bias is not None]
    if mode == "all":  # Keras names a normalization's bias `beta`; torch calls it `bias` too
        return [v for v in model.weights if v.name in ("bias", "beta")]
    return []


def check_not_routed(model, where, layers=None):
    """Raises `ValueError` inside this thread's `adapter_routing(model, ...)`: it routes to the adapters as entered.

    `where` names what was refused: a state change ("merge_gralora"), "training" or "evaluation".
    """
    if not routed.entered(None):  # nothing entered in this thread: the common case, no walk over the layers
        return
    layers = adapted_layers(model) if layers is None else layers
    if routes := routed.entered({id(layer) for layer in layers}):
        raise ValueError(
            f"{where}: model '{model.name}' is inside {routes[0].where}, which routes rows to the adapters as they "
            "were on entry (none merged, none disabled), for inference (model(x), predict, generate), as PEFT's "
            "adapter_names. Leave the `with adapter_routing(...)` block first; train or evaluate one adapter at a "
            "time with `keras_gralora.set_active_adapters`."
        )


def check_enabled(model, where, layers=None):
    """Raises `ValueError` inside `disable_gralora(model)`, whose exit puts back the state it took on entry.

    Also inside `adapter_routing(model, ...)`: `check_not_routed`. `layers`: the model's adapted layers, if known.
    """
    layers = adapted_layers(model) if layers is None else layers
    check_not_routed(model, where, layers)
    check_not_disabled(model, where, layers)


def check_not_disabled(model, where, layers=None):
    """Raises `ValueError` inside `disable_gralora(model)` (the part of `check_enabled` a hot-swap needs)."""
    layers = adapted_layers(model) if layers is None else layers
    if disabled := [layer.path for layer in layers if not layer._gralora.enabled]:
        raise ValueError(
            f"{where}: model '{model.name}' is inside `disable_gralora()` (adapters off on {disabled[:3]}...), "
            "whose exit restores the adapter state it saved on entry, so this change would be undone or "
            "corrupt the base. Leave the `with disable_gralora(...)` block first."
        )
