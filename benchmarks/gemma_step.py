"""Train step, memory and decoding of the real Gemma 3 270M: GraLoRA vs Keras' own LoRA (and PEFT on torch).

Every configuration adapts the same layers (the backbone's default targets,
query and value of each of the 18 blocks, as KerasHub's `enable_lora`) at
the same r=32, from the same pretrained weights, on the same token batch,
with the same optimizer (AdamW) and the causal-LM loss over every position
(so the 262,144-token output head runs at full size, as in real
fine-tuning):

- `keras-lora`: KerasHub's `backbone.enable_lora(32)`;
- `gralora k=K h=H`: `backbone.enable_gralora(r=32, k=K, hybrid_r=H)`;
- `head`: the output head alone (a trainable input projection, the frozen
  tied embedding as the head, the same loss): the share of a step that no
  adapter method can save;
- on torch with `--peft`: PEFT's GraLoRA and LoRA on transformers'
  `Gemma3ForCausalLM` from the same checkpoint (q_proj, v_proj), stepped by
  hand (forward, loss, backward, AdamW).

`--mode time` builds them all in one process and times them round robin
after warm-up: `--repeat` blocks of `--rounds` rounds, each block's median
kept, the median and range of those reported (peak memory:
`gemma_memory.py`). `--mode decode` times `generate` (batch
1 and 8, 32 new tokens) with the adapters unmerged and merged, beside
Keras LoRA (unmerged: KerasHub's LoRA has no merge). `--mode profile`
(torch) profiles one step of Keras LoRA, GraLoRA and PEFT's two and sums
the self CPU time by kind of op: matmuls, copies, softmax and loss, the
accuracy metric's argmax, other.

    KERAS_BACKEND=torch python benchmarks/gemma_step.py --mode time --peft
    KERAS_BACKEND=jax python benchmarks/gemma_step.py --mode decode
    KERAS_BACKEND=torch python benchmarks/gemma_step.py --mode profile

Its lines, collected in `docs/gemma-step.jsonl`, are drawn by `gemma_figures.py`.
"""

import argparse
import json
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
from stack import interleaved_medians

import keras_gralora

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import gemma_model

R = 32
CONFIGS = ["keras-lora", "gralora k=2 h=0", "gralora k=2 h=8", "gralora k=4 h=0", "gralora k=4 h=8", "head"]
PEFT_CONFIGS = ("peft gralora k=2", "peft lora")


def batch(size, length, vocabulary, seed=0):
    """Token ids (the prompt) and next-token targets, from real-vocabulary ids."""
    ids = np.random.default_rng(seed).integers(2, vocabulary, (size, length + 1)).astype("int32")
    return {"token_ids": ids[:, :-1], "padding_mask": np.ones((size, length), bool)}, ids[:, 1:]


def backbones(count):
    """`count` copies of the pretrained backbone (one load, then the weights copied)."""
    first = keras_hub.models.Gemma3Backbone.from_preset(gemma_model.preset_dir(verbose=False))
    weights = first.get_weights()
    copies = [first]
    for _ in range(count - 1):
        copy = keras_hub.models.Gemma3Backbone.from_config(first.get_config())
        copy.set_weights(weights)
        copies.append(copy)
    return copies


def adapted_lm(backbone, config):
    """A `Gemma3CausalLM` on `backbone` with configuration `config`'s adapters, compiled."""
    if config == "keras-lora":
        backbone.enable_lora(R)
    else:
        k, h = (int(part.split("=")[1]) for part in config.split()[1:])
        backbone.enable_gralora(r=R, k=k, hybrid_r=h)
    lm = keras_hub.models.Gemma3CausalLM(preprocessor=None, backbone=backbone)
    # KerasHub's default compile: the loss and its token accuracy (PEFT's loop computes the loss only)
    lm.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(True))
    return lm


def head_model(backbone, length):
    """The output head's share: a trainable projection, then the frozen tied embedding as logits, same loss."""
    inputs = keras.Input((length, backbone.hidden_dim))
    hidden = keras.layers.Dense(backbone.hidden_dim)(inputs)
    head = keras.layers.Dense(backbone.vocabulary_size, use_bias=False, trainable=False)
    model = keras.Model(inputs, head(hidden))
    head.kernel.assign(keras.ops.transpose(backbone.token_embedding.embeddings))
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(True))
    return model


def keras_steps(configs, x, y):
    steps, models = {}, backbones(len(configs))
    for config, backbone in zip(configs, models):
        if config == "head":
            hidden = np.random.default_rng(1).standard_normal((*y.shape, backbone.hidden_dim)).astype("float32")
            model = head_model(backbone, y.shape[1])
            steps[config] = lambda m=model, h=hidden: m.train_on_batch(h, y)
        else:
            lm = adapted_lm(backbone, config)
            steps[config] = lambda m=lm: m.train_on_batch(x, y)
    return steps


