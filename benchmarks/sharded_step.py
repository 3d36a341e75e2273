"""The compiled train step of a Gemma under ModelParallel (2 x 4 mesh, KerasHub's layout map), per adapter layout.

On 8 virtual CPU devices (jax), a small Gemma (widths divisible by the
mesh) gets GraLoRA with its adapters replicated (the default), GraLoRA with
its adapters sharded like the base kernels (`A` over the kernel's input
axis, `B` over its output axis), or Keras LoRA. For each, the train step's
gradient program is compiled by XLA's SPMD partitioner; printed per
configuration: the collectives in the partitioned program, its memory per
device (`memory_analysis`: arguments, temporaries) and any warning XLA
writes while compiling (e.g. "Involuntary full rematerialization").

    KERAS_BACKEND=jax python benchmarks/sharded_step.py
"""

import contextlib
import json
import os
import re
import tempfile

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")  # before jax starts
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")  # keep XLA's warnings

import jax  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_gralora  # noqa: E402, F401  (adds Backbone.enable_gralora)

SIZES = dict(vocabulary_size=1024, num_layers=2, num_query_heads=8, num_key_value_heads=8, hidden_dim=512,
             intermediate_dim=4096, head_dim=64)
LIKE_THE_BASE = {".*gralora_a_.*": (None, "batch", None), ".*gralora_b_.*": (None, None, "model")}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
CONFIGS = ("gralora, adapters replicated", "gralora, adapters sharded like the base", "keras lora")


def build(config):
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    if "like the base" in config:
        for key, axes in LIKE_THE_BASE.items():
            layout_map[key] = axes
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GemmaBackbone(**SIZES)
        if config.startswith("gralora"):
            backbone.enable_gralora(r=16, k=2)
        else:
            backbone.enable_lora(16)
    return backbone, distribution


@contextlib.contextmanager
def stderr_lines():
    """Collects what native code writes to file descriptor 2 inside the block."""
    lines = []
    with tempfile.TemporaryFile(mode="w+") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(line for line in capture.read().splitlines() if line.strip())


def compiled_step(backbone, distribution, batch=8, seq=64):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, SIZES["vocabulary_size"], (batch, seq)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    x = {k: jax.device_put(v, distribution.get_data_layout(v.shape).backend_layout) for k, v in x.items()}
    trainable = [v.value for v in backbone.trainable_variables]
    frozen = [v.value for v in backbone.non_trainable_variables]

    def loss(trainable, frozen, x):
        hidden, _ = backbone.stateless_call(trainable, frozen, x)
        return keras.ops.mean(keras.ops.square(hidden))

    return jax.jit(jax.value_and_grad(loss)).lower(trainable, frozen, x).compile()


def gathered_mib(text):
    """MiB that the program's all-gathers produce on one device (their result shapes)."""
    sizes = {"f32": 4, "s32": 4, "bf16": 2, "pred": 1}
    total = 0
    for dtype, dims in re.findall(r"= (\w+)\[([\d,]*)\]\S* all-gather(?:-start)?\(", text):
        total += sizes.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total / 2**20


def main():
    for config in CONFIGS:
        backbone, distribution = build(config)
        with stderr_lines() as warnings:
            program = compiled_step(backbone, distribution)
        text, memory = program.as_text(), program.memory_analysis()
        print(json.dumps({
            "bench": "sharded_step", "config": config,
            "trainable": sum(int(np.prod(v.shape)) for v in backbone.trainable_variables),
            "collectives": {op: len(re.findall(rf"= \S+ {op}(-start)?\(", text)) for op in COLLECTIVES},
            "all_gather_mib": round(gathered_mib(text), 3),
            "argument_mib": memory.argument_size_in_bytes / 2**20, "temp_mib": memory.temp_size_in_bytes / 2**20,
            "xla_warnings": [line for line in warnings if "W" in line[:2] or "remat" in line.lower()][:5],
        }))


if __name__ == "__main__":
    main()
