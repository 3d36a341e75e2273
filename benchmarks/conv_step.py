"""Train-step time of a stack of adapted Conv2D layers: GraLoRA vs Keras' own conv LoRA, on KERAS_BACKEND.

Every configuration trains the same set of weights' kind (the adapters of
the same convolutions; kernels frozen, biases frozen) and lives in one
process; after warm-up each round runs one step of every configuration in
turn (`stack.interleaved_medians`), and `--repeat` blocks of `--steps`
rounds give each figure's median and its spread. The floor trains the
biases only: forward plus the input and bias gradients.

    KERAS_BACKEND=torch python benchmarks/conv_step.py --channels 128 --size 16 --steps 7 --repeat 3
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
from stack import interleaved_medians, train_on_batch_step

import keras_gralora
from keras_gralora.layers import GraLoRAAdapter, GraLoRAConv2D


class Factored(GraLoRAConv2D):
    """GraLoRAConv2D whose forward pass is always the adapters' own (`GraLoRAAdapter.call`)."""

    call = GraLoRAAdapter.call


def conv_stack(kind, channels, depth, r, k=2):
    """`depth` 3x3 convolutions of `channels`: `"gralora"`, `"factored"`, `"lora"` (Keras' `lora_rank`) or `"floor"`.

    `"factored"` is GraLoRA forced through the adapters' own pass (grouped
    convolution, then `B`) instead of the float32 kernel-plus-delta one.
    """
    layers = [keras.Input((None, None, channels))]
    for i in range(depth):
        layers.append(keras.layers.Conv2D(channels, 3, padding="same", name=f"conv_{i}"))
    model = keras.Sequential(layers)
    if kind in ("gralora", "factored"):
        names = [layer.name for layer in model.layers]  # every conv, the output one too ("all" skips it)
        keras_gralora.enable_gralora(model, r=r, k=k, target_layer_names=names)  # B = 0: the same work
        for layer in model.layers if kind == "factored" else ():
            layer.__class__ = Factored
    else:
        for layer in model.layers:
            layer.kernel.trainable = False
            if kind == "lora":
                layer.enable_lora(r)  # Keras freezes the kernel; its bias stays trainable: freeze it too
                layer.bias.trainable = False
    return model


def main():
    parser = argparse.ArgumentParser()
    for name, default in {"channels": 128, "size": 16, "batch": 16, "depth": 4, "r": 32, "steps": 7}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((args.batch, args.size, args.size, args.channels)).astype("float32") for _ in range(2))
    configs = {"floor": ("floor", 2), "lora": ("lora", 2)}
    configs.update({f"{kind} k={k}": (kind, k) for kind in ("gralora", "factored") for k in (2, 4)})
    steps = {
        name: train_on_batch_step(conv_stack(kind, args.channels, args.depth, args.r, k), x, y)
        for name, (kind, k) in configs.items()
    }
    blocks = [interleaved_medians(steps, args.steps) for _ in range(args.repeat)]
    for name in configs:
        ratios = [block[name] / block["lora"] for block in blocks]
        milliseconds = [1000 * block[name] for block in blocks]
        print(
            json.dumps(
                {
                    "bench": "conv_step",
                    "backend": keras.backend.backend(),
                    "config": name,
                    "ms": float(np.median(milliseconds)),
                    "ms_range": [min(milliseconds), max(milliseconds)],
                    "vs_lora": float(np.median(ratios)),
                    "vs_lora_range": [min(ratios), max(ratios)],
                }
            )
        )


if __name__ == "__main__":
    main()
