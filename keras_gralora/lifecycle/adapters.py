"""Named adapters across a model: activate, disable, delete (merging and unloading: `merge.py`).

PEFT's semantics (peft 0.21, `tuners_utils.py`): the forward pass sums the
active adapters; only active adapters train; a merged adapter cannot be
deleted; `disable_gralora` computes the base model. Pass the model the
adapters were enabled on, or one that contains it (a task for its
backbone). After changing which adapters train, compile the model again:
a Keras optimizer only updates the variables it was built with.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import keras

from keras_gralora.config import DEFAULT_ADAPTER
from keras_gralora.surgery import inject
from keras_gralora.surgery.inject import check_enabled
from keras_gralora.surgery.rollback import Snapshot, rolled_back


def set_active_adapters(model: keras.Layer, adapter_names: str | list[str]) -> None:
    """Makes exactly `adapter_names` active, and trainable, in `model`.

    The forward pass sums the active adapters, each with its own scale; the
    others stay in the model, frozen, until made active (PEFT's
    `set_adapter`). Compile the model again afterwards: a Keras optimizer
    updates only the variables it was built with.

    Args:
        model: The model the adapters were enabled on, or one containing it.
        adapter_names: One adapter name, or a list of them; `[]` makes none
            active (the base model's output, nothing trains).

    Returns:
        None.

    Raises:
        ValueError: An unknown name (the message lists `model`'s adapters),
            or a call inside `disable_gralora` or `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="a")
        >>> _ = keras_gralora.enable_gralora(model, r=4, k=2, adapter_name="b")
        >>> keras_gralora.active_adapters(model)
        ['a']
        >>> keras_gralora.set_active_adapters(model, ["a", "b"])  # the forward pass sums both
        >>> keras_gralora.active_adapters(model)
        ['a', 'b']
    """
    names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
    check_names(model, names, "set_active_adapters", allow_empty=True)
    check_enabled(model, "set_active_adapters")
    with rolled_back(model, structure=True):  # every layer switches, or none
        for layer in inject.adapted_layers(model):
            layer.set_active_adapters(names)
        inject.sync_trainable(model)


def active_adapters(model: keras.Layer) -> list[str]:
    """The names of `model`'s active adapters, in activation order.

    Args:
        model: Any Keras model or layer; one without adapters has none.

    Returns:
        The active adapters' names.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> keras_gralora.active_adapters(model)
        []
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> keras_gralora.active_adapters(model)
        ['default']
    """
    return inject.active_adapters(model)


def adapter_names(model: keras.Layer) -> list[str]:
    """The names of every adapter in `model`, active or not, in creation order.

    Args:
        model: Any Keras model or layer; one without adapters has none.

    Returns:
        The adapters' names.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="math")
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="code")
        >>> keras_gralora.adapter_names(model)
        ['math', 'code']
    """
    return list(inject.adapter_configs(model))


def check_names(model, names, where, allow_empty=False):
    """Raises `ValueError` unless `names` is a list of `model`'s adapter names."""
    known = adapter_names(model)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: expected an adapter name or a list of them, got {names!r}.")
    if not names and not allow_empty:
        raise ValueError(f"{where}: the list of adapter names is empty; model '{model.name}' has {known}.")
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"{where}: model '{model.name}' has no adapter named {unknown}; its adapters are {known}.")
    return list(dict.fromkeys(names))  # each once: a name twice would add its adapter twice


def one_adapter(model, adapter_name, where):
    """`adapter_name`, checked; `None`: "default" if the model has it, else its only adapter, else `ValueError`."""
    if adapter_name is None:
        known = adapter_names(model)
        if DEFAULT_ADAPTER in known:
            return DEFAULT_ADAPTER
        if len(known) != 1:
            raise ValueError(
                f"{where}: model '{model.name}' has adapters {known}; pass adapter_name= to say which one to write."
            )
        return known[0]
    return check_names(model, [adapter_name], where)[0]


@contextlib.contextmanager
def disable_gralora(model: keras.Layer) -> Iterator[keras.Layer]:
    """Context manager: inside it `model` computes the base model's output.

    Merged adapters are taken out of their kernels on entry and the merged
    kernels restored exactly on exit. Biases trained with `bias="all"` or
    `"gralora_only"` stay as trained (a warning says so, as PEFT's).
    Inside it, calls that change adapters (load, enable, merge, unmerge,
    delete, activate, unload, export, quantize) raise before any change:
    the context puts back on exit what it took on entry. Forward passes,
    `predict`, saving adapter files and nested `disable_gralora` work.

    Args:
        model: The model the adapters were enabled on, or one containing it.

    Returns:
        A context manager that yields `model`.

    Raises:
        ValueError: `model` has no adapters, or is inside `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2)
        >>> with keras_gralora.disable_gralora(model):
        ...     base_output = model(keras.ops.ones((1, 8)))
    """
    inject.check_not_routed(model, "disable_gralora")
    layers = inject.adapted_layers(model)
    if not all(layer._gralora.enabled for layer in layers):  # nested: already disabled
        yield model
        return
    if trained := {name: c.bias for name, c in inject.adapter_configs(model).items() if c.bias != "none"}:
        warnings.warn(
            f"disable_gralora: adapter(s) {trained} train biases; disabling adapters cannot undo bias changes, "
            "so the output differs from the base model's wherever those biases were trained.",
            stacklevel=3,
        )
    merged = Snapshot(model, kernels=[layer for layer in layers if layer.merged])
    try:
        for layer in layers:
            layer.unmerge()
            layer.enable_adapters(False)
        yield model
    finally:
        merged.restore()
        for layer in layers:
            layer.enable_adapters(True)


def delete_adapter(model: keras.Layer, adapter_name: str) -> None:
    """Removes adapter `adapter_name` from every layer of `model`; refuses a merged one.

    A layer left without adapters becomes its plain `Dense`/`EinsumDense`
    again; the adapter's `modules_to_save` are frozen. When the deleted
    adapter was active, the other active ones stay active; if none is left,
    the first remaining adapter becomes active (with a warning), as PEFT.

    Args:
        model: The model the adapters were enabled on, or one containing it.
        adapter_name: The adapter to remove.

    Returns:
        None.

    Raises:
        ValueError: An unknown name, a merged adapter (unmerge it first), or
            a call inside `disable_gralora` or `adapter_routing`.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="a")
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b")
        >>> keras_gralora.delete_adapter(model, "b")
        >>> keras_gralora.adapter_names(model)
        ['a']
    """
    where = "delete_adapter"
    check_names(model, [adapter_name], where)
    check_enabled(model, where)
    layers = [layer for layer in inject.adapted_layers(model) if adapter_name in layer.adapter_names]
    if merged := [layer.path for layer in layers if adapter_name in layer.merged_adapters]:
        raise ValueError(
            f"{where}: adapter {adapter_name!r} is merged into {merged}; unmerge first "
            "(`unmerge_gralora(model)`), then delete it."
        )
    config = inject.adapter_configs(model)[adapter_name]
    active = [name for name in active_adapters(model) if name != adapter_name]
    with rolled_back(model, deletions=True):  # every layer loses the adapter, or none
        for layer in layers:
            layer.delete_adapter(adapter_name)
            if not layer.adapter_names:
                inject.unadapt_in_place(layer)
        freeze_paths(model, config.modules_to_save)
        remaining = adapter_names(model)
        if not active and remaining:
            active = remaining[:1]
            warnings.warn(
                f"delete_adapter: adapter {adapter_name!r} was the active adapter; {active[0]!r} is active now.",
                stacklevel=2,
            )
        set_active_adapters(model, active)


def freeze_paths(model: keras.Layer, paths) -> None:
    """Makes the layers of `model` at `paths` untrainable (a deleted or unloaded adapter's `modules_to_save`)."""
    for layer in model._flatten_layers(include_self=False):
        if layer.path in paths:
            layer.trainable = False
