"""`delta_kernel()` and `merge()` vs PEFT's `get_delta_weight` and `merge`.

One adapted square layer per size, on the backend in KERAS_BACKEND; PEFT
runs in torch in the same process on the same adapter weights. Medians of
repeated calls after warm-up.

    KERAS_BACKEND=jax python benchmarks/delta.py --sizes 1024 4096
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
import peft
import torch
from stack import interleaved_medians

from keras_gralora import GraLoRADense


def wait(tensor):
    """Blocks until `tensor` is computed (jax dispatches asynchronously)."""
    if hasattr(tensor, "block_until_ready"):
        tensor.block_until_ready()
    return tensor


def peft_layer(size, r, k):
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(size, size))
    config = peft.GraloraConfig(r=r, gralora_k=k, alpha=2 * r, target_modules=["proj"], init_weights=False)
    return peft.get_peft_model(model, config).base_model.model.proj


def keras_layer_like(module, size, r, k):
    layer = GraLoRADense(size, r=r, k=k, init_weights=False)
    layer.build((None, size))
    layer.kernel.assign(module.base_layer.weight.detach().numpy().T)
    a, b = layer.adapter("default").variables
    a.assign(module.gralora_A["default"].detach().numpy())
    b.assign(module.gralora_B["default"].detach().numpy())
    return layer


def interleaved_merge_medians(pairs, steps):
    """`{name: median seconds of merge()}`: each round merges (timed) and unmerges (untimed) every pair in turn."""
    for merge, unmerge in pairs.values():  # warm-up
        merge()
        unmerge()
    times = {name: [] for name in pairs}
    for _ in range(steps):
        for name, (merge, unmerge) in pairs.items():
            start = time.perf_counter()
            merge()
            times[name].append(time.perf_counter() - start)
            unmerge()
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--r", type=int, default=32)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--steps", type=int, default=7)
    args = parser.parse_args()
    backend = keras.backend.backend()
    for size in args.sizes:
        module = peft_layer(size, args.r, args.k)
        layer = keras_layer_like(module, size, args.r, args.k)
        np.testing.assert_allclose(  # same weights, same delta: the timings compare like with like
            keras.ops.convert_to_numpy(layer.delta_kernel()),
            module.get_delta_weight("default").detach().numpy().T,
            rtol=1e-4,
            atol=1e-6,
        )
        with torch.no_grad():
            delta = interleaved_medians(
                {"ours": lambda: wait(layer.delta_kernel()), "peft": lambda: module.get_delta_weight("default")},
                args.steps,
            )
            merge = interleaved_merge_medians(
                {
                    "ours": (lambda: (layer.merge(), wait(layer.kernel.value)), layer.unmerge),
                    "peft": (module.merge, module.unmerge),
                },
                args.steps,
            )
            timings = {"delta": (delta["ours"], delta["peft"]), "merge": (merge["ours"], merge["peft"])}
        for name, (ours, theirs) in timings.items():
            print(
                json.dumps(
                    {
                        "bench": name,
                        "backend": backend,
                        "config": f"{size}x{size} r={args.r} k={args.k}",
                        "ms": 1000 * ours,
                        "peft_ms": 1000 * theirs,
                        "vs_peft": ours / theirs,
                    }
                )
            )


if __name__ == "__main__":
    main()
