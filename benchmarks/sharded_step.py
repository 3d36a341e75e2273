"""Keras' compiled train step of a Gemma under ModelParallel (2 x 4 mesh, KerasHub's layout map), per adapter layout.

On 8 virtual CPU devices (jax), a small Gemma (widths divisible by the
mesh) gets GraLoRA with its adapters replicated (the default), GraLoRA with
its adapters sharded like the base kernels (`A` over the kernel's input
axis, `B` over its output axis), or Keras LoRA. For each, the train step
that `fit` runs (`model.train_step` jitted with the state's shardings as
`out_shardings`, as Keras' JAX trainer does; Adam) is compiled by XLA's
SPMD partitioner. Printed per configuration: the collectives of the
partitioned program, the all-gathers split into those of the model's
forward and backward pass (activations; and of those, the ones in the
adapted query / value projections) and the rest (XLA computes the
optimizer update of a replicated variable in shards, then gathers it), the
program's memory per device (`memory_analysis`) and any warning XLA writes
while compiling (e.g. "Involuntary full rematerialization").

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

import jax
import keras
import keras_hub
import numpy as np

import keras_gralora  # noqa: F401  (adds Backbone.enable_gralora)

SIZES = dict(
    vocabulary_size=1024,
    num_layers=2,
    num_query_heads=8,
    num_key_value_heads=8,
    hidden_dim=512,
    intermediate_dim=4096,
    head_dim=64,
)
LIKE_THE_BASE = {".*gralora_a_.*": (None, "batch", None), ".*gralora_b_.*": (None, None, "model")}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
CONFIGS = ("gralora, adapters replicated", "gralora, adapters sharded like the base", "keras lora")
BATCH, SEQ = 8, 48  # 384 tokens: no model width equals it
BYTES = {"f32": 4, "s32": 4, "bf16": 2, "pred": 1}
GATHER = re.compile(r"= (\w+)\[([\d,]*)\]\S* all-gather(?:-start)?\(.*?(?:op_name=\"([^\"]*)\"|$)", re.M)


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
        lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
        lm.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
    return lm, distribution


def compiled_train_step(lm, distribution, batch=BATCH, seq=SEQ):
    """`lm.train_step` compiled as Keras' JAX trainer jits it for `fit` under a distribution."""
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, SIZES["vocabulary_size"], (batch, seq)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    y = rng.integers(1, SIZES["vocabulary_size"], (batch, seq)).astype("int32")
    with distribution.scope():
        lm._symbolic_build(data_batch=(x, y, None))
        lm.optimizer.build(lm.trainable_variables)
        put = lambda v: jax.device_put(v, distribution.get_data_layout(v.shape).backend_layout)  # noqa: E731
        data = ({key: put(value) for key, value in x.items()}, put(y), None)
        state = tuple(
            [v.value for v in variables]
            for variables in (
                lm.trainable_variables,
                lm.non_trainable_variables,
                lm.optimizer.variables,
                lm.metrics_variables,
            )
        )
        step = jax.jit(lm.train_step, donate_argnums=0, out_shardings=(None, lm._get_state_sharding_spec()))
        return step.lower(state, data).compile()


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


def gathers(text, batch=BATCH, seq=SEQ):
    """`{kind: [count, MiB]}` of the program's all-gathers (their per-device result sizes), by what they gather.

    Token-sized: the result has the batch's `batch * seq` tokens as an axis,
    or its `batch, seq` axes (activations and their gradients); the others
    in the model's pass gather weights, weight gradients or per-token
    statistics; outside it, XLA gathers the optimizer update it computed in
    shards.
    """
    kinds = {
        kind: [0, 0.0]
        for kind in ("token-sized", "token-sized in query/value", "other in the model's pass", "optimizer update")
    }
    for dtype, dims, op_name in GATHER.findall(text):
        shape = [int(d) for d in dims.split(",") if d]
        mib = BYTES.get(dtype, 4) * int(np.prod(shape)) / 2**20
        tokens = batch * seq in shape or f"{batch},{seq}," in dims + ","
        chosen = (
            ["optimizer update"]
            if "jvp(" not in (op_name or "")
            else (
                ["other in the model's pass"]
                if not tokens
                else ["token-sized"]
                + (["token-sized in query/value"] if re.search(r"/(query|value)/", op_name) else [])
            )
        )
        for kind in chosen:
            kinds[kind][0] += 1
            kinds[kind][1] = round(kinds[kind][1] + mib, 3)
    return kinds


def main():
    for config in CONFIGS:
        lm, distribution = build(config)
        with stderr_lines() as warnings:
            program = compiled_train_step(lm, distribution)
        text, memory = program.as_text(), program.memory_analysis()
        print(
            json.dumps(
                {
                    "bench": "sharded_step",
                    "config": config,
                    "trainable": sum(int(np.prod(v.shape)) for v in lm.trainable_variables),
                    "collectives": {op: len(re.findall(rf"= \S+ {op}(-start)?\(", text)) for op in COLLECTIVES},
                    "all_gathers": gathers(text),
                    "argument_mib": round(memory.argument_size_in_bytes / 2**20, 2),
                    "temp_mib": round(memory.temp_size_in_bytes / 2**20, 2),
                    "xla_warnings": [line for line in warnings if "W" in line[:2] or "remat" in line.lower()][:5],
                }
            )
        )


if __name__ == "__main__":
    main()
