"""A train step op by op, on the backend in KERAS_BACKEND: GraLoRA vs Keras LoRA vs the floor.

For each configuration of the train-step stack (`--model stack`, 4 x Dense
1024, 16 x 128 tokens, r=32) or of pretrained MiniLM (`--model minilm`, q/v
adapted, r=8, 16 x 64 tokens, torch only):

- torch runs eagerly, so its profiler sees every op the step dispatches: per
  step, the profiled time, the number of aten ops, and the ops that took the
  most time (self time, by name and input shapes). The profiler adds its own
  overhead: read shares and counts here, take times from `train_step.py`.
- jax: the instructions of the compiled step (loss and gradients) that XLA
  kept at the top level after its optimizations, by opcode (a `fusion` runs
  as one kernel; a top-level `transpose` or `copy` is a pass over memory).
- tensorflow: the op types of the step's graph (forward and `GradientTape`
  gradients) as Keras builds it on a CPU-only machine, without XLA.

    KERAS_BACKEND=torch python benchmarks/profile_step.py --model stack --top 8
"""

import argparse
import collections
import json
import os
import re
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/stack.py

import keras
from stack import compiled_jax_step, stack, stack_data, train_on_batch_step

KINDS = {
    "floor": ("floor", {}),
    "Keras LoRA": ("lora", {}),
    "GraLoRA k=2": ("gralora", {"k": 2}),
    "GraLoRA k=4": ("gralora", {"k": 4}),
}


def stack_models():
    return {name: stack(kind, 1024, 4, 32, **extra) for name, (kind, extra) in KINDS.items()}


def stack_steps():
    x, y = stack_data()
    return {name: train_on_batch_step(model, x, y) for name, model in stack_models().items()}


def xla_opcodes(model, x, y):
    """`{opcode: count}` of the top-level instructions of the compiled step (jax)."""
    text = compiled_jax_step(model, x, y).as_text()
    entry = text[text.index("\nENTRY ") :]
    entry = entry[: entry.index("\n}")]
    return collections.Counter(re.findall(r"= [^=]*? ([a-z][a-z0-9-]*)\(", entry))


def graph_op_types(model, x, y):
    """`{op type: count}` of the step's tensorflow graph: forward and tape gradients."""
    import tensorflow as tf

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    return collections.Counter(op.type for op in step.get_concrete_function(x, y).graph.get_operations())


def count_ops(args):
    """jax and tensorflow: the compiled step's or the graph's ops by kind, per configuration."""
    x, y = stack_data()
    count = xla_opcodes if keras.backend.backend() == "jax" else graph_op_types
    for name, model in stack_models().items():
        counts = count(model, x, y)
        print(
            json.dumps(
                {
                    "bench": "profile_step",
                    "backend": keras.backend.backend(),
                    "model": "stack",
                    "config": name,
                    "ops": sum(counts.values()),
                    "by_op": dict(counts.most_common(args.top)),
                }
            )
        )


def minilm_steps():
    from minilm_fit import adapted_classifier, token_batch

    x, y = token_batch(30522, 16, 64)
    models = {"Keras LoRA": adapted_classifier("lora", 8), "GraLoRA k=2": adapted_classifier("gralora", 8)}
    return {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}


def profiled(step, steps):
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    by_shape = prof.key_averages(group_by_input_shape=True)
    aten = [e for e in by_shape if e.key.startswith("aten::")]
    total_us = sum(e.self_cpu_time_total for e in by_shape)
    top = sorted(aten, key=lambda e: -e.self_cpu_time_total)
    return total_us / steps / 1000, sum(e.count for e in aten) / steps, top


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["stack", "minilm"], default="stack")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    if keras.backend.backend() != "torch":
        return count_ops(args)
    steps = stack_steps() if args.model == "stack" else minilm_steps()
    for name, step in steps.items():
        ms, ops, top = profiled(step, args.steps)
        kinds = collections.Counter()
        for event in top:
            kinds[event.key] += event.self_cpu_time_total / args.steps / 1000
        print(
            json.dumps(
                {
                    "bench": "profile_step",
                    "backend": "torch",
                    "model": args.model,
                    "config": name,
                    "profiled_ms": round(ms, 1),
                    "aten_ops": round(ops),
                    "by_op_ms": {k: round(v, 1) for k, v in kinds.most_common(args.top)},
                    "top": [
                        [
                            e.key,
                            e.input_shapes,
                            round(e.self_cpu_time_total / args.steps / 1000, 1),
                            e.count // args.steps,
                        ]
                        for e in top[: args.top]
                    ],
                }
            )
        )


if __name__ == "__main__":
    main()
