"""PEFT adapter directories in and out: `load_peft_adapter`, `save_peft_adapter`.

A PEFT directory (`save_pretrained`) holds `adapter_config.json` and
`adapter_model.safetensors`, keys `base_model.model.<module>.<tensor>` (see
../shared/GRALORA.md). Reading converts it to the `FileAdapter` our own
adapter files load from (`loading.load_adapters`: every check before any
change); writing converts a `FileAdapter` back. GraLoRA's `A` / `B` are
PEFT's, the hybrid pair and plain LoRA's factors transposed; a PEFT LoRA
adapter is GraLoRA with `k = 1`. Only numpy and safetensors' numpy API here.
"""

from __future__ import annotations

import os

import keras

from keras_gralora.config import DEFAULT_ADAPTER, check_adapter_name
from keras_gralora.files import saving
from keras_gralora.files.loading import Source, load_adapters
from keras_gralora.interop import names, peft_files, peft_read, tensors
from keras_gralora.interop.peft_read import GRALORA_TENSORS
from keras_gralora.layers.conv import GraLoRAConv
from keras_gralora.layers.embedding import GraLoRATable
from keras_gralora.layers.experts import GraLoRAExpertWeights
from keras_gralora.lifecycle import adapters

PREFIX = peft_files.PREFIX
TASK_TYPES = {"ForCausalLM": "CAUSAL_LM", "ForSequenceClassification": "SEQ_CLS"}  # PEFT's, by class name


def load_peft_adapter(
    model: keras.Layer, directory: str | os.PathLike, adapter_name: str | None = None, allow_partial: bool = False
) -> list[str]:
    """Loads a PEFT GraLoRA (or plain LoRA) adapter directory onto a KerasHub model.

    Args:
        model: The KerasHub backbone or task converted from the same
            transformers checkpoint (`from_preset(<Hugging Face directory>)`).
            Task heads saved by PEFT (`modules_to_save`, e.g. BERT's
            `classifier`) need the task.
        directory: What PEFT's `save_pretrained` wrote.
        adapter_name: The adapter's name in `model` (default "default"); it
            must not exist yet.
        allow_partial: A directory whose listed `target_modules` name layers
            of `model` it holds no adapter for (saved from a smaller
            configuration: fewer blocks) is refused; `True` loads it onto
            the layers it has.

    Returns:
        The paths of the adapted layers.

    Raises:
        ValueError: Before any change: a PEFT type other than GraLoRA or
            LoRA, LoRA options that change its math (DoRA, ...), modules or
            tensors that do not fit `model` (named with the file and the
            layer), unsafe files, or an adapter name that exists.
        FileNotFoundError: `directory` or one of its two files is missing.

    Examples:
        With keras-hub and safetensors; a real checkpoint is
        `keras_hub.models.BertBackbone.from_preset("<Hugging Face directory>")`:

        >>> import os, tempfile
        >>> import keras_hub, keras_gralora
        >>> def tiny_bert():
        ...     return keras_hub.models.BertBackbone(vocabulary_size=32, num_layers=1, num_heads=2,
        ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
        >>> backbone = tiny_bert()
        >>> _ = backbone.enable_gralora(r=2, k=2)  # query and value of each block
        >>> folder = tempfile.mkdtemp()
        >>> _ = keras_gralora.save_peft_adapter(backbone, folder)
        >>> sorted(keras_gralora.load_peft_adapter(tiny_bert(), folder))
        ['transformer_layer_0/self_attention_layer/query', 'transformer_layer_0/self_attention_layer/value']
    """
    where = "load_peft_adapter"
    name = check_adapter_name(DEFAULT_ADAPTER if adapter_name is None else adapter_name, where)
    if name in adapters.adapter_names(model):
        raise ValueError(
            f"{where}: model '{model.name}' already has an adapter named {name!r}. Pass another adapter_name, "
            f"or `delete_adapter(model, {name!r})` first."
        )
    path, saved = read_peft_adapter(model, directory, name, where)
    return load_adapters(model, {name: saved}, {name: name}, Source(where, path, allow_partial=allow_partial))


def read_peft_adapter(model, directory, name, where):
    """`(directory, FileAdapter named name)`: a PEFT directory read for `model`'s layers; nothing changes."""
    source = peft_files.Directory(directory, where)
    return source.directory, peft_read.file_adapter(model, names.architecture_of(model, where), source, name, where)


