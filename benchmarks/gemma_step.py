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
kept, the median and range of those reported. `--mode memory` measures
each configuration in fresh processes, round robin, `--repeat` times (peak
RSS of steady-state steps above the RSS before the model existed; on jax
also XLA's count of the compiled step's temporaries), and reports the
median and range; `--config C` is one such process. `--mode decode` times `generate` (batch
1 and 8, 32 new tokens) with the adapters unmerged and merged, beside
Keras LoRA (unmerged: KerasHub's LoRA has no merge).

    KERAS_BACKEND=torch python benchmarks/gemma_step.py --mode time --peft
    KERAS_BACKEND=jax python benchmarks/gemma_step.py --mode memory --repeat 3
    KERAS_BACKEND=jax python benchmarks/gemma_step.py --mode decode

Its lines, collected in `docs/gemma-step.jsonl`, are drawn by `gemma_figures.py`.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
from stack import interleaved_medians, reset_peak_rss, rss_mib

import keras_gralora

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import gemma_model

R = 32
CONFIGS = ["keras-lora", "gralora k=2 h=0", "gralora k=2 h=8", "gralora k=4 h=0", "gralora k=4 h=8", "head"]


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


def peft_steps(x, y):
    """PEFT's GraLoRA (k=2) and LoRA at r=32 on transformers' Gemma 3, stepped by hand (torch)."""
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


def memory_mode(args, x, y):
    """One configuration in this process. Garbage is collected before each reading: a step's
    outputs caught in reference cycles (a 256 MiB logits tensor here) otherwise stay resident
    until Python's collector happens to run, which differs from one model to the next."""
    keras.ops.convert_to_numpy(keras.ops.add(np.ones(4, "float32"), 1.0))  # the backend started before the baseline
    gc.collect()
    baseline = rss_mib("VmRSS")
    (backbone,) = backbones(1)
    lm = adapted_lm(backbone, args.config)
    for _ in range(2):
        lm.train_on_batch(x, y)
    gc.collect()
    settled = rss_mib("VmRSS")
    reset_peak_rss()
    for _ in range(args.rounds):
        lm.train_on_batch(x, y)
        gc.collect()
    peak = rss_mib("VmHWM")
    temp = None
    if keras.backend.backend() == "jax":
        temp = round(xla_temp_mib(lm, x, y), 1)
    return dict(peak_mib=round(peak - baseline, 1), step_mib=round(peak - settled, 1), xla_temp_mib=temp)


def memory_processes(args):
    """Every configuration in `--repeat` fresh processes each, round robin; median and range per field."""
    results = {config: [] for config in CONFIGS[:-1]}
    for _ in range(args.repeat):
        for config in results:
            command = [sys.executable, os.path.abspath(__file__), "--mode", "memory", "--config", config]
            command += ["--batch", str(args.batch), "--length", str(args.length), "--rounds", str(args.rounds)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[config].append(json.loads(out.strip().splitlines()[-1]))
    lora = statistics.median(run["peak_mib"] for run in results["keras-lora"])
    for config, runs in results.items():
        fields = {}
        for field in ("peak_mib", "step_mib", "xla_temp_mib"):
            values = [run[field] for run in runs if run[field] is not None]
            if values:
                fields[field] = statistics.median(values)
                fields[field + "_range"] = [min(values), max(values)]
        report(
            mode="memory", config=config, repeats=len(runs), vs_keras_lora=round(fields["peak_mib"] / lora, 3), **fields
        )


def xla_temp_mib(lm, x, y):
    """XLA's count of the temporaries of the compiled loss-and-gradients step (jax)."""
    import jax

    loss_fn = keras.losses.SparseCategoricalCrossentropy(True)

    def loss(trainable, non_trainable, x, y):
        logits, _ = lm.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits)

    arguments = ([v.value for v in lm.trainable_variables], [v.value for v in lm.non_trainable_variables], x, y)
    return jax.jit(jax.value_and_grad(loss)).lower(*arguments).compile().memory_analysis().temp_size_in_bytes / 2**20


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
    parser.add_argument("--mode", choices=["time", "memory", "decode"], default="time")
    parser.add_argument("--config", choices=CONFIGS[:-1], help="memory: this configuration only, in this process")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peft", action="store_true", help="torch: PEFT GraLoRA and LoRA beside, same process")
    args = parser.parse_args()
    x, y = batch(args.batch, args.length, 262144)
    if args.mode == "time":
        time_mode(args, x, y)
    elif args.mode == "memory" and args.config:
        print(json.dumps(memory_mode(args, x, y)), flush=True)
    elif args.mode == "memory":
        memory_processes(args)
    else:
        decode_mode(args)


if __name__ == "__main__":
    main()
