"""Peak memory of a train step of one configuration of the `train_step.py` stack.

Prints, in MiB of resident memory (RSS):

- `peak_mib`: the peak of steady-state train steps above the RSS before the
  model existed (imports, backend start-up, the input batch);
- `step_mib`: that peak above the RSS just before those steps (after two
  warm-up steps): what a step itself allocates, activations and gradients;
- `resident_mib`: the RSS the model and its warm-up added before those steps:
  weights, optimizer state, compiled code, and whatever the backend's
  allocators kept. jax (XLA's runtime) and tensorflow may keep a step's
  buffers pooled from the warm-up on, so their step memory lands here or in
  `step_mib` from run to run (`peak_mib` alike); torch returns it after each
  step, so torch's `step_mib` is the step's own memory;
- `xla_temp_mib` (jax): XLA's own count of the compiled step's temporaries
  (`memory_analysis()`), the exact figure on jax.

The peak is reset after the warm-up steps (Linux `/proc/self/clear_refs`),
so compiling does not count in `step_mib`. `benchmarks/run.py`
runs each configuration in a fresh process with glibc's mmap threshold
fixed (`MALLOC_MMAP_THRESHOLD_`): by default glibc raises the threshold
after the first large free and then keeps freed 8 MiB activations in its
heap, which made RSS reflect allocation order more than live memory
(single runs swung by 30 %).

    MALLOC_MMAP_THRESHOLD_=131072 KERAS_BACKEND=jax python benchmarks/memory.py --kind gralora --k 2
"""

import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
from stack import compiled_jax_step, reset_peak_rss, rss_mib, stack, stack_arguments, stack_data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["floor", "lora", "gralora"], required=True)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--hybrid_r", type=int, default=0)
    stack_arguments(parser, steps=3)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    x, y = stack_data(args.batch, args.seq, args.width)
    keras.ops.convert_to_numpy(keras.ops.add(x, 1.0))  # start the backend up before the baseline
    baseline = rss_mib("VmRSS")
    extra = dict(k=args.k, hybrid_r=args.hybrid_r) if args.kind == "gralora" else {}
    model = stack(args.kind, args.width, args.depth, args.r, **extra)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    step = lambda: model.train_on_batch(x, y)  # noqa: E731
    for _ in range(args.warmup):
        step()
    settled = rss_mib("VmRSS")
    reset_peak_rss()
    for _ in range(args.steps):
        step()
    peak = rss_mib("VmHWM")
    name = args.kind if not extra else f"gralora k={args.k} hybrid_r={args.hybrid_r}"
    print(
        json.dumps(
            {
                "bench": "memory",
                "backend": keras.backend.backend(),
                "config": name,
                "peak_mib": peak - baseline,
                "step_mib": peak - settled,
                "resident_mib": settled - baseline,
                "xla_temp_mib": xla_temp_mib(model, x, y) if keras.backend.backend() == "jax" else None,
            }
        )
    )


def xla_temp_mib(model, x, y):
    """XLA's own account of the temporaries of the compiled step (jax): loss, gradients, no allocator in between."""
    compiled = compiled_jax_step(model, x, y)
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


if __name__ == "__main__":
    main()
