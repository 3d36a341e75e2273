"""A PEFT GraLoRA directory (PEFT's or ours) as a PEFT LoRA directory, with numpy and safetensors only.

What `python -m keras_gralora convert` runs: no Keras, no torch. Every
tensor's declared shape and dtype is checked against the config before any
data is read; trained biases and `modules_to_save` weights are carried over
under the same keys (`bias="gralora_only"` becomes LoRA's `"lora_only"`).
"""

import json
import math
import os

from keras_gralora.files import atomic
from keras_gralora.interop import factors, gguf_adapter, lora_files, peft_files, runtimes

MAX_BYTES_PER_INPUT_BYTE = 64  # the exact LoRA of gralora_k=k is about k times the GraLoRA file, plus padding
MIN_BYTES = 2**30

ADAPTER_TENSORS = ("gralora_A", "gralora_B", "gralora_A_general.weight", "gralora_B_general.weight")
CARRIED_FIELDS = (
    "task_type",
    "base_model_name_or_path",
    "bias",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
)


def convert_directory(source, target, rank=None, runtime=None, progress=iter, base=None):
    """Converts GraLoRA directory `source` into LoRA directory `target`; returns the `ConvertedModule` rows.

    `rank` and `runtime` as for `save_lora_adapter`; `progress` wraps the
    iteration over modules (e.g. `tqdm.tqdm`). Nothing is written when a
    check fails: the config is read as `load_peft_adapter` reads it (PEFT's
    layout or the GraLoRA authors'), `target` may not be, hold or lie in
    `source`, ranks are bounded by each module's `min(in, out)`, and the
    memory the conversion needs by `MAX_BYTES_PER_INPUT_BYTE` times the
    weights file's size (at least `MIN_BYTES`). With `runtime="llama.cpp"`,
    `base` (the base model's transformers directory) gives the architecture
    of `adapter.gguf`, llama.cpp's own adapter file, written beside them.
    """
    where = "convert"
    lora_files.check_rank(rank, where)
    profile = runtimes.runtime(runtime, where)
    llama_cpp = _llama_cpp_base(base, where) if profile is runtimes.RUNTIMES["llama.cpp"] else None
    directory = peft_files.Directory(source, where)
    atomic.check_apart(directory.directory, target, where)
    atomic.check_directory_target(target, where)
    config = _config(directory, where)
    modules, extras = _grouped(directory, config, where)
    shapes = {module: _matrix_shape(directory, found) for module, found in modules.items()}
    lora_files.check_rank_fits(rank, shapes, where)
    _check_memory(directory, config, shapes, rank, profile, where)
    arrays = directory.load()
    factored = {}
    for module in progress(sorted(modules)):
        found = {tensor: arrays[key] for tensor, key in modules[module].items()}
        hybrid = (
            (found["gralora_A_general.weight"].T, found["gralora_B_general.weight"].T) if config["hybrid_r"] else ()
        )
        scale = config["alpha"] / (config["r"] + config["hybrid_r"])
        factored[module] = (module, *factors.gralora_factors(found["gralora_A"], found["gralora_B"], scale, *hybrid))
    described = (
        [f"{len([k for k in extras if k.endswith('bias')])} trained biases"]
        if config.get("bias", "none") != "none" and extras
        else []
    )
    described += [f"modules_to_save {config['modules_to_save']}"] if config.get("modules_to_save") else []
    rows, lora_arrays = lora_files.convert(factored, rank, profile, described, where)
    extra_files = lora_files.gguf_files(lora_arrays, *llama_cpp, where) if llama_cpp else None
    fields = {field: config.get(field) for field in CARRIED_FIELDS}
    return lora_files.write(target, rows, lora_arrays, {key: arrays[key] for key in extras}, fields, where, extra_files)


def _llama_cpp_base(base, where):
    """`(transformers class, Heads)` from the base model's `config.json`, which llama.cpp's adapter needs."""
    if base is None:
        raise ValueError(
            f"{where}: --runtime llama.cpp writes adapter.gguf, llama.cpp's adapter file, which names the base "
            "model's architecture: pass --base HF_DIR, the base model's transformers directory (its config.json)."
        )
    path = os.path.join(base, "config.json")
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read(peft_files.MAX_CONFIG_BYTES + 1))
    except (OSError, ValueError, RecursionError) as error:
        raise ValueError(f"{where}: cannot read the base model's config '{path}': {error}.") from None
    config = config.get("text_config", config) if isinstance(config, dict) else {}
    classes = config.get("architectures") or [None]
    heads = config.get("num_attention_heads")
    if not isinstance(classes[0], str) or not isinstance(heads, int):
        raise ValueError(
            f"{where}: '{path}' has no architectures / num_attention_heads: not a transformers model's config."
        )
    return classes[0], gguf_adapter.Heads(heads, config.get("num_key_value_heads") or heads)


def _matrix_shape(directory, found):
    a, b = (directory.declared[found[tensor]][0] for tensor in ("gralora_A", "gralora_B"))
    return a[0] * a[1], b[0] * b[2]


