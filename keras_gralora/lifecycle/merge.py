"""Merging adapters into their kernels and taking them off the model (PEFT's `merge_adapter`,
`unmerge_adapter`, `merge_and_unload`, `unload`).

A merged adapter costs nothing in the forward pass; the outputs stay the
same. Unmerging gives a float kernel back exactly (its pre-merge value is
kept); a quantized kernel is requantized. Unloading leaves the plain
Dense/EinsumDense layers the model had before `enable_gralora`.
"""

from __future__ import annotations

import keras

from keras_gralora.lifecycle import adapters
from keras_gralora.surgery import inject
from keras_gralora.surgery.inject import check_enabled
from keras_gralora.surgery.rollback import rolled_back


def merge_gralora(model: keras.Layer, adapter_names: str | list[str] | None = None, safe: bool = False) -> None:
    """Folds adapters into their kernels (default: the active ones).

    Merged adapters stop costing time in the forward pass; outputs stay the
    same. Training a merged adapter raises (unmerge first). On a quantized
    base the merge requantizes, which is lossy (see the quantized guide).
    Compile again afterwards: compiled functions captured the old kernels.

    Args:
        model: The model the adapters were enabled on, or one containing it.
        adapter_names: A name or a list of names; `None` merges the active
            adapters.
        safe: Check first that every merged kernel stays finite; if one
            would not, raise and leave every kernel as it was.

    Returns:
        None.

    Raises:
        ValueError: An unknown name, a non-finite merge with `safe=True`, or
            a call inside `disable_gralora` or `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> x = keras.ops.ones((1, 8))
        >>> before = keras.ops.convert_to_numpy(model(x))
        >>> keras_gralora.merge_gralora(model, safe=True)
        >>> bool(abs(keras.ops.convert_to_numpy(model(x)) - before).max() < 1e-5)
        True
    """
    names = adapters.active_adapters(model) if adapter_names is None else adapter_names
    names = adapters.check_names(model, [names] if isinstance(names, str) else names, "merge_gralora", allow_empty=True)
    check_enabled(model, "merge_gralora")
    layers = inject.adapted_layers(model)
    with rolled_back(model, kernels=layers if safe else ()):  # `safe`: a refused layer leaves none merged
        for layer in layers:
            layer.merge([name for name in names if name in layer.adapter_names], safe=safe)


def unmerge_gralora(model: keras.Layer) -> None:
    """Takes every merged adapter inside `model` back out of its kernel.

    A float kernel gets the merged deltas subtracted (its pre-merge value,
    float rounding aside); a quantized one gets its pre-merge integer kernel
    and scale back bit for bit (kept at merge time).

    Args:
        model: The model the adapters were enabled on, or one containing it.

    Returns:
        None.

    Raises:
        ValueError: `model` has no adapters, or a call inside
            `disable_gralora` or `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> keras_gralora.merge_gralora(model)
        >>> keras_gralora.unmerge_gralora(model)
        >>> model.get_layer("query").merged_adapters
        []
    """
    check_enabled(model, "unmerge_gralora")
    for layer in inject.adapted_layers(model):
        layer.unmerge()


def merge_and_unload(model: keras.Layer, safe: bool = False) -> keras.Layer:
    """Merges the active adapters, then leaves plain Dense/EinsumDense layers (PEFT's `merge_and_unload`).

    The model changes in place; inactive adapters are dropped unmerged. For
    a merged copy that leaves `model` as it is, see `export_merged`.

    Args:
        model: The model the adapters were enabled on, or one containing it.
        safe: As in `merge_gralora`: refuse a merge that makes a kernel
            non-finite, changing nothing.

    Returns:
        `model`, now without adapters.

    Raises:
        ValueError: `model` has no adapters, a non-finite merge with
            `safe=True`, or a call inside `disable_gralora` or
            `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> type(keras_gralora.merge_and_unload(model).get_layer("query")).__name__
        'Dense'
    """
    check_enabled(model, "merge_and_unload")
    merge_gralora(model, safe=safe)
    return _unload(model)


def unload_gralora(model: keras.Layer) -> keras.Layer:
    """Drops every adapter without merging (merged ones are taken out first).

    The layers become the plain Dense/EinsumDense they were, with their
    original kernels (PEFT's `unload`).

    Args:
        model: The model the adapters were enabled on, or one containing it.

    Returns:
        `model`, now without adapters.

    Raises:
        ValueError: `model` has no adapters, or a call inside
            `disable_gralora` or `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> keras_gralora.adapter_names(keras_gralora.unload_gralora(model))
        []
    """
    check_enabled(model, "unload_gralora")
    unmerge_gralora(model)
    return _unload(model)


def _unload(model):
    for config in inject.adapter_configs(model).values():
        adapters.freeze_paths(model, config.modules_to_save)
    for layer in inject.adapted_layers(model):
        for variable in layer.adapter_variables:
            layer._untrack_variable(variable)
        inject.unadapt_in_place(layer)
    return model
