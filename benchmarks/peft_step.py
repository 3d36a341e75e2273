"""Train step on the torch backend: keras_gralora vs PEFT's GraLoRA and LoRA.

The same stack as `train_step.py` (Dense/Linear layers of one width, all
adapted), the same input tensors, SGD and MSE, timed side by side in one
process. PEFT is an optional benchmark dependency (`pip install -e .[peft]`).

    KERAS_BACKEND=torch python benchmarks/peft_step.py --steps 7
"""

import argparse
import json
import os

os.environ["KERAS_BACKEND"] = "torch"

import peft
import torch
from stack import interleaved_medians, stack, stack_arguments, train_on_batch_step

CONFIGS = [dict(k=k, hybrid_r=h) for k in (2, 4) for h in (0, 8)]


def peft_stack(width, depth, r, method, k=2, hybrid_r=0):
    torch.manual_seed(0)
    names = [f"dense_{i}" for i in range(depth)]
    model = torch.nn.Sequential()
    for name in names:
        model.add_module(name, torch.nn.Linear(width, width))
    if method == "lora":
        config = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=names)
    else:
        config = peft.GraloraConfig(
            r=r, gralora_k=k, hybrid_r=hybrid_r, alpha=2 * (r + hybrid_r), target_modules=names, init_weights=False
        )
    return peft.get_peft_model(model, config)


def peft_step(model, x, y):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main():
    parser = argparse.ArgumentParser()
    stack_arguments(parser, steps=7)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.seq, args.width, generator=generator)
    y = torch.randn(args.batch, args.seq, args.width, generator=generator)
    dims = (args.width, args.depth, args.r)
    steps = {"PEFT LoRA": peft_step(peft_stack(*dims, "lora"), x, y)}
    for config in CONFIGS:  # every configuration in one process, timed round-robin
        name = f"k={config['k']} hybrid_r={config['hybrid_r']}"
        steps[f"PEFT GraLoRA {name}"] = peft_step(peft_stack(*dims, "gralora", **config), x, y)
        steps[f"keras_gralora {name}"] = train_on_batch_step(stack("gralora", *dims, **config), x, y)
    seconds = interleaved_medians(steps, args.steps)
    peft_lora = seconds["PEFT LoRA"]
    rows = [
        (name, value, seconds.get(name.replace("keras_gralora", "PEFT GraLoRA")) if name.startswith("keras") else None)
        for name, value in seconds.items()
    ]
    for name, seconds, peft_gralora in rows:
        print(
            json.dumps(
                {
                    "bench": "peft_step",
                    "backend": "torch",
                    "config": name,
                    "ms": 1000 * seconds,
                    "vs_peft_lora": seconds / peft_lora,
                    "vs_peft_gralora": seconds / peft_gralora if peft_gralora else None,
                }
            )
        )


if __name__ == "__main__":
    main()
