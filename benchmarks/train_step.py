"""Train-step time of a stack of adapted Dense layers, on the backend in KERAS_BACKEND.

All configurations live in one process and are timed interleaved: after
warm-up, each round runs one step of every configuration in turn, so machine
noise lands on all of them alike; each configuration's median over the
rounds is reported. GraLoRA (k, hybrid_r variants) vs Keras' own LoRA
(`Dense(lora_rank=r)`, its biases frozen like GraLoRA's: both train the
adapter factors only) at the same r vs the floor (kernels frozen, biases
trained: forward plus the input and bias gradients). Prints one JSON line
per configuration (see `benchmarks/run.py`, which repeats whole runs).

    KERAS_BACKEND=torch python benchmarks/train_step.py --width 1024 --steps 7
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

from keras_gralora import GraLoRADense


def stack(kind, width, depth, r, k=2, hybrid_r=0):
    """`depth` Dense layers of `width`: GraLoRA, Keras LoRA, or the floor.

    The floor freezes the kernels and trains the biases only: forward, the
    input gradients between layers and the bias gradients, the least any
    adapter method pays. (It replaced a trainable gate below a frozen stack,
    which also paid the first layer's input gradient and hit an XLA CPU slow
    path on jax: 5.5 s per step vs 0.5 s for Keras LoRA.)
    """
    layers = [keras.Input((None, width))]
    for _ in range(depth):
        if kind == "gralora":
            layers.append(GraLoRADense(width, r=r, k=k, hybrid_r=hybrid_r, init_weights=False))
        else:
            layers.append(keras.layers.Dense(width))
    model = keras.Sequential(layers)
    for layer in model.layers:
        if kind == "lora":
            layer.enable_lora(r)
            layer.bias.trainable = False  # the same trainable set as GraLoRA: the factors only
        elif kind == "floor":
            layer.kernel.trainable = False
    return model


def interleaved_medians(steps, rounds, warmup=2):
    """`{name: median seconds}` of each `steps[name]()` over `rounds` round-robin rounds after `warmup` each.

    Each step must wait for its result (e.g. return a Python float), so
    async backends are timed in full.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def compiled_jax_step(model, x, y):
    """The stack's loss (MSE) and gradients as XLA compiles them under jax (`memory.py`, `profile_step.py`)."""
    import jax

    def loss(trainable, non_trainable, x, y):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return keras.ops.mean((out - y) ** 2)

    arguments = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], x, y)
    return jax.jit(jax.value_and_grad(loss)).lower(*arguments).compile()


def train_on_batch_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return lambda: model.train_on_batch(x, y)  # returns Python floats: it waits for the step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--r", type=int, default=32)
    parser.add_argument("--steps", type=int, default=7, help="timed round-robin rounds")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    y = rng.standard_normal((args.batch, args.seq, args.width)).astype("float32")
    configs = [("floor", {}), ("lora", {})] + [("gralora", dict(k=k, hybrid_r=h)) for k in (2, 4) for h in (0, 8)]
    steps = {}
    for kind, extra in configs:
        name = kind if not extra else f"gralora k={extra['k']} hybrid_r={extra['hybrid_r']}"
        steps[name] = train_on_batch_step(stack(kind, args.width, args.depth, args.r, **extra), x, y)
    results = interleaved_medians(steps, args.steps)
    for name, seconds in results.items():
        print(
            json.dumps(
                {
                    "bench": "train_step",
                    "backend": keras.backend.backend(),
                    "config": name,
                    "ms": 1000 * seconds,
                    "vs_lora": seconds / results["lora"],
                }
            )
        )


if __name__ == "__main__":
    main()
