"""A PEFT LoRA directory from exact low-rank factors: ranks chosen, runtime rules checked, then written whole.

Shared by `save_lora_adapter` (a Keras model) and the command line (a PEFT
GraLoRA directory). Every module's factors, ranks and errors are computed
and every rule checked before `peft_files.write` swaps the directory in.
The adapter's scale is already in the factors, so each module gets
`lora_alpha` equal to its rank (scale 1), as PEFT's `convert_to_lora` does.
"""

import collections
import dataclasses

import numpy as np

from keras_gralora.interop import factors, gguf_adapter, peft_files, runtimes

PREFIX = peft_files.PREFIX
LORA_BIAS = {"none": "none", "all": "all", "gralora_only": "lora_only", "lora_only": "lora_only"}


@dataclasses.dataclass(frozen=True)
class ConvertedModule:
    """One row of the conversion table.

    Args:
        module: The transformers module name (the PEFT directory's).
        layer: Where it came from (a Keras layer path, or the module name).
        exact_rank: The rank of the exact factors (`k * r + hybrid_r` for GraLoRA).
        rank: The rank written (truncated, or padded with zeros for a runtime).
        error: `||lora_B @ lora_A - delta||_F / ||delta||_F` of what is written
            (`delta`: the exact update, from the adapter's own blocks).
        parameter: Whether `module` names a parameter (experts: PEFT's `target_parameters`), not a module.
    """

    module: str
    layer: str
    exact_rank: int
    rank: int
    error: float
    parameter: bool = False


def check_rank(rank, where):
    """Raises `ValueError` unless `rank` is `None`, a positive int, or a float energy fraction in (0, 1]."""
    if rank is None or (isinstance(rank, (int, np.integer)) and not isinstance(rank, bool) and rank > 0):
        return
    if isinstance(rank, float) and 0 < rank <= 1:
        return
    raise ValueError(
        f"{where}: rank={rank!r} must be None (exact), a positive integer (truncate to that rank) or "
        "a float in (0, 1] (the smallest rank keeping that fraction of each update's energy)."
    )


def check_rank_fits(rank, shapes, where):
    """Raises `ValueError` for an integer `rank` above a module's `min(in, out)` (`shapes`: `{label: (in, out)}`).

    A matrix has no rank above that: zero padding beyond it only makes the files and the runtime's buffers larger.
    """
    if rank is None or isinstance(rank, float) or not shapes:
        return
    label, (n_in, n_out) = min(shapes.items(), key=lambda item: min(item[1]))
    if rank > min(n_in, n_out):
        raise ValueError(
            f"{where}: rank={rank} is above the rank any update of '{label}' can have ({n_in} -> {n_out} "
            f"features: at most {min(n_in, n_out)}). Pass rank <= {min(n_in, n_out)}, or None for the exact rank; "
            "a runtime's padding is added by runtime=."
        )


def at_rank(left, right, rank, where):
    """Exact factors at `rank` (see `check_rank`): truncated by `factors.truncate`, or padded with zeros."""
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        raise ValueError(
            f"{where}: the adapter holds NaN or infinite values; there is nothing to serve. Train "
            "again or load a good adapter file."
        )
    if isinstance(rank, float) or (rank is not None and rank < left.shape[1]):
        by_energy = isinstance(rank, float)
        return factors.truncate(left, right, None if by_energy else int(rank), rank if by_energy else None)[:2]
    return factors.pad(left, right, rank) if rank is not None else (left, right)


