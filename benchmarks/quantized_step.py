"""Train step on a quantized base: GraLoRA on int8 vs Keras LoRA on the same int8 base vs GraLoRA on float.

A stack of `depth` Dense layers of `width` (the train_step.py stack), the
same base weights in every configuration, steps taken round robin in one
process after warm-up, repeated; prints one JSON line per configuration
with its step time per repeat and its ratio to Keras LoRA on int8 (min /
median / max over repeats), plus the frozen base's weight bytes.

    KERAS_BACKEND=torch python benchmarks/quantized_step.py --mode int8 --repeat 3
"""

import argparse
import json
import os
import statistics

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_gralora  # noqa: E402
from against_commit import interleaved, stack_arguments, stack_data  # noqa: E402


def stack(width, depth, weights):
    model = keras.Sequential([keras.Input((None, width))] + [keras.layers.Dense(width) for _ in range(depth)])
    model.set_weights(weights)
    return model


def configured(kind, mode, width, depth, r, weights):
    model = stack(width, depth, weights)
    if kind != "gralora float":
        model.quantize(mode)
    if kind.startswith("gralora"):
        keras_gralora.enable_gralora(model, r=r, k=2, target_layer_names=".*")  # every layer, the last too
    else:  # Keras' own LoRA, biases frozen like ours
        for layer in model.layers:
            layer.enable_lora(r)
            layer.bias.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def base_bytes(model):
    names = ("kernel", "kernel_scale", "kernel_zero", "g_idx")
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights if v.name in names)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="int8", choices=("int8", "int4"))
    args = stack_arguments(parser).parse_args()
    rng = np.random.default_rng(0)
    x, y = stack_data(args, rng)
    kernels = [rng.standard_normal((args.width, args.width)).astype("float32") * 0.03 for _ in range(args.depth)]
    weights = [w for kernel in kernels for w in (kernel, np.zeros(args.width, "float32"))]  # the same base everywhere
    kinds = [f"gralora {args.mode}", f"keras lora {args.mode}", "gralora float"]
    models = [configured(kind, args.mode, args.width, args.depth, args.r, weights) for kind in kinds]
    runs = [interleaved(models, x, y, args.steps) for _ in range(args.repeat)]
    for i, (kind, model) in enumerate(zip(kinds, models)):
        ratios = [run[i] / run[1] for run in runs]
        print(json.dumps({
            "bench": "quantized_step", "backend": keras.backend.backend(), "config": kind,
            "ms": [round(1000 * run[i], 1) for run in runs], "vs_keras_lora_min": min(ratios),
            "vs_keras_lora_median": statistics.median(ratios), "vs_keras_lora_max": max(ratios),
            "base_mib": base_bytes(model) / 2**20,
        }))


if __name__ == "__main__":
    main()
