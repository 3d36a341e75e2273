"""Peak memory of training one configuration of the `train_step.py` stack.

Peak RSS only grows, so each configuration needs a fresh process:
`benchmarks/run.py` starts one per configuration and backend. Prints the
peak resident memory above the process's peak before the model existed
(imports, backend start-up and the input batch), i.e. what building,
compiling and training the stack added at its worst moment.

    KERAS_BACKEND=jax python benchmarks/memory.py --kind gralora --k 2
"""

import argparse
import json
import os
import resource

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from train_step import stack  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    y = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    keras.ops.convert_to_numpy(keras.ops.add(x, 1.0))  # start the backend up before the baseline
    baseline = peak_rss_mib()
    extra = dict(k=args.k, hybrid_r=args.hybrid_r) if args.kind == "gralora" else {}
    model = stack(args.kind, args.width, args.depth, args.r, **extra)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    name = args.kind if not extra else f"gralora k={args.k} hybrid_r={args.hybrid_r}"
    print(json.dumps({
        "bench": "memory", "backend": keras.backend.backend(), "config": name,
        "peak_mib": peak_rss_mib() - baseline,
    }))


if __name__ == "__main__":
    main()
