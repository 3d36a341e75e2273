"""What each serving runtime takes from a PEFT LoRA directory, checked before anything is written.

One row per runtime (see ../shared/GRALORA.md, "Serving runtimes"). A
runtime that reads one `r` and one `lora_alpha` gets every module padded
with zeros to one rank (exact: zero rows add nothing), rounded up to the
ranks its kernels take. What a runtime does not serve (trained biases,
`modules_to_save`) is refused rather than dropped, since serving without
it would give other outputs.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A serving runtime's rules for LoRA directories.

    Args:
        name: As users know it, for messages.
        ranks: The ranks it serves (a rank is padded up to the next), or `None`.
        multiple: Ranks are padded up to a multiple of this.
        max_rank: The largest rank it serves, or `None`.
        uniform: It reads one `r` and `lora_alpha` for every module
            (no `rank_pattern` / `alpha_pattern`).
        extras: It serves trained biases and `modules_to_save` weights.
        launch: How the server is told the rank (`{rank}` filled in).
    """

    name: str
    ranks: tuple = None
    multiple: int = 1
    max_rank: int = None
    uniform: bool = True
    extras: bool = False
    launch: str = ""


RUNTIMES = {
    "vllm": Runtime(
        "vLLM",
        ranks=(1, 8, 16, 32, 64, 128, 256, 320, 512),
        max_rank=512,
        launch="vllm serve BASE --enable-lora --max-lora-rank {rank} --lora-modules NAME=DIR",
    ),
    "sglang": Runtime(
        "SGLang",
        uniform=False,
        launch="python -m sglang.launch_server --model-path BASE --lora-paths NAME=DIR --max-lora-rank {rank}",
    ),
    "tgi": Runtime(
        "TGI", multiple=16, max_rank=128, launch="text-generation-launcher --model-id BASE --lora-adapters NAME=DIR"
    ),
    "llama.cpp": Runtime("llama.cpp", launch="llama-server -m BASE.gguf --lora DIR/adapter.gguf"),
}


def runtime(name, where):
    """The `Runtime` called `name`, `None` for `None`, else `ValueError` listing them."""
    if name is None:
        return None
    if name not in RUNTIMES:
        raise ValueError(
            f"{where}: runtime={name!r} is not one keras_gralora knows; choose one of "
            f"{sorted(RUNTIMES)}, or None for a plain PEFT LoRA directory."
        )
    return RUNTIMES[name]


def served_ranks(profile, ranks, extras, where):
    """`{module: rank written}` for the modules' ranks `{module: rank}`, or `ValueError` naming the rule and fix.

    `extras` names what besides the LoRA factors the directory would hold
    (e.g. `["trained biases of 3 layers"]`).
    """
    if profile is None:
        return dict(ranks)
    if extras and not profile.extras:
        raise ValueError(
            f"{where}: {profile.name} serves lora_A / lora_B only, and this adapter also has {', '.join(extras)}; "
            f"serving it without them would give other outputs. Train with bias='none' and no modules_to_save, "
            f"or save without runtime= (PEFT and transformers load them), or merge the model (export_merged)."
        )
    wanted = max(ranks.values()) if profile.uniform else None
    served = {}
    for module, rank in ranks.items():
        target = _rounded(profile, wanted or rank)
        if target is None:
            raise ValueError(
                f"{where}: {profile.name} serves ranks up to {profile.max_rank}; module '{module}' has rank {rank}. "
                f"Pass rank={profile.max_rank} (or less) to truncate to the best approximation at that rank; the "
                "returned table gives each module's error."
            )
        served[module] = target
    return served


def _rounded(profile, rank):
    rank = -(-rank // profile.multiple) * profile.multiple
    if profile.ranks is not None:
        rank = next((allowed for allowed in profile.ranks if allowed >= rank), None)
    if rank is None or (profile.max_rank is not None and rank > profile.max_rank):
        return None
    return rank
