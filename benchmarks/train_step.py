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

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
from stack import interleaved_medians, stack, stack_arguments, stack_data, train_on_batch_step


def main():
    parser = argparse.ArgumentParser()
    stack_arguments(parser, steps=7)  # --steps: timed round-robin rounds
    args = parser.parse_args()
    x, y = stack_data(args.batch, args.seq, args.width)
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
