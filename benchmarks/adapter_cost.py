"""Where GraLoRA's train step spends its time above the floor, on the backend in KERAS_BACKEND.

The train-step stack (4 x Dense 1024, 16 x 128 tokens, r=32), interleaved
round robin in one process after warm-up, in five forms:

- floor: kernels frozen, biases train (no adapter at all);
- Keras LoRA: `Dense.enable_lora(r)`, biases frozen;
- GraLoRA: `ops.block_forward` (block-major batched matmuls);
- two plain matmuls: the adapter replaced by `(x @ A) @ B` with `A [in, r]`,
  `B [r, out]` (GraLoRA's variables reshaped): the same multiply-adds as
  GraLoRA, without its block layout or cross-block exchange;
- no-op adapter: the adapter path returns zeros (the layer's own overhead).

If GraLoRA costs what the two plain matmuls cost, its block layout is free
and the time above the floor is what the backend pays for rank-r matmuls.

    KERAS_BACKEND=torch python benchmarks/adapter_cost.py --k 2 --steps 9
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_gralora import ops as gralora_ops  # noqa: E402
from keras_gralora.layers import adapter as adapter_module  # noqa: E402
from train_step import interleaved_medians, stack, train_on_batch_step  # noqa: E402


def two_plain_matmuls(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    k, block_in, r = a.shape
    return ops.matmul(ops.matmul(x, ops.reshape(a, (k * block_in, r))), ops.reshape(b * scale, (r, -1)))


def no_op(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    return ops.zeros((ops.shape(x)[0], b.shape[0] * b.shape[-1]), x.dtype) + 0 * (ops.sum(a) + ops.sum(b))


FORWARDS = {"GraLoRA": gralora_ops.block_forward, "two plain matmuls": two_plain_matmuls, "no-op adapter": no_op}


class _Ops:
    """What the adapter layer calls `gralora_ops`: the real module with `block_forward` swapped."""

    def __init__(self, block_forward):
        self.block_forward = block_forward

    def __getattr__(self, name):
        return getattr(gralora_ops, name)


def with_forward(step, block_forward):
    def run():  # set at every call: torch runs eagerly, jax and tensorflow trace on the first call
        adapter_module.gralora_ops = _Ops(block_forward)
        try:
            return step()
        finally:
            adapter_module.gralora_ops = gralora_ops

    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--steps", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((16, 128, 1024)).astype("float32") for _ in range(2))
    steps = {name: train_on_batch_step(stack(kind, 1024, 4, 32), x, y)
             for name, kind in (("floor", "floor"), ("Keras LoRA", "lora"))}
    for name, forward in FORWARDS.items():
        steps[name] = with_forward(train_on_batch_step(stack("gralora", 1024, 4, 32, k=args.k), x, y), forward)
    seconds = interleaved_medians(steps, args.steps)
    for name, value in seconds.items():
        print(json.dumps({"bench": "adapter_cost", "backend": keras.backend.backend(), "config": f"k={args.k} {name}",
                          "ms": 1000 * value, "vs_lora": value / seconds["Keras LoRA"]}))


if __name__ == "__main__":
    main()
