"""Hot-swapping: an adapter's weights replaced in place from a file, with no new trace (PEFT's hotswap_adapter).

Compiled `predict`, `generate` and `fit` functions read the adapter
variables as state, so new values in the same variables serve at once,
with no retrace. What a trace does fix are the shapes and the scale, so:

- a source adapter of a smaller rank is padded with zeros to the slot's
  (GraLoRA's rank axis is `k` blocks of `r / k`: each block is padded),
  after `prepare_model_for_compiled_hotswap(model, target_rank)` made the
  slot that large (zero padding, same outputs, before compiling);
- a source adapter of another scale has its `B` multiplied by
  `scale_source / scale_slot`, so the slot's scale (and trace) stays and the
  update is the source's exactly;
- a layer of the slot that the source does not adapt gets zeros (its base).

Everything is read and checked before any variable changes; the values
then change under the swap lock, so a forward pass in another thread sees
the old adapter or the new one, never a mix (`swap_lock.py`).
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_gralora.backend import to_numpy
from keras_gralora.files import adapter_file, loading
from keras_gralora.files.loading import Source
from keras_gralora.interop.peft import read_peft_adapter
from keras_gralora.layers.named_adapter import ROLES
from keras_gralora.lifecycle import adapters
from keras_gralora.serving.swap_lock import SWAP_LOCK
from keras_gralora.surgery import inject
from keras_gralora.surgery.rollback import rolled_back


def prepare_model_for_compiled_hotswap(
    model: keras.Layer,
    target_rank: int,
    target_hybrid_rank: int | None = None,
    adapter_names: str | list[str] | None = None,
) -> None:
    """Pads adapters to `target_rank` with zeros (same outputs), so adapters up to that rank hot-swap in.

    Call it before compiling (or `predict`, `generate`): the adapters get
    new, larger variables, so compiled functions are rebuilt once.

    Args:
        model: The model whose adapters will be hot-swapped.
        target_rank: The largest `r` to swap in; a multiple of each adapter's `k`.
        target_hybrid_rank: The largest `hybrid_r` (default: each adapter's own).
        adapter_names: The adapters to prepare (default: all).

    Returns:
        None.

    Raises:
        ValueError: A target rank below an adapter's own or not a multiple
            of its `k`, an unknown adapter name, or a call inside
            `disable_gralora` or `adapter_routing`; nothing changes.

    Examples:
        >>> import os, tempfile
        >>> import keras, keras_gralora
        >>> def model_with_adapter(r):
        ...     inputs = keras.Input((8,))
        ...     model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        ...     _ = keras_gralora.enable_gralora(model, r=r, k=2)
        ...     return model
        >>> served = model_with_adapter(r=2)
        >>> keras_gralora.prepare_model_for_compiled_hotswap(served, target_rank=8)
        >>> served.get_layer("query").adapter("default").config.r
        8
    """
    where = "prepare_model_for_compiled_hotswap"
    inject.check_enabled(model, where)
    names = adapters.adapter_names(model) if adapter_names is None else adapter_names
    names = adapters.check_names(model, [names] if isinstance(names, str) else names, where)
    plan = []
    for layer in inject.adapted_layers(model):
        for name in [n for n in names if n in layer.adapter_names]:
            config = layer.adapter(name).config
            hybrid = config.hybrid_r if target_hybrid_rank is None else target_hybrid_rank
            _check_target(layer, name, config, target_rank, hybrid, where)
            target = dataclasses.replace(
                config, r=target_rank, hybrid_r=hybrid, alpha=config.scale * (target_rank + hybrid)
            )
            values = [to_numpy(v) for v in layer.adapter(name).variables]
            plan.append((layer, name, target, padded(values, config, target)))
    for layer, name, target, values in plan:
        layer.replace_adapter(name, target, values)
    inject.sync_trainable(model)


def hotswap_adapter(
    model: keras.Layer,
    source: str | os.PathLike,
    adapter_name: str = "default",
    source_adapter_name: str | None = None,
    allow_partial: bool = False,
) -> list[str]:
    """Replaces adapter `adapter_name`'s weights with those of `source`, in place: no recompile.

    Args:
        model: A model holding adapter `adapter_name`.
        source: A `.weights.h5` adapter file (`save_gralora_weights`) or a
            PEFT GraLoRA directory (`save_pretrained`).
        adapter_name: The model's adapter to overwrite.
        source_adapter_name: Which adapter of a file holding several.
        allow_partial: A source saved from a model without some of
            `model`'s layers (fewer blocks) is refused; `True` swaps it in
            (the slot's other layers get zeros, as for any source that
            adapts fewer layers than the slot).

    Returns:
        The paths of the layers whose adapter changed.

    Raises:
        ValueError: The source adapts layers the slot lacks, has another
            `k`, a larger rank or hybrid rank than the slot, trained biases
            or `modules_to_save`, or is not an adapter file or directory;
            the adapter is merged; a call inside `disable_gralora` or a
            forward pass of this thread; nothing changes.
        FileNotFoundError: `source` does not exist.

    Examples:
        >>> import os, tempfile
        >>> import keras, keras_gralora
        >>> def model_with_adapter(r):
        ...     inputs = keras.Input((8,))
        ...     model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        ...     _ = keras_gralora.enable_gralora(model, r=r, k=2)
        ...     return model
        >>> trained = model_with_adapter(r=4)
        >>> path = os.path.join(tempfile.mkdtemp(), "new.gralora.weights.h5")
        >>> keras_gralora.save_gralora_weights(trained, path)
        >>> served = model_with_adapter(r=4)
        >>> keras_gralora.hotswap_adapter(served, path)
        ['query']
    """
    where = "hotswap_adapter"
    SWAP_LOCK.check_outside_passes(where)
    adapters.check_names(model, [adapter_name], where)
    # Inside `disable_gralora` its exit would put the old merged kernel back. Inside `adapter_routing` a swap
    # is allowed: it changes values only, which routed calls read afresh (slots, shapes and scales stay).
    inject.check_not_disabled(model, where)
    if merged := [layer.path for layer in _holders(model, adapter_name) if adapter_name in layer.merged_adapters]:
        raise ValueError(f"{where}: adapter {adapter_name!r} is merged into {merged[:3]}; unmerge first.")
    if os.path.isdir(source):
        path, saved = read_peft_adapter(model, source, adapter_name, where)
        return _swap(model, saved, adapter_name, Source(where, path, allow_partial=allow_partial))
    if not os.path.lexists(source):
        raise FileNotFoundError(
            f"{where}: '{os.fspath(source)}' does not exist; the source is a `.weights.h5` adapter file "
            "(`save_gralora_weights`) or a PEFT adapter directory (`save_pretrained`, `save_peft_adapter`)."
        )
    filepath = adapter_file.check_filename(source)
    with adapter_file.reading(filepath, where) as stored:
        picked = _pick(stored, source_adapter_name, filepath, where)
        return _swap(model, picked, adapter_name, Source(where, filepath, allow_partial=allow_partial))


def _swap(model, saved, name, source):
    if saved.biases or saved.modules:
        raise ValueError(
            f"{source.where}: '{source.path}' also holds trained biases or modules_to_save weights "
            f"({sorted(map(saved.path, {**saved.biases, **saved.modules}))[:3]}); hot-swapping replaces adapter "
            "weights only. Load it with `load_gralora_weights` / `load_peft_adapter` instead."
        )
    pairs = loading.saved_layers(model, saved, source)
    holders = _holders(model, name)
    for layer, entry in pairs:
        _check_fits(layer, name, entry, holders, source)
    values = {}
    for layer, entry in pairs:
        arrays = [
            loading.read(entry.arrays[role], "float32", f"'{role}' of layer '{layer.path}'", source)
            for role in ROLES
            if role in entry.arrays
        ]
        slot = layer.adapter(name).config
        values[id(layer)] = rescaled(padded(arrays, entry.config, slot), entry.config.scale / slot.scale)
    changes = [
        (v, values[id(layer)][i] if id(layer) in values else np.zeros(v.shape, "float32"))
        for layer in holders
        for i, v in enumerate(layer.adapter(name).variables)
    ]
    with SWAP_LOCK.writing(source.where), rolled_back(model, variables=[v for v, _ in changes]):
        for variable, value in changes:  # no forward pass sees half the swap, nor a failed one
            variable.assign(value)
    return [layer.path for layer in holders]


def _holders(model, name):
    return [layer for layer in inject.adapted_layers(model) if name in layer.adapter_names]


def _pick(stored, name, filepath, where):
    if name is None and len(stored) == 1:
        return next(iter(stored.values()))
    if name not in stored:
        raise ValueError(f"{where}: '{filepath}' holds adapters {list(stored)}; pass source_adapter_name= one of them.")
    return stored[name]


def _check_fits(layer, name, entry, holders, source):
    where = f"{source.where}: '{source.path}'"
    if layer not in holders:
        raise ValueError(
            f"{where} adapts layer '{layer.path}', where adapter {name!r} does not exist; hot-swapping only "
            "replaces weights (a new layer would need a new trace). Load it under another name "
            "(`load_gralora_weights`), or swap into an adapter enabled on that layer too."
        )
    slot, new = layer.adapter(name).config, entry.config
    shape = inject.adapted_class(layer).matrix_shape_of(layer)
    problems = [
        f"{shape[0]} -> {shape[1]} features here, {entry.shape[0]} -> {entry.shape[1]} in the source"
        if entry.shape != shape
        else None,
        f"k={new.k} in the source, k={slot.k} here (the block grid must match)" if new.k != slot.k else None,
        f"r={new.r} above the slot's r={slot.r}" if new.r > slot.r else None,
        f"hybrid_r={new.hybrid_r} above the slot's {slot.hybrid_r}" if new.hybrid_r > slot.hybrid_r else None,
    ]
    if problems := [p for p in problems if p]:
        raise ValueError(
            f"{where} does not fit adapter {name!r} of layer '{layer.path}': {'; '.join(problems)}. For larger "
            "ranks, call `prepare_model_for_compiled_hotswap(model, target_rank=...)` before compiling."
        )
    expected = loading.adapter_shapes(shape, new, inject.adapted_class(layer).lead_shape_of(layer))
    if (found := {role: array.shape for role, array in entry.arrays.items()}) != expected:
        raise ValueError(f"{where}: layer '{layer.path}' needs {expected} for its settings, the source holds {found}.")


def _check_target(layer, name, config, rank, hybrid, where):
    if not isinstance(rank, int) or rank < config.r or rank % config.k:
        raise ValueError(
            f"{where}: target_rank={rank!r} for adapter {name!r} of layer '{layer.path}' (r={config.r}, k={config.k}) "
            f"must be an integer >= {config.r} and a multiple of k={config.k}."
        )
    if not isinstance(hybrid, int) or hybrid < config.hybrid_r:
        raise ValueError(
            f"{where}: target_hybrid_rank={hybrid!r} is below adapter {name!r}'s hybrid_r="
            f"{config.hybrid_r} on layer '{layer.path}'."
        )
    if name in layer.merged_adapters:
        raise ValueError(f"{where}: adapter {name!r} is merged into '{layer.path}'; unmerge first.")


def padded(values, config, target):
    """Adapter `values` (ROLES order) of `config` with zero rank padded up to `target`'s (same update)."""
    k, s, block_rank = config.k, config.r // config.k, target.r // config.k
    a, b = values[0], values[1]
    a = np.pad(a.reshape(k, a.shape[1], k, s), [(0, 0)] * 3 + [(0, block_rank - s)]).reshape(k, a.shape[1], -1)
    b = np.pad(b.reshape(k, k, s, b.shape[2]), [(0, 0), (0, 0), (0, block_rank - s), (0, 0)])
    out = [a, b.reshape(k, -1, b.shape[-1])]
    if target.hybrid_r:
        in_features, out_features = k * a.shape[1], k * b.shape[-1]
        hybrid_a = values[2] if config.hybrid_r else np.zeros((in_features, 0), "float32")
        hybrid_b = values[3] if config.hybrid_r else np.zeros((0, out_features), "float32")
        extra = target.hybrid_r - config.hybrid_r
        out += [np.pad(hybrid_a, [(0, 0), (0, extra)]), np.pad(hybrid_b, [(0, extra), (0, 0)])]
    return out


def rescaled(values, factor):
    """`values` with the `B`s multiplied by `factor` (another scale, the same update)."""
    return [v * np.float32(factor) if role.endswith("_b") else v for role, v in zip(ROLES, values)]
