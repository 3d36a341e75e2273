"""Where GraLoRA's train step spends its time above the floor, on the backend in KERAS_BACKEND.

The train-step stack (4 x Dense 1024, 16 x 128 tokens, r=32), interleaved
round robin in one process after warm-up, in five forms:

- floor: kernels frozen, biases train (no adapter at all);
- Keras LoRA: `Dense.enable_lora(r)`, biases frozen;
- GraLoRA: `ops.block_forward` (block-major batched matmuls);
- two plain matmuls: the adapter replaced by `(x @ A) @ B` with `A [in, r]`,
  `B [r, out]` (GraLoRA's variables reshaped): the same multiply-adds as
  GraLoRA, without its block layout or cross-block exchange;
- block-diagonal B: the second stage as one 2-D matmul with a block-diagonal
  `B [k*r, out]` (no transpose of the output, k times its multiply-adds);
- x in place: the first stage as one 2-D matmul of `x` viewed as `[n*k, in/k]`
  rows against every block's A side by side, keeping each row's own block (no
  block-major copy of `x`, k times its multiply-adds);
- no-op adapter: the adapter path returns zeros (the layer's own overhead).

If GraLoRA costs what the two plain matmuls cost, its block layout is free
and the time above the floor is what the backend pays for rank-r matmuls.

    KERAS_BACKEND=torch python benchmarks/adapter_cost.py --k 2 --steps 9
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/stack.py

import keras
import numpy as np
from keras import ops
from stack import interleaved_medians, stack, train_on_batch_step

from keras_gralora import ops as gralora_ops
from keras_gralora.layers import adapter as adapter_module


def two_plain_matmuls(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    k, block_in, r = a.shape
    return ops.matmul(ops.matmul(x, ops.reshape(a, (k * block_in, r))), ops.reshape(b * scale, (r, -1)))


def block_diagonal_b(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    k, block_in, r = a.shape
    s = r // k
    xa = ops.matmul(ops.transpose(ops.reshape(x, (-1, k, block_in)), (1, 0, 2)), a)  # [p, n, (j, s)]
    features = ops.reshape(ops.transpose(ops.reshape(xa, (k, -1, k, s)), (1, 2, 0, 3)), (-1, k * r))  # [n, (j, p, s)]
    in_own_block = ops.reshape(ops.eye(k, dtype=b.dtype), (k, 1, k, 1))
    columns = ops.reshape(ops.expand_dims(b * scale, 2) * in_own_block, (k * r, -1))  # [(j, r), (j', o)]
    return ops.matmul(features, columns)


def x_in_place(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    k, block_in, r = a.shape
    s = r // k
    every_block = ops.reshape(ops.transpose(a, (1, 0, 2)), (block_in, k * r))  # [i, (p', r)]
    rows = ops.reshape(ops.matmul(ops.reshape(x, (-1, block_in)), every_block), (-1, k, k, r))  # [n, p, p', r]
    xa = ops.sum(rows * ops.reshape(ops.eye(k, dtype=x.dtype), (1, k, k, 1)), axis=2)  # [n, p, (j, s)]
    features = ops.reshape(ops.transpose(ops.reshape(xa, (-1, k, k, s)), (2, 0, 1, 3)), (k, -1, r))  # [j, n, r]
    return ops.reshape(ops.transpose(ops.matmul(features, b * scale), (1, 0, 2)), (ops.shape(x)[0], -1))


def no_op(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    return ops.zeros((ops.shape(x)[0], b.shape[0] * b.shape[-1]), x.dtype) + 0 * (ops.sum(a) + ops.sum(b))


FORWARDS = {
    "GraLoRA": gralora_ops.block_forward,
    "two plain matmuls": two_plain_matmuls,
    "block-diagonal B": block_diagonal_b,
    "x in place": x_in_place,
    "no-op adapter": no_op,
}


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
    steps = {
        name: train_on_batch_step(stack(kind, 1024, 4, 32), x, y)
        for name, kind in (("floor", "floor"), ("Keras LoRA", "lora"))
    }
    for name, forward in FORWARDS.items():
        steps[name] = with_forward(train_on_batch_step(stack("gralora", 1024, 4, 32, k=args.k), x, y), forward)
    seconds = interleaved_medians(steps, args.steps)
    for name, value in seconds.items():
        print(
            json.dumps(
                {
                    "bench": "adapter_cost",
                    "backend": keras.backend.backend(),
                    "config": f"k={args.k} {name}",
                    "ms": 1000 * value,
                    "vs_lora": value / seconds["Keras LoRA"],
                }
            )
        )


if __name__ == "__main__":
    main()
