"""Runs every benchmark, one process per backend (and per memory configuration), and prints the tables.

    python benchmarks/run.py                       # everything, all backends (about 9 minutes on 2 cores)
    python benchmarks/run.py --backends torch --only train_step peft_step

Benchmarks: train_step (stack of Dense, GraLoRA vs Keras LoRA vs floor),
peft_step (torch backend vs PEFT), delta (delta_kernel/merge vs PEFT),
memory (peak RSS of training), minilm_fit (real backbone, tokens/s).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "torch", "tensorflow")
BENCHMARKS = ("train_step", "peft_step", "delta", "memory", "minilm_fit")
MEMORY_CONFIGS = (["--kind", "floor"], ["--kind", "lora"], ["--kind", "gralora", "--k", "2"], ["--kind", "gralora", "--k", "4", "--hybrid_r", "8"])


def run(script, backend, *args, **extra_env):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **extra_env}
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, f"{script}.py"), *args], env=env, capture_output=True, text=True
    )
    if result.returncode:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"{script} failed on {backend}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def measure(benchmark, backend, steps):
    if benchmark == "train_step":
        return run("train_step", backend, "--steps", steps)
    if benchmark == "peft_step":
        return run("peft_step", backend, "--steps", steps) if backend == "torch" else []
    if benchmark == "memory":
        # A fixed mmap threshold lets RSS follow live memory (see memory.py);
        # timings run with glibc's default, as users do.
        return [row for config in MEMORY_CONFIGS
                for row in run("memory", backend, *config, MALLOC_MMAP_THRESHOLD_="131072")]
    return run(benchmark, backend)


def table(title, header, rows):
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_tables(rows):
    by = {}
    for row in rows:
        by.setdefault(row["bench"], []).append(row)
    if "train_step" in by:
        table("Train step, 4 x Dense 1024, 16 x 128 tokens, r=32 (median ms; ratio to Keras LoRA)",
              ["backend", "configuration", "ms", "/ Keras LoRA"],
              [[r["backend"], r["config"], f"{r['ms']:.0f}", f"{r['vs_lora']:.2f}"] for r in by["train_step"]])
    if "peft_step" in by:
        table("Torch backend vs PEFT on an identical torch stack (median ms)",
              ["configuration", "ms", "/ PEFT LoRA", "/ PEFT GraLoRA"],
              [[r["config"], f"{r['ms']:.0f}", f"{r['vs_peft_lora']:.2f}",
                f"{r['vs_peft_gralora']:.2f}" if r["vs_peft_gralora"] else ""] for r in by["peft_step"]])
    deltas = by.get("delta", []) + by.get("merge", [])
    if deltas:
        table("delta_kernel() / merge() vs PEFT get_delta_weight / merge (torch), same weights (median ms)",
              ["backend", "what", "size", "ours", "PEFT", "ratio"],
              [[r["backend"], r["bench"], r["config"], f"{r['ms']:.1f}", f"{r['peft_ms']:.1f}", f"{r['vs_peft']:.2f}"]
               for r in sorted(deltas, key=lambda r: (r["backend"], r["bench"]))])
    if "memory" in by:
        lora = {r["backend"]: r["peak_mib"] for r in by["memory"] if r["config"] == "lora"}
        table("Peak memory of a train step of the train-step stack (MiB of RSS above start-up; steady state, after warm-up)",
              ["backend", "configuration", "MiB", "/ Keras LoRA"],
              [[r["backend"], r["config"], f"{r['peak_mib']:.0f}", f"{r['peak_mib'] / lora[r['backend']]:.2f}"]
               for r in by["memory"]])
    if "minilm_fit" in by:
        table("MiniLM (all-MiniLM-L6-v2) fit, q/v adapted, batch 16 x 64 tokens",
              ["backend", "configuration", "trainable", "tokens/s", "step / Keras LoRA"],
              [[r["backend"], r["config"], f"{r['trainable']:,}", f"{r['tokens_per_s']:.0f}", f"{r['vs_lora']:.2f}"]
               for r in by["minilm_fit"]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--only", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    parser.add_argument("--steps", default="5", help="timed train steps per configuration (median reported)")
    args = parser.parse_args()
    rows = []
    started = time.perf_counter()
    for backend in args.backends:
        for benchmark in args.only:
            start = time.perf_counter()
            rows += measure(benchmark, backend, args.steps)
            print(f"{benchmark} on {backend}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"all benchmarks: {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    print_tables(rows)


if __name__ == "__main__":
    main()
