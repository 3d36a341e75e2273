"""GraLoRA (and Keras' own LoRA) as exact PEFT LoRA: `lora_factors`, `save_lora_adapter`.

Serving runtimes (vLLM, SGLang, TGI, llama.cpp) take PEFT LoRA directories
only. A GraLoRA update's blocks already factor it at rank `k * r + hybrid_r`,
so the LoRA written is exact without any decomposition, or truncated to a
chosen rank by an SVD of the small core (`factors.py`). Module names come
from the same tables as `save_peft_adapter` (`names.py`).
"""

from __future__ import annotations

import os
from typing import Literal

import keras
import numpy as np

from keras_gralora.backend import to_numpy
from keras_gralora.config import DEFAULT_ADAPTER
from keras_gralora.files import saving
from keras_gralora.interop import expert_lora, factors, gguf_adapter, lora_files, names, peft, runtimes
from keras_gralora.interop.lora_files import ConvertedModule
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.einsum_dense import ProjectionLayout
from keras_gralora.layers.embedding import GraLoRATable
from keras_gralora.layers.experts import GraLoRAExpertWeights
from keras_gralora.lifecycle import adapters
from keras_gralora.surgery import inject

TIED_HEAD = "lm_head"  # a causal LM's logits module, tied to `embed_tokens` (Gemma): it reads the adapted table too


