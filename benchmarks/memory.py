"""Peak memory of a train step of one configuration of the `train_step.py` stack.

Prints the peak resident memory (RSS) of steady-state train steps, above
the resident memory before the model existed (imports, backend start-up,
the input batch): weights, optimizer state and the step's activations and
gradients. The peak is reset after two warm-up steps (Linux
`/proc/self/clear_refs`), so compiling does not count. `benchmarks/run.py`
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

import keras  # noqa: E402
import numpy as np  # noqa: E402

from train_step import stack  # noqa: E402


def rss_mib(field):
    """`VmRSS` (now) or `VmHWM` (peak since the last reset), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # reported in KiB
    raise RuntimeError(f"/proc/self/status has no {field}: benchmarks/memory.py needs Linux")


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["floor", "lora", "gralora"], required=True)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--hybrid_r", type=int, default=0)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--r", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    y = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    keras.ops.convert_to_numpy(keras.ops.add(x, 1.0))  # start the backend up before the baseline
    baseline = rss_mib("VmRSS")
    extra = dict(k=args.k, hybrid_r=args.hybrid_r) if args.kind == "gralora" else {}
    model = stack(args.kind, args.width, args.depth, args.r, **extra)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    for _ in range(args.warmup):
        model.train_on_batch(x, y)
    reset_peak_rss()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    name = args.kind if not extra else f"gralora k={args.k} hybrid_r={args.hybrid_r}"
    print(json.dumps({
        "bench": "memory", "backend": keras.backend.backend(), "config": name,
        "peak_mib": rss_mib("VmHWM") - baseline,
    }))


if __name__ == "__main__":
    main()