def peft_steps(x, y, names=PEFT_CONFIGS):
    """PEFT's GraLoRA (k=2) and LoRA at r=32 on transformers' Gemma 3, stepped by hand (torch); `names`: which."""
    import peft
    import torch
    import transformers

    directory = gemma_model.preset_dir(verbose=False)
    ids, labels = torch.as_tensor(x["token_ids"], dtype=torch.long), torch.as_tensor(y, dtype=torch.long)
    steps = {}
    for name, config in {
        "peft gralora k=2": peft.GraloraConfig(r=R, gralora_k=2, alpha=2 * R, target_modules=["q_proj", "v_proj"]),
        "peft lora": peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=["q_proj", "v_proj"]),
    }.items():
        if name not in names:
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32)
        model = peft.get_peft_model(model, config).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model=model, optimizer=optimizer):
            logits = model(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss)

        steps[name] = step
    return steps


def time_blocks(steps, rounds, repeat, warmup=2):
    """`{name: [median seconds of each block]}`: round-robin steps, `repeat` blocks of `rounds` rounds."""
    blocks = {name: [] for name in steps}
    for block in range(repeat):
        for name, median in interleaved_medians(steps, rounds, warmup if block == 0 else 0).items():
            blocks[name].append(median)
    return blocks


def report(**fields):
    print(json.dumps({"bench": "gemma_step", "backend": keras.backend.backend(), **fields}), flush=True)


def time_mode(args, x, y):
    steps = keras_steps(CONFIGS, x, y)
    if args.peft:
        steps.update(peft_steps(x, y))
    blocks = time_blocks(steps, args.rounds, args.repeat)
    tokens = y.size
    for name, values in blocks.items():
        median = statistics.median(values)
        ratios = [value / lora for value, lora in zip(values, blocks["keras-lora"])]  # block by block
        report(
            mode="time",
            config=name,
            ms=round(1000 * median, 1),
            ms_range=[round(1000 * min(values), 1), round(1000 * max(values), 1)],
            tokens_per_s=round(tokens / median, 1),
            vs_keras_lora=round(statistics.median(ratios), 3),
            vs_keras_lora_range=[round(min(ratios), 3), round(max(ratios), 3)],
        )


OP_KINDS = {  # torch profiler op -> what it is, for `--mode profile`
    "matmul": ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear", "aten::einsum"),
    "copies": ("aten::copy_", "aten::contiguous", "aten::clone", "aten::cat", "aten::fill_", "aten::zero_"),
    "softmax and loss": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss"),
    "accuracy metric": ("aten::argmax",),
}


def profile_mode(args, x, y):
    """torch: one profiled step per configuration; self CPU time by kind of op (where a step's time goes)."""
    from torch.profiler import ProfilerActivity, profile

    steps = keras_steps(["keras-lora", "gralora k=2 h=0"], x, y)
    steps.update(peft_steps(x, y))
    for name, step in steps.items():
        for _ in range(2):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step()
        ms = {kind: 0.0 for kind in (*OP_KINDS, "other")}
        for event in profiler.key_averages():
            kind = next((kind for kind, ops in OP_KINDS.items() if event.key in ops), "other")
            ms[kind] += event.self_cpu_time_total / 1000
        report(mode="profile", config=name, total_ms=round(sum(ms.values())), **{k: round(v) for k, v in ms.items()})


def decode_mode(args):
    configs = ["keras-lora", "gralora k=2 h=0", "gralora k=2 h=0 merged"]
    models = backbones(len(configs))
    lms = {}
    for config, backbone in zip(configs, models):
        lms[config] = adapted_lm(backbone, config.replace(" merged", ""))
        if config.endswith("merged"):
            keras_gralora.merge_gralora(backbone)
    preset = gemma_model.preset_dir(verbose=False)
    tokenizer = keras_hub.models.Gemma3Tokenizer.from_preset(preset)
    prompt_length, new = 16, 32
    for lm in lms.values():
        lm.preprocessor = keras_hub.models.Gemma3CausalLMPreprocessor(tokenizer, sequence_length=prompt_length + new)
        lm.compile(sampler="greedy")
    for size in (1, 8):
        prompts = ["The capital of France is"] * size
        steps = {
            name: (lambda lm=lm: lm.generate(prompts, max_length=prompt_length + new, stop_token_ids=None))
            for name, lm in lms.items()
        }
        blocks = time_blocks(steps, args.rounds, args.repeat, warmup=1)
        for name, values in blocks.items():
            median = statistics.median(values)
            ratios = [value / lora for value, lora in zip(values, blocks["keras-lora"])]
            report(
                mode="decode",
                batch=size,
                config=name,
                ms_per_token=round(1000 * median / new, 2),
                ms_per_token_range=[round(1000 * min(values) / new, 2), round(1000 * max(values) / new, 2)],
                vs_keras_lora=round(statistics.median(ratios), 3),
                vs_keras_lora_range=[round(min(ratios), 3), round(max(ratios), 3)],
            )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["time", "decode", "profile"], default="time")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peft", action="store_true", help="torch: PEFT GraLoRA and LoRA beside, same process")
    args = parser.parse_args()
    x, y = batch(args.batch, args.length, 262144)
    if args.mode == "time":
        time_mode(args, x, y)
    elif args.mode == "profile":
        profile_mode(args, x, y)
    else:
        decode_mode(args)


if __name__ == "__main__":
    main()