def _check_memory(directory, config, shapes, rank, profile, where):
    """Refuses a conversion whose factors would need far more memory than its file holds (a huge `gralora_k`)."""
    exact = config["gralora_k"] * config["r"] + config["hybrid_r"]
    chosen = {module: min(exact, rank) if isinstance(rank, int) else exact for module in shapes}
    written = runtimes.served_ranks(profile, chosen, [], where)  # the runtime's padding; its rules, early
    largest = max(n_in + n_out for n_in, n_out in shapes.values())
    # float32 factors and their safetensors bytes, plus one module's float64 working copies (QR, truncation)
    needed = 2 * 4 * sum(written[m] * (n_in + n_out) for m, (n_in, n_out) in shapes.items()) + 3 * 8 * exact * largest
    file_size = os.path.getsize(os.path.join(directory.directory, peft_files.WEIGHTS_FILE))
    allowed = max(MIN_BYTES, MAX_BYTES_PER_INPUT_BYTE * file_size)
    if needed > allowed:
        raise ValueError(
            f"{where}: '{directory.directory}' would need about {needed / 2**30:.1f} GiB to convert (gralora_k="
            f"{config['gralora_k']}, r={config['r']}: LoRA rank {exact} over {len(shapes)} modules, the largest "
            f"{largest} features wide), over {MAX_BYTES_PER_INPUT_BYTE} times its {file_size / 2**20:.1f} MiB of "
            "weights. GraLoRA uses gralora_k of 2 to 4; a directory asking for this much is refused."
        )


def _config(directory, where):
    config = peft_files.as_peft_config(directory.config, where)
    if config.get("peft_type") != "GRALORA":
        raise ValueError(
            f"{where}: '{directory.directory}' is a {config.get('peft_type')!r} adapter; convert reads "
            "PEFT GraLoRA directories (peft_type 'GRALORA')."
        )
    r, k, hybrid_r, alpha = (config[f] for f in ("r", "gralora_k", "hybrid_r", "alpha"))
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (r, k, hybrid_r))
        or r <= 0
        or k <= 0
        or hybrid_r < 0
        or r % k
    ):
        raise ValueError(
            f"{where}: '{directory.directory}' has r={r!r}, gralora_k={k!r}, hybrid_r={hybrid_r!r}; "
            "GraLoRA needs positive integers r and gralora_k, r divisible by gralora_k, hybrid_r >= 0."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"{where}: '{directory.directory}' has alpha={alpha!r}; it must be a positive number.")
    if config.get("fan_in_fan_out"):
        raise ValueError(
            f"{where}: '{directory.directory}' adapts Conv1D modules (fan_in_fan_out=True), which "
            "convert does not read yet."
        )
    saved = config.get("modules_to_save") or []
    if not isinstance(saved, list) or not all(isinstance(m, str) for m in saved):
        raise ValueError(
            f"{where}: '{directory.directory}' has modules_to_save={saved!r}; PEFT writes a list of "
            "module names or null."
        )
    if config.get("bias", "none") not in lora_files.LORA_BIAS:
        raise ValueError(f"{where}: bias={config.get('bias')!r} is not a PEFT bias mode.")
    return config


def _grouped(directory, config, where):
    """`({module: {tensor: key}}, [extra keys])`, every declared shape and dtype checked."""
    saved = config.get("modules_to_save") or []
    modules, extras = {}, []
    for key, (_shape, dtype) in directory.declared.items():
        if not key.startswith(lora_files.PREFIX) or dtype not in peft_files.DTYPES:
            raise ValueError(
                f"{where}: tensor '{key}' ({dtype}) is not a PEFT adapter tensor: keys start with "
                f"{lora_files.PREFIX!r}, dtypes are {sorted(peft_files.DTYPES)}."
            )
        name = key[len(lora_files.PREFIX) :]
        tensor = next((t for t in ADAPTER_TENSORS if name.endswith("." + t)), None)
        if tensor is not None:
            modules.setdefault(name[: -len(tensor) - 1], {})[tensor] = key
        elif _is_saved_module(name, saved) or (name.endswith(".bias") and config.get("bias", "none") != "none"):
            extras.append(key)
        else:
            raise ValueError(
                f"{where}: tensor '{key}' is no GraLoRA tensor ({ADAPTER_TENSORS}), trained bias or "
                "modules_to_save weight of this adapter_config.json."
            )
    if not modules:
        raise ValueError(f"{where}: '{directory.directory}' holds no GraLoRA tensors.")
    for module, found in modules.items():
        _check_shapes(directory, module, found, config, where)
    return modules, extras


def _is_saved_module(name, saved):
    owner = name.rsplit(".", 1)[0]
    return name.rsplit(".", 1)[-1] in ("weight", "bias") and any(owner == m or owner.endswith("." + m) for m in saved)


def _check_shapes(directory, module, found, config, where):
    r, k, hybrid_r = config["r"], config["gralora_k"], config["hybrid_r"]
    declared = {tensor: directory.declared[key][0] for tensor, key in found.items()}
    a, b = declared.get("gralora_A"), declared.get("gralora_B")
    wanted = set(ADAPTER_TENSORS if hybrid_r else ADAPTER_TENSORS[:2])
    if set(declared) != wanted or len(a) != 3 or len(b) != 3:
        raise ValueError(
            f"{where}: module '{module}' has tensors {sorted(declared)}; with hybrid_r={hybrid_r} "
            f"it needs {sorted(wanted)} (gralora_A and gralora_B of rank 3)."
        )
    in_features, out_features = a[0] * a[1], b[0] * b[2]
    expected = {"gralora_A": (k, in_features // k, r), "gralora_B": (k, r, out_features // k)}
    if hybrid_r:
        expected.update(
            {"gralora_A_general.weight": (hybrid_r, in_features), "gralora_B_general.weight": (out_features, hybrid_r)}
        )
    for tensor, shape in expected.items():
        if declared[tensor] != shape:
            raise ValueError(
                f"{where}: tensor '{module}.{tensor}' declares shape {declared[tensor]}; r={r}, "
                f"gralora_k={k}, hybrid_r={hybrid_r} need {shape}. The config and the weights do not "
                "belong together."
            )