def lora_factors(
    layer: keras.Layer, adapter_name: str = DEFAULT_ADAPTER, rank: int | float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """The adapter of `layer` as LoRA factors: `(a [in, R], b [R, out], error)`, numpy float32.

    Args:
        layer: A GraLoRA layer, or a Keras `Dense`/`EinsumDense` with Keras'
            own LoRA enabled (`enable_lora`; `adapter_name` is then unused).
            Float and quantized bases alike.
        adapter_name: Which of the layer's GraLoRA adapters.
        rank: `None`: exact, `R = k * r + hybrid_r` (Keras LoRA: `r` times
            the kernel slices sharing its `B`, e.g. `heads * r`), assembled
            from the blocks. An int: the best rank-`R` approximation (zero
            columns added where the update has fewer). A float in (0, 1]:
            the smallest rank keeping that fraction of the update's energy
            (PEFT's `convert_to_lora` rule).

    Returns:
        `a @ b` is the scaled update as the `[in, out]` matrix (the scale is
        in `b`; it equals `delta_matrix()`); for a convolution `in` is
        `Cin * window`, input channel outermost, so `a.T.reshape(R, Cin,
        *window)` and `b.T.reshape(Cout, R, 1, ...)` are PEFT's (torch's)
        conv `lora_A` / `lora_B` weights; `error` is
        `||a @ b - delta||_F / ||delta||_F` against the exact update,
        computed from the factors (no `[in, out]` matrix is formed).

    Raises:
        ValueError: A layer with neither GraLoRA nor Keras LoRA, an unknown
            adapter, a bad rank (named with its value; an integer rank
            above the layer's `min(in, out)` too), or non-finite adapter
            weights.

    Examples:
        >>> import keras, keras_gralora
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="proj")])
        >>> _ = keras_gralora.enable_gralora(model, r=4, k=2, hybrid_r=2, target_layer_names=["proj"])
        >>> for variable in model.trainable_weights:  # as if trained
        ...     _ = variable.assign(keras.random.normal(variable.shape, seed=1))
        >>> a, b, error = keras_gralora.lora_factors(model.get_layer("proj"))
        >>> a.shape, b.shape, error < 1e-6
        ((8, 10), (10, 8), True)
    """
    where = f"lora_factors: layer '{getattr(layer, 'path', layer)}'"
    lora_files.check_rank(rank, where)
    _check_has_lora(layer, where)
    lora_files.check_rank_fits(rank, {layer.path: inject.matrix_shape(layer)}, where)
    left, right = _exact(layer, adapter_name, where)
    if isinstance(layer, GraLoRAExpertWeights):  # one pair per expert
        _check_exact_experts(rank, [layer], where)
        return left, right, 0.0
    a, b = lora_files.at_rank(left, right, rank, where)
    return a, b, factors.relative_error(a, b, left, right)


def _check_has_lora(layer, where):
    if not isinstance(layer, GraLoRAAdapter) and not (
        getattr(layer, "lora_enabled", False) and hasattr(layer, "lora_kernel_a")
    ):
        raise ValueError(f"{where} ({type(layer).__name__}) has neither a GraLoRA adapter nor Keras' LoRA enabled.")


def _exact(layer, adapter_name, where):
    """`(left, right)`: the exact factors of the layer's update (a layer `_check_has_lora` passes)."""
    if isinstance(layer, GraLoRAExpertWeights):
        return expert_lora.expert_factors(layer, adapter_name)
    if isinstance(layer, GraLoRAAdapter):
        adapter = layer.adapter(adapter_name)
        a, b, scale, *hybrid = (to_numpy(v) if not isinstance(v, float) else v for v in adapter.factors())
        return factors.gralora_factors(a, b, scale, *hybrid)
    lora_a, lora_b = (to_numpy(v) for v in (layer.lora_kernel_a, layer.lora_kernel_b))
    if hasattr(layer, "convolution_op"):  # `[*window, Cin, r]`: read input channel outermost, as GraLoRA's conv
        return np.moveaxis(lora_a, -2, 0).reshape(-1, lora_b.shape[0]), lora_b * np.float32(
            layer.lora_alpha / layer.lora_rank
        )
    kernel_axes, in_axes = _kernel_axes(layer, where)
    return factors.keras_lora_factors(lora_a, lora_b, layer.lora_alpha / layer.lora_rank, kernel_axes, in_axes)


def _kernel_axes(layer, where):
    """`(kernel axis letters, contracted ones)` of a Dense or EinsumDense with Keras LoRA."""
    if type(layer).__name__ == "Dense" or not hasattr(layer, "equation"):
        if len(layer.lora_kernel_a.shape) != 2:
            raise ValueError(
                f"{where}: Keras LoRA of a {type(layer).__name__} is exported for Dense, EinsumDense and "
                "Conv1D/2D/3D layers only."
            )
        return "io", "i"
    layout = ProjectionLayout.of(layer)
    return layout.kernel_axes, layout.in_axes


def save_lora_adapter(
    model: keras.Layer,
    directory: str | os.PathLike,
    adapter_name: str | None = None,
    rank: int | float | None = None,
    runtime: Literal["vllm", "sglang", "tgi", "llama.cpp"] | None = None,
    base_model_name_or_path: str | os.PathLike | None = None,
    verbose: bool = False,
) -> list[ConvertedModule]:
    """Writes a KerasHub model's adapter as a PEFT LoRA directory, exact unless `rank` truncates.

    `PeftModel.from_pretrained(hf_model, directory)` then gives the adapted
    model's outputs (`hf_model`: the transformers class of the README's
    table, e.g. `LlamaForCausalLM`), and so do the serving runtimes.

    Args:
        model: A KerasHub backbone or task with GraLoRA adapters, or with
            Keras' own LoRA (`backbone.enable_lora(r)`) and no GraLoRA.
        directory: Created if needed; its two files are replaced only once
            both new ones are complete. Nothing is written when a check fails.
        adapter_name: Which GraLoRA adapter; `None`: "default", or the model's only one.
        rank: `None`, an int or an energy fraction, as for `lora_factors`.
        runtime: `None` (any PEFT reader), `"vllm"`, `"sglang"`, `"tgi"` or
            `"llama.cpp"`: that runtime's rules (`interop/runtimes.py`) are
            checked first and ranks padded with zeros to what it serves.
            `"llama.cpp"` also writes `adapter.gguf`, llama.cpp's own
            adapter file (`llama-server --lora DIR/adapter.gguf`; needs the
            `gguf` package), for Llama, Mistral, Qwen2, Gemma, Gemma 3,
            BERT and GPT-2.
        base_model_name_or_path: Written into `adapter_config.json`.
        verbose: Print the per-module table.

    Returns:
        A list of `ConvertedModule` rows: module, layer, exact rank, rank
        written, relative error.

    Raises:
        ValueError: Before anything is written: the runtime's rules (one
            rank, its largest rank, no trained biases or `modules_to_save`;
            the message names the fix), an architecture without a
            transformers name table, a model with both GraLoRA and Keras
            LoRA, or a bad rank.
        OSError: A file could not be written; existing files are left as
            they were.

    Examples:
        With keras-hub and safetensors:

        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> _ = backbone.enable_gralora(r=2, k=2)  # query and value of each block
        >>> folder = tempfile.mkdtemp()
        >>> rows = keras_gralora.save_lora_adapter(backbone, folder, runtime="vllm")
        >>> sorted((row.module, row.exact_rank, row.rank) for row in rows)
        [('encoder.layer.0.attention.self.query', 4, 8),
         ('encoder.layer.0.attention.self.value', 4, 8)]
    """
    where = "save_lora_adapter"
    directory = peft.check_directory(directory, base_model_name_or_path, where)
    lora_files.check_rank(rank, where)
    profile = runtimes.runtime(runtime, where)
    architecture = names.architecture_of(model, where)
    class_name = names.transformers_class(architecture, model)
    if class_name is None:
        raise ValueError(f"{where}: KerasHub's {architecture.name} models have no transformers name table to save.")
    if adapters.adapter_names(model):  # else Keras' own LoRA, if any
        adapter_name = adapters.one_adapter(model, adapter_name, where)
    layers, base, extra_arrays, extras = _source(model, adapter_name, architecture, class_name, where)
    holders = [layer for layer in layers if isinstance(layer, GraLoRAExpertWeights)]
    layers = [layer for layer in layers if not isinstance(layer, GraLoRAExpertWeights)]
    _check_exact_experts(rank or profile, holders, where)
    lora_files.check_rank_fits(rank, {layer.path: inject.matrix_shape(layer) for layer in layers}, where)
    modules, fused, tables = {}, {}, set()
    for layer in layers:
        exact = _exact(layer, adapter_name, f"{where}: layer '{layer.path}'")
        if part := names.fused_part(architecture, class_name, layer.path):  # GPT-2's c_attn
            fused.setdefault(part[0], {"paths": part[2], "parts": {}})["parts"][part[1]] = exact
            continue
        module = names.transformers_module(architecture, class_name, layer.path, where)
        modules[module] = (layer.path, *exact)
        if isinstance(layer, GraLoRATable):
            tables.add(module)
            if getattr(layer, "tie_weights", False) and class_name.endswith("ForCausalLM"):  # tied logits: lm_head
                modules[TIED_HEAD] = (f"{layer.path} (reverse)", exact[1].T, exact[0].T)
    every_layer = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    modules.update({module: _fused(group, every_layer) for module, group in fused.items()})
    rows, arrays = lora_files.convert(modules, rank, profile, extras, where, tables)
    if holders:
        expert_rows, expert_arrays = expert_lora.expert_lora(
            model, holders, adapter_name, architecture, class_name, where
        )
        rows, arrays = rows + expert_rows, {**arrays, **expert_arrays}
    base.update(
        task_type=peft.task_type(class_name),
        base_model_name_or_path=base_model_name_or_path and os.fspath(base_model_name_or_path),
        fan_in_fan_out=architecture.fan_in_fan_out,
    )
    extra_files = None
    if profile is runtimes.RUNTIMES["llama.cpp"]:  # its own adapter file beside PEFT's two
        extra_files = lora_files.gguf_files(arrays, class_name, _heads(model), where)
    lora_files.write(directory, rows, arrays, extra_arrays, base, where, extra_files)
    if verbose:
        print(lora_files.report(rows, profile))
    return rows


def _check_exact_experts(setting, holders, where):
    """Expert weights are written exactly, for PEFT (`setting`: a rank or a runtime, refused with them)."""
    if holders and setting is not None:
        raise ValueError(
            f"{where}: the adapter adapts expert weights ({holders[0].path}...), written exactly (one LoRA per "
            f"expert, PEFT's target_parameters), so {setting!r} (a truncating rank or a runtime) does not apply. "
            "Pass rank=None and runtime=None, or merge the experts' adapters (`export_merged`)."
        )


def _heads(model):
    """The query and key/value head counts of a KerasHub decoder (llama.cpp permutes Llama's q/k rows by them)."""
    backbone = getattr(model, "backbone", model)
    query = getattr(backbone, "num_query_heads", None)
    return gguf_adapter.Heads(query, getattr(backbone, "num_key_value_heads", query)) if query else None


def _fused(group, layers_by_path):
    """`(label, left, right)` of one LoRA of a fused module from its parts' exact factors (GPT-2's c_attn).

    The lefts side by side; each part's right in its own columns (zero for a part without the adapter).
    """
    widths = [_out_width(layers_by_path, path, group["parts"], index) for index, path in enumerate(group["paths"])]
    starts = np.cumsum([0] + widths)
    parts = sorted(group["parts"].items())
    left = np.concatenate([exact[0] for _, exact in parts], axis=1)
    right = np.zeros((left.shape[1], starts[-1]), np.float32)
    row = 0
    for index, (part_left, part_right) in parts:
        right[row : row + part_left.shape[1], starts[index] : starts[index + 1]] = part_right
        row += part_left.shape[1]
    return "+".join(group["paths"]), left, right


def _out_width(layers_by_path, path, parts, index):
    return parts[index][1].shape[1] if index in parts else inject.matrix_shape(layers_by_path[path])[1]


def _source(model, adapter_name, architecture, class_name, where):
    """`(layers, config fields, extra tensors, extras' description)` of the GraLoRA adapter or Keras' LoRA."""
    keras_lora = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if getattr(layer, "lora_enabled", False) and not isinstance(layer, GraLoRAAdapter)
    ]
    if not adapters.adapter_names(model):
        if not keras_lora:
            raise ValueError(
                f"{where}: model '{model.name}' has no GraLoRA adapter and no layer with Keras' LoRA "
                "enabled; there is nothing to save."
            )
        return keras_lora, {"bias": "none"}, {}, []
    if keras_lora:
        raise ValueError(
            f"{where}: model '{model.name}' has GraLoRA adapters and Keras' LoRA on "
            f"{[layer.path for layer in keras_lora][:3]}...; one LoRA directory holds one adapter. "
            "Save from a model with only one of them."
        )
    adapter = saving.collect_adapter(model, adapter_name, where)
    layers = [layer for layer in inject.adapted_layers(model) if adapter_name in layer.adapter_names]
    extra_arrays = peft.transformers_extras(model, adapter, architecture, class_name, where)
    extras = [f"{len(adapter.biases)} trained biases"] if adapter.biases else []
    extras += [f"modules_to_save {list(adapter.config.modules_to_save)}"] if adapter.modules else []
    modules_to_save = [
        names.transformers_module(architecture, class_name, p, where) for p in adapter.config.modules_to_save
    ]
    return layers, {"bias": adapter.config.bias, "modules_to_save": modules_to_save}, extra_arrays, extras
