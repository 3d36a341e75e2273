"""llama.cpp's LoRA adapter format: a GGUF file written with the `gguf` package's writer and tensor-name tables.

What llama.cpp's own `convert_lora_to_gguf.py` writes for a PEFT LoRA
directory, from our exact factors: `general.type = "adapter"`,
`adapter.type = "lora"`, `adapter.lora.alpha`, and for each adapted base
tensor `X.weight` the tensors `X.weight.lora_a` (numpy `[r, in]`) and
`X.weight.lora_b` (`[out, r]`), `X` from gguf's name table for the
architecture (`gguf.get_tensor_name_map`). llama.cpp scales each update by
`alpha / r`; every module here has one rank `r` (llama.cpp's rule) and the
adapter's scale is already in `lora_b`, so `alpha = r`.

llama.cpp's converter permutes the rows of Llama's and Mistral's
`q_proj` / `k_proj` (its rotary layout pairs neighbouring features): the
rows of their `lora_b` are permuted the same way (`_permuted`).
"""

import dataclasses

import numpy as np

FILE = "adapter.gguf"  # in `peft_files.OWNED`


@dataclasses.dataclass(frozen=True)
class Arch:
    """How llama.cpp reads one transformers class: its gguf architecture, and whether q/k rows are permuted."""

    gguf_arch: str  # the name of a `gguf.MODEL_ARCH` member
    permutes_qk: bool = False


ARCHS = {  # transformers class -> what llama.cpp's convert_hf_to_gguf.py makes of it
    "LlamaForCausalLM": Arch("LLAMA", permutes_qk=True),
    "MistralForCausalLM": Arch("LLAMA", permutes_qk=True),
    "Qwen2ForCausalLM": Arch("QWEN2"),
    "GemmaForCausalLM": Arch("GEMMA"),
    "Gemma2ForCausalLM": Arch("GEMMA2"),
    "Qwen3ForCausalLM": Arch("QWEN3"),
    "Qwen2MoeForCausalLM": Arch("QWEN2MOE"),  # attention projections: the experts are not Dense layers here
    "Gemma3ForCausalLM": Arch("GEMMA3"),
    "BertModel": Arch("BERT"),
    "GPT2LMHeadModel": Arch("GPT2"),  # its converter transposes Conv1D weights to [out, in], as lora_b is
}


@dataclasses.dataclass(frozen=True)
class Heads:
    """The attention head counts the q/k permutation needs."""

    query: int
    key_value: int


def plan(class_name, modules, heads, where):
    """`(gguf architecture name, [(gguf tensor name, lora_a [r, in], lora_b [out, r])])`, every check done.

    Args:
        class_name: The transformers class the module names belong to.
        modules: `{module: (left [in, r], right [r, out])}`, one rank `r`, the scale in `right`.
        heads: `Heads`, or `None` where the architecture permutes nothing.
        where: How errors name the caller.
    """
    gguf = _gguf(where)
    if class_name not in ARCHS:
        raise ValueError(
            f"{where}: llama.cpp's adapter file is written for {sorted(ARCHS)}; {class_name} is not among "
            "them. Save the PEFT LoRA directory alone (runtime=None) and convert it with llama.cpp's own "
            "convert_lora_to_gguf.py, if llama.cpp supports the architecture."
        )
    arch = ARCHS[class_name]
    if arch.permutes_qk and heads is None:
        raise ValueError(f"{where}: {class_name}'s q/k rows are permuted by head, and no head counts were given.")
    if len({right.shape[0] for _, right in modules.values()}) != 1:
        raise ValueError(f"{where}: llama.cpp's adapter file takes one rank for every module (adapter.lora.alpha).")
    model_arch = getattr(gguf.MODEL_ARCH, arch.gguf_arch)
    blocks = 1 + max((_block(module) for module in modules), default=0)
    table = gguf.get_tensor_name_map(model_arch, blocks)
    tensors = []
    for module, (left, right) in sorted(modules.items()):
        name = table.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise ValueError(
                f"{where}: module '{module}' has no tensor name in gguf's table for {arch.gguf_arch}: llama.cpp "
                "would not know which base tensor it adapts."
            )
        lora_b = np.ascontiguousarray(right.T, dtype=np.float32)
        if arch.permutes_qk and module.endswith(("q_proj", "k_proj")):
            lora_b = _permuted(lora_b, heads.query if module.endswith("q_proj") else heads.key_value)
        tensors.append((name, np.ascontiguousarray(left.T, dtype=np.float32), lora_b))
    return gguf.MODEL_ARCH_NAMES[model_arch], tensors


def write(path, arch_name, tensors):
    """Writes the planned adapter to `path` (a new file; the caller makes the write atomic)."""
    import gguf

    writer = gguf.GGUFWriter(path, arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(tensors[0][1].shape[0]))  # alpha / r = 1
    for name, lora_a, lora_b in tensors:
        writer.add_tensor(f"{name}.lora_a", lora_a)
        writer.add_tensor(f"{name}.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _permuted(rows, heads):
    """llama.cpp's `LlamaModel.permute` of the output rows: each head's two rotary halves interleaved."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _block(module):
    parts = module.split(".")
    return next((int(part) for part in parts if part.isdigit()), 0)


def _gguf(where):
    try:
        import gguf
    except ImportError:
        raise ValueError(
            f"{where}: writing llama.cpp's adapter file needs the `gguf` package (pip install "
            "'keras_gralora[llama-cpp]' or pip install gguf)."
        ) from None
    return gguf