def save_peft_adapter(
    model: keras.Layer,
    directory: str | os.PathLike,
    adapter_name: str | None = None,
    base_model_name_or_path: str | os.PathLike | None = None,
) -> str:
    """Writes adapter `adapter_name` of a KerasHub model as a PEFT GraLoRA directory.

    `PeftModel.from_pretrained(hf_model, directory)` then reproduces the
    adapted model, where `hf_model` is the transformers class named per
    architecture in the README (`LlamaForCausalLM`, `BertModel`, or
    `BertForSequenceClassification` for a `BertTextClassifier`...). The
    directory is created if needed; its two files are replaced only once
    both new ones are complete.

    Args:
        model: A KerasHub backbone or task with GraLoRA adapters.
        directory: Where `adapter_config.json` and
            `adapter_model.safetensors` go.
        adapter_name: Which adapter to write; `None`: "default", or the model's only one.
        base_model_name_or_path: Written into `adapter_config.json` (the
            Hugging Face checkpoint PEFT should load under it).

    Returns:
        `directory`, as a string.

    Raises:
        ValueError: Before anything is written: an architecture without a
            transformers name table, settings that differ between layers
            (PEFT's config holds one r, k, alpha), GPT-2's query/key/value
            adapters (use `save_lora_adapter`), or an unknown adapter name.
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
        >>> keras_gralora.save_peft_adapter(backbone, folder, base_model_name_or_path="my-bert") == folder
        True
        >>> sorted(os.listdir(folder))
        ['adapter_config.json', 'adapter_model.safetensors']
    """
    where = "save_peft_adapter"
    directory = check_directory(directory, base_model_name_or_path, where)
    base_model_name_or_path = base_model_name_or_path and os.fspath(base_model_name_or_path)
    chosen = [adapters.one_adapter(model, adapter_name, where)]
    architecture = names.architecture_of(model, where)
    class_name = names.transformers_class(architecture, model)
    if class_name is None:
        raise ValueError(f"{where}: KerasHub's {architecture.name} models have no transformers name table to save.")
    adapter = saving.collect_adapter(model, chosen[0], where)
    check_linear_only(model, [adapter.path(key) for key in adapter.layers], where)
    config = _uniform_config(adapter, where)
    module_of = {
        key: names.transformers_module(architecture, class_name, adapter.path(key), where) for key in adapter.layers
    }
    arrays = {}
    for key, entry in adapter.layers.items():
        for tensor, role in GRALORA_TENSORS.items():
            if role in entry.arrays:
                array = entry.arrays[role]
                arrays[f"{PREFIX}{module_of[key]}.{tensor}"] = array.T if "hybrid" in role else array
    arrays.update(transformers_extras(model, adapter, architecture, class_name, where))
    document = _peft_config(
        config,
        class_name,
        sorted(set(module_of.values())),
        base_model_name_or_path,
        [names.transformers_module(architecture, class_name, p, where) for p in config.modules_to_save],
    )
    document["fan_in_fan_out"] = architecture.fan_in_fan_out  # GPT-2's Conv1D
    peft_files.write(directory, document, arrays, where)
    return directory


def check_linear_only(model, paths, where):
    """PEFT's GraLoRA adapts linear modules only: a convolution's, table's or expert weight's adapter is refused."""
    layers = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    if others := [
        path for path in paths if isinstance(layers.get(path), (GraLoRAConv, GraLoRATable, GraLoRAExpertWeights))
    ]:
        raise ValueError(
            f"{where}: layers {others[:3]} are convolutions, embedding tables or expert weights; PEFT's GraLoRA "
            "adapts linear modules only (nn.Linear, GPT-2's Conv1D), so it could not load them. `save_lora_adapter` "
            "writes the same update as exact LoRA (PEFT's embedding, conv and target_parameters LoRA load it), or "
            "leave those layers out."
        )


def check_directory(directory, base_model_name_or_path, where):
    """`directory` as a string, or `ValueError` when it is a file or the base model's name is no string."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"{where}: '{directory}' is a file; it writes a directory (adapter_config.json and "
            "adapter_model.safetensors). Pass a directory path."
        )
    if base_model_name_or_path is not None and not isinstance(base_model_name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"{where}: base_model_name_or_path={base_model_name_or_path!r} must be a string (the "
            "checkpoint's name or path, written into adapter_config.json) or None."
        )
    return directory


def transformers_extras(model, adapter, architecture, class_name, where):
    """The adapter's trained biases and `modules_to_save` weights, keyed and laid out as PEFT saves them."""
    layers_by_path = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
    adapted_paths = {adapter.path(key) for key in adapter.layers}
    arrays = {}
    for kind, variables in (("bias", adapter.biases), ("module", adapter.modules)):
        for key, array in variables.items():
            layer_path, variable_name = adapter.path(key).rsplit("/", 1)
            module = names.transformers_module(architecture, class_name, layer_path, where)
            tensor = tensors.transformers_name(variable_name, module, where)
            if kind == "bias" and layer_path in adapted_paths:
                tensor = "base_layer." + tensor
            arrays[f"{PREFIX}{module}.{tensor}"] = tensors.to_transformers(
                layers_by_path[layer_path], variable_name, array, architecture.fan_in_fan_out
            )
    return arrays


def task_type(class_name):
    """PEFT's `task_type` for a transformers class name (`None` for a bare backbone)."""
    return next((task for suffix, task in TASK_TYPES.items() if class_name.endswith(suffix)), None)


def _uniform_config(adapter, where):
    configs = {entry.config for entry in adapter.layers.values()}
    fields = ("r", "k", "hybrid_r", "effective_alpha", "dropout")
    if len(settings := {tuple(getattr(c, f) for f in fields) for c in configs}) > 1:
        raise ValueError(
            f"{where}: adapter {adapter.name!r} has layers with different settings "
            f"({sorted(settings)} as {fields}); PEFT's GraLoRA "
            "config has one r, gralora_k, hybrid_r, alpha and dropout per adapter (no rank_pattern or k per "
            "module). Export it as exact LoRA instead (`keras_gralora.save_lora_adapter`: per-module ranks go "
            "into PEFT's rank_pattern), or enable it with one r, k and alpha."
        )
    return next(iter(configs))


def _peft_config(config, class_name, target_modules, base_model_name_or_path, modules_to_save):
    alpha = config.effective_alpha
    return {
        "peft_type": "GRALORA",
        "task_type": task_type(class_name),
        "base_model_name_or_path": base_model_name_or_path,
        "auto_mapping": None,
        "inference_mode": True,
        "revision": None,
        "r": config.r,
        "gralora_k": config.k,
        "hybrid_r": config.hybrid_r,
        "alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "gralora_dropout": config.dropout,
        "bias": config.bias,
        "target_modules": target_modules,
        "modules_to_save": modules_to_save or None,
        "fan_in_fan_out": False,
        "init_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
