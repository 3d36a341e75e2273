"""A quantized base: GraLoRA on int8/int4 vs Keras LoRA on the same base vs GraLoRA on float.

Two models (`--model`): the train-step stack (`depth` Dense layers of
`width`, every layer adapted) and pretrained MiniLM as a 3-class
classifier (query and value adapted, KerasHub's LoRA targets; pre-tokenized
batches). Every configuration starts from the same base weights; after
warm-up, train steps are taken round robin in one process, `repeat` times.
Per configuration it prints its step time per repeat and the ratio to Keras
LoRA (min / median / max), the frozen base's weight bytes, the bytes of
its variables (base, adapters, optimizer state), and its peak memory: the
peak RSS of steady-state train steps above the RSS before the model existed
(`memory.py`'s measure), taken in a fresh process per configuration and
repeat, as one process's RSS depends on what ran in it before (measured:
round robin in one process, Keras LoRA after GraLoRA added 0 MiB). Those
processes fix glibc's mmap threshold (see `memory.py`) so that RSS follows
live memory; the timing process keeps glibc's default, as users do (the
fixed threshold made torch's int8 steps 1.4x slower: 1.08-1.19 s against 0.77-0.84 s).

    KERAS_BACKEND=torch python benchmarks/quantized_step.py --mode int8 --repeat 3
    KERAS_BACKEND=jax python benchmarks/quantized_step.py --model minilm --mode int8 --with-memory
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
from stack import interleaved, reset_peak_rss, rss_mib, stack_arguments, stack_data

import keras_gralora

BASE = (
    "kernel",
    "kernel_scale",
    "kernel_zero",
    "g_idx",
    "embeddings",
    "embeddings_scale",
    "reverse_embeddings",
    "reverse_embeddings_scale",
)


def stack_models(kinds, mode, args):
    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal((args.width, args.width)).astype("float32") * 0.03 for _ in range(args.depth)]
    weights = [w for kernel in kernels for w in (kernel, np.zeros(args.width, "float32"))]  # the same base everywhere
    models = []
    for kind in kinds:
        model = keras.Sequential(
            [keras.Input((None, args.width))] + [keras.layers.Dense(args.width) for _ in range(args.depth)]
        )
        model.set_weights(weights)
        if kind != "gralora float":
            model.quantize(mode)
        if kind.startswith("gralora"):
            keras_gralora.enable_gralora(model, r=args.r, k=2, target_layer_names=".*")  # every layer, the last too
        else:  # Keras' own LoRA, biases frozen like ours
            for layer in model.layers:
                layer.enable_lora(args.r)
                layer.bias.trainable = False
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        models.append(model)
    return models, stack_data(args.batch, args.seq, args.width)


def minilm_models(kinds, mode, args):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    import sentiment_task
    from minilm_fit import enable_lora_factors_only, token_batch

    models = []
    for kind in kinds:
        model = sentiment_task.classifier(
            sentiment_task.minilm_preset(), seed=0, quantize=None if kind == "gralora float" else mode
        )
        model.preprocessor = None  # the batches are token ids already
        if kind.startswith("gralora"):
            model.backbone.enable_gralora(r=args.r, k=2)  # query and value, as KerasHub's enable_lora
        else:
            enable_lora_factors_only(model.backbone, args.r)
        sentiment_task.compile_for_training(model, 1e-4)
        models.append(model)
    return models, token_batch(30522, args.batch, args.seq)


def variable_bytes(variables):
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def peak_mib(kind, args):
    """Peak RSS (MiB) of train steps of configuration `kind` alone, above the RSS before it existed."""
    keras.ops.convert_to_numpy(keras.ops.add(np.ones(4), 1.0))  # start the backend up before the baseline
    baseline = rss_mib("VmRSS")
    (model,), (x, y) = MODELS[args.model]([kind], args.mode, args)
    for _ in range(2):
        model.train_on_batch(x, y)
    reset_peak_rss()
    for _ in range(2):
        model.train_on_batch(x, y)
    return rss_mib("VmHWM") - baseline


def peaks_in_fresh_processes(kinds, repeat):
    """`[[MiB per kind] per repeat]`, each measured by this script in a process of its own."""
    argv = [a for a in sys.argv if a != "--with-memory"]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # read by glibc at start-up; timings keep the default

    def run(kind):
        command = [sys.executable, *argv, "--peak-of", kind]
        return float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()[-1])

    return [[run(kind) for kind in kinds] for _ in range(repeat)]


MODELS = {"stack": stack_models, "minilm": minilm_models}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="int8", choices=("int8", "int4"))
    parser.add_argument("--model", default="stack", choices=("stack", "minilm"))
    parser.add_argument("--with-memory", action="store_true", help="also peak memory, a process per measurement")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # internal: one configuration's peak, printed
    args = stack_arguments(parser).parse_args()
    if args.model == "minilm" and args.width == 1024:  # the stack's defaults do not fit MiniLM
        args.batch, args.seq, args.r = 16, 64, 8
    kinds = [f"gralora {args.mode}", f"keras lora {args.mode}", "gralora float"]
    if args.peak_of:
        print(peak_mib(args.peak_of, args))
        return
    models, (x, y) = MODELS[args.model](kinds, args.mode, args)
    runs = [interleaved(models, x, y, args.steps) for _ in range(args.repeat)]
    peaks = peaks_in_fresh_processes(kinds, args.repeat) if args.with_memory else None
    for i, (kind, model) in enumerate(zip(kinds, models)):
        ratios = [run[i] / run[1] for run in runs]
        print(
            json.dumps(
                {
                    "bench": "quantized_step",
                    "model": args.model,
                    "backend": keras.backend.backend(),
                    "config": kind,
                    "ms": [round(1000 * run[i], 1) for run in runs],
                    "vs_keras_lora_min": min(ratios),
                    "vs_keras_lora_median": statistics.median(ratios),
                    "vs_keras_lora_max": max(ratios),
                    "base_mib": variable_bytes([v for v in model.weights if v.name in BASE and not v.trainable])
                    / 2**20,
                    "state_mib": variable_bytes(model.weights + model.optimizer.variables) / 2**20,
                    "peak_mib": [round(p[i], 1) for p in peaks] if peaks else None,
                }
            )
        )


if __name__ == "__main__":
    main()
