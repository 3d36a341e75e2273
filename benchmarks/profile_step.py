"""Where a torch train step spends its time, op by op: GraLoRA vs Keras LoRA vs the floor.

torch runs eagerly, so its profiler sees every op the step dispatches. For
each configuration of the train-step stack (`--model stack`, 4 x Dense 1024,
16 x 128 tokens, r=32) or of pretrained MiniLM (`--model minilm`, q/v
adapted, r=8, 16 x 64 tokens) it prints, per step: the profiled time,
the number of aten ops dispatched, and the ops that took the most time
(self time, grouped by name and input shapes). The profiler adds its own
overhead, so read shares and counts here and take times from
`train_step.py` / `minilm_fit.py`.

    python benchmarks/profile_step.py --model stack --top 8
"""

import argparse
import collections
import json
import os

os.environ["KERAS_BACKEND"] = "torch"

import numpy as np  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from train_step import stack, train_on_batch_step  # noqa: E402


def stack_steps():
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((16, 128, 1024)).astype("float32") for _ in range(2))
    kinds = {"floor": ("floor", {}), "Keras LoRA": ("lora", {}), "GraLoRA k=2": ("gralora", {"k": 2}),
             "GraLoRA k=4": ("gralora", {"k": 4})}
    return {name: train_on_batch_step(stack(kind, 1024, 4, 32, **extra), x, y) for name, (kind, extra) in kinds.items()}


def minilm_steps():
    from minilm_fit import adapted_classifier, token_batch

    x, y = token_batch(30522, 16, 64)
    models = {"Keras LoRA": adapted_classifier("lora", 8), "GraLoRA k=2": adapted_classifier("gralora", 8)}
    return {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}


def profiled(step, steps):
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
    steps = stack_steps() if args.model == "stack" else minilm_steps()
    for name, step in steps.items():
        ms, ops, top = profiled(step, args.steps)
        kinds = collections.Counter()
        for event in top:
            kinds[event.key] += event.self_cpu_time_total / args.steps / 1000
        print(json.dumps({
            "bench": "profile_step", "backend": "torch", "model": args.model, "config": name,
            "profiled_ms": round(ms, 1), "aten_ops": round(ops),
            "by_op_ms": {k: round(v, 1) for k, v in kinds.most_common(args.top)},
            "top": [[e.key, e.input_shapes, round(e.self_cpu_time_total / args.steps / 1000, 1), e.count // args.steps]
                    for e in top[: args.top]],
        }))


if __name__ == "__main__":
    main()
