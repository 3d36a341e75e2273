"""What torch itself could do for an adapter on activations, outside `keras.ops` (torch backend only).

The train-step stack (4 x Dense 1024, 16 x 128 tokens, r=32), interleaved
round robin in one process after warm-up, with a plain rank-r LoRA on the
activations (GraLoRA's multiply-adds, no block layout) written three ways:

- keras.ops: `x @ kernel + (x @ A) @ B`, what `keras.ops` can express;
- torch.addmm: the adapter's second matmul accumulates into the base output
  (BLAS beta = 1), which `keras.ops` has no op for;
- folded (custom autograd): `A` folded into the base matmul as extra
  columns (`x @ [kernel | A]`), the adapter output accumulated in place, and
  a hand-written backward that adds the adapter's input gradient in place.

beside the floor (kernels frozen, biases train) and Keras LoRA. If even
these forms stay above the target, no `keras.ops` formulation reaches it.

    KERAS_BACKEND=torch python benchmarks/torch_bound.py --steps 9
"""

import argparse
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "torch"

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/stack.py

import keras
import numpy as np
import torch
from keras import ops
from stack import interleaved_medians, stack, train_on_batch_step

SCALE = 2.0


class _Folded(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, bias, a, b):
        out_features = kernel.shape[1]
        both = x @ torch.cat([kernel, a], 1)  # [n, out + r]: the base and the adapter's first stage at once
        xa = both[:, out_features:]
        out = torch.addmm(both[:, :out_features], xa, b * SCALE)
        out += bias
        ctx.save_for_backward(x, xa, kernel, a, b)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, xa, kernel, a, b = ctx.saved_tensors
        grad_xa = grad @ (b * SCALE).T
        grad_x = grad @ kernel.T
        grad_x.addmm_(grad_xa, a.T)
        return grad_x, None, None, x.T @ grad_xa, (xa.T @ grad) * SCALE


def with_keras_ops(x, kernel, bias, a, b):
    return ops.add(ops.add(ops.matmul(x, kernel), ops.matmul(ops.matmul(x, a), b * SCALE)), bias)


def with_addmm(x, kernel, bias, a, b):
    return torch.addmm(x @ kernel, x @ a, b * SCALE) + bias


FORMS = {"keras.ops": with_keras_ops, "torch.addmm": with_addmm, "folded (custom autograd)": _Folded.apply}


class PlainLoRADense(keras.layers.Layer):
    """A frozen `Dense` plus a rank-`r` LoRA on the activations, computed by `FORMS[form]`."""

    def __init__(self, units, r, form, **kwargs):
        super().__init__(**kwargs)
        self.units, self.r, self.form = units, r, form

    def build(self, input_shape):
        width = input_shape[-1]
        self.kernel = self.add_weight(shape=(width, self.units), trainable=False)
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", trainable=False)
        self.a = self.add_weight(shape=(width, self.r), initializer="glorot_uniform")
        self.b = self.add_weight(shape=(self.r, self.units), initializer="glorot_uniform")

    def call(self, x):
        flat = ops.reshape(x, (-1, x.shape[-1]))
        out = FORMS[self.form](flat, self.kernel.value, self.bias.value, self.a.value, self.b.value)
        return ops.reshape(out, tuple(x.shape[:-1]) + (self.units,))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((16, 128, 1024)).astype("float32") for _ in range(2))
    steps = {
        name: train_on_batch_step(stack(kind, 1024, 4, 32), x, y)
        for name, kind in (("floor", "floor"), ("Keras LoRA", "lora"), ("GraLoRA k=2", "gralora"))
    }
    for form in FORMS:
        model = keras.Sequential([keras.Input((None, 1024))] + [PlainLoRADense(1024, 32, form) for _ in range(4)])
        steps[f"plain LoRA, {form}"] = train_on_batch_step(model, x, y)
    seconds = interleaved_medians(steps, args.steps)
    for name, value in seconds.items():
        print(
            json.dumps(
                {
                    "bench": "torch_bound",
                    "backend": "torch",
                    "config": name,
                    "ms": 1000 * value,
                    "vs_lora": value / seconds["Keras LoRA"],
                }
            )
        )


if __name__ == "__main__":
    main()
