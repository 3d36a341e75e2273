"""Peak memory of the real Gemma 3 270M's train step: GraLoRA vs Keras' own LoRA, per backend.

The configurations of `gemma_step.py` (same layers, rank, weights, batch
and optimizer), each in a fresh process, round robin, `--repeat` times: the
peak RSS of steady-state steps above the RSS before the model existed
("peak"), that peak above the RSS just before those steps ("step"), and on
jax XLA's count of the compiled step's temporaries; the median and range
over the processes. `--config C` is one such process. On torch, `--peft`
adds PEFT's GraLoRA and LoRA on transformers' `Gemma3ForCausalLM`.

    KERAS_BACKEND=jax python benchmarks/gemma_memory.py --repeat 3
    KERAS_BACKEND=torch python benchmarks/gemma_memory.py --repeat 3 --peft
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys

import gemma_step
import keras
import numpy as np
from gemma_step import CONFIGS, PEFT_CONFIGS, adapted_lm, backbones, peft_steps, report
from stack import reset_peak_rss, rss_mib


def memory_mode(args, x, y):
    """One configuration in this process. Garbage is collected before each reading: a step's
    outputs caught in reference cycles (a 256 MiB logits tensor here) otherwise stay resident
    until Python's collector happens to run, which differs from one model to the next."""
    keras.ops.convert_to_numpy(keras.ops.add(np.ones(4, "float32"), 1.0))  # the backend started before the baseline
    gc.collect()
    baseline = rss_mib("VmRSS")
    if args.config in PEFT_CONFIGS:
        lm, step = None, peft_steps(x, y, names=(args.config,))[args.config]
    else:
        (backbone,) = backbones(1)
        lm = adapted_lm(backbone, args.config)
        step = lambda: lm.train_on_batch(x, y)  # noqa: E731
    for _ in range(2):
        step()
    gc.collect()
    settled = rss_mib("VmRSS")
    reset_peak_rss()
    for _ in range(args.rounds):
        step()
        gc.collect()
    peak = rss_mib("VmHWM")
    temp = None
    if keras.backend.backend() == "jax":
        temp = round(xla_temp_mib(lm, x, y), 1)
    return dict(peak_mib=round(peak - baseline, 1), step_mib=round(peak - settled, 1), xla_temp_mib=temp)


def memory_processes(args):
    """Every configuration in `--repeat` fresh processes each, round robin; median and range per field."""
    results = {config: [] for config in CONFIGS[:-1] + list(PEFT_CONFIGS if args.peft else ())}
    for _ in range(args.repeat):
        for config in results:
            command = [sys.executable, os.path.abspath(__file__), "--config", config]
            command += ["--batch", str(args.batch), "--length", str(args.length), "--rounds", str(args.rounds)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[config].append(json.loads(out.strip().splitlines()[-1]))
    lora = statistics.median(run["peak_mib"] for run in results["keras-lora"])
    for config, runs in results.items():
        fields = {}
        for field in ("peak_mib", "step_mib", "xla_temp_mib"):
            values = [run[field] for run in runs if run[field] is not None]
            if values:
                fields[field] = statistics.median(values)
                fields[field + "_range"] = [min(values), max(values)]
        report(
            mode="memory", config=config, repeats=len(runs), vs_keras_lora=round(fields["peak_mib"] / lora, 3), **fields
        )


def xla_temp_mib(lm, x, y):
    """XLA's count of the temporaries of the compiled loss-and-gradients step (jax)."""
    import jax

    loss_fn = keras.losses.SparseCategoricalCrossentropy(True)

    def loss(trainable, non_trainable, x, y):
        logits, _ = lm.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits)

    arguments = ([v.value for v in lm.trainable_variables], [v.value for v in lm.non_trainable_variables], x, y)
    return jax.jit(jax.value_and_grad(loss)).lower(*arguments).compile().memory_analysis().temp_size_in_bytes / 2**20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=CONFIGS[:-1] + list(PEFT_CONFIGS), help="this configuration only")
    parser.add_argument("--peft", action="store_true", help="torch: PEFT GraLoRA and LoRA on transformers' model too")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.config:
        x, y = gemma_step.batch(args.batch, args.length, 262144)
        print(json.dumps(memory_mode(args, x, y)), flush=True)
    else:
        memory_processes(args)


if __name__ == "__main__":
    main()