def convert(modules, rank, profile, extras, where, tables=()):
    """`(rows, arrays)`: each module's LoRA factors at the rank chosen, checked against `profile`.

    Args:
        modules: `{module: (layer label, left [in, R], right [R, out])}`, the exact factors.
        rank: `None`, an int or an energy fraction (see `check_rank`).
        profile: A `runtimes.Runtime`, or `None`.
        extras: What else the directory holds, for the runtime's rule.
        tables: The modules that are embedding tables: PEFT's `lora_embedding_A` `[R, V]` and
            `lora_embedding_B` `[D, R]` (refused for a runtime, which serves linear modules).
    """
    if profile is not None and tables:
        raise ValueError(
            f"{where}: the adapter adapts embedding tables {sorted(tables)}; {profile.name}'s LoRA serving covers "
            "linear modules only, so serving it would give other outputs. Save without runtime= (PEFT and "
            "transformers load embedding LoRA), merge the model (export_merged), or train without the table."
        )
    chosen = {
        module: at_rank(left, right, rank, f"{where}: '{layer}'") for module, (layer, left, right) in modules.items()
    }
    served = runtimes.served_ranks(profile, {m: f[0].shape[1] for m, f in chosen.items()}, extras, where)
    rows, arrays = [], {}
    for module, (layer, exact_left, exact_right) in modules.items():
        left, right = factors.pad(*chosen[module], served[module])
        error = factors.relative_error(*chosen[module], exact_left, exact_right)  # zero padding changes nothing
        rows.append(ConvertedModule(module, layer, exact_left.shape[1], served[module], error))
        a_key, b_key = (
            ("lora_embedding_A", "lora_embedding_B") if module in tables else ("lora_A.weight", "lora_B.weight")
        )
        arrays[f"{PREFIX}{module}.{a_key}"] = np.ascontiguousarray(left.T)
        arrays[f"{PREFIX}{module}.{b_key}"] = np.ascontiguousarray(right.T)
    return rows, arrays


def document(rows, base):
    """PEFT's `adapter_config.json` for `rows`; `base` gives the other fields (task type, bias, modules...)."""
    ranks = {row.module: row.rank for row in rows}
    common = collections.Counter(ranks.values()).most_common(1)[0][0]
    patterns = {module: rank for module, rank in ranks.items() if rank != common}
    return {
        "peft_type": "LORA",
        "task_type": base.get("task_type"),
        "base_model_name_or_path": base.get("base_model_name_or_path"),
        "auto_mapping": None,
        "inference_mode": True,
        "revision": None,
        "r": common,
        "lora_alpha": common,
        "rank_pattern": patterns,
        "alpha_pattern": dict(patterns),
        "target_modules": sorted(row.module for row in rows if not row.parameter),
        "target_parameters": sorted(row.module for row in rows if row.parameter) or None,
        "lora_dropout": 0.0,
        "bias": LORA_BIAS[base.get("bias") or "none"],
        "modules_to_save": base.get("modules_to_save") or None,
        "fan_in_fan_out": base.get("fan_in_fan_out", False),
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "layers_to_transform": base.get("layers_to_transform"),
        "layers_pattern": base.get("layers_pattern"),
    }


def write(directory, rows, arrays, extra_arrays, base, where, extra_files=None):
    """Writes the LoRA directory (atomic, as `save_peft_adapter`; `extra_files` as `peft_files.write`)."""
    peft_files.write(directory, document(rows, base), {**arrays, **extra_arrays}, where, extra_files)
    return rows


def gguf_files(arrays, class_name, heads, where):
    """`{"adapter.gguf": write(path)}`: llama.cpp's adapter of the LoRA `arrays`, planned and checked now."""
    suffix_a, suffix_b = ".lora_A.weight", ".lora_B.weight"
    modules = {
        key[len(PREFIX) : -len(suffix_a)]: (array.T, arrays[key[: -len(suffix_a)] + suffix_b].T)
        for key, array in arrays.items()
        if key.endswith(suffix_a)
    }
    arch_name, tensors = gguf_adapter.plan(class_name, modules, heads, where)
    return {gguf_adapter.FILE: lambda path: gguf_adapter.write(path, arch_name, tensors)}


def report(rows, profile):
    """The per-module table, and for a runtime the command that serves the directory."""
    text = table(rows)
    if profile is not None:
        text += f"\nserve with: {profile.launch.format(rank=max(row.rank for row in rows))}"
    return text


def table(rows):
    """The rows as a text table: module, from, exact rank, rank, relative error."""
    header = ("module", "from", "exact rank", "rank", "relative error")
    lines = [(r.module, r.layer, str(r.exact_rank), str(r.rank), f"{r.error:.2e}") for r in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *lines]
    )
