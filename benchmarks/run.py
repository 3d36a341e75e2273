"""Runs every benchmark, one process per backend (and per memory configuration), and prints the tables.

    python benchmarks/run.py                       # the headline set, all backends
    python benchmarks/run.py --backends torch --only train_step peft_step --repeat 3

Each benchmark compares its configurations interleaved in one process;
`--repeat N` runs it N times (fresh processes) and the tables show each
figure's median over the repeats with its min-max spread.

The headline set (the one-off explorations are in `benchmarks/explore/`):
train_step (stack of Dense, GraLoRA vs Keras LoRA vs floor),
peft_step (torch backend vs PEFT), delta (delta_kernel/merge vs PEFT),
memory (peak RSS of training), minilm_fit (real backbone, tokens/s),
import_time (what `import keras_gralora` adds to `import keras`), and the
benchmarks that print their own tables, run once each with their defaults:
quantized_step (int8 base vs Keras LoRA int8), quantized_training (do
quantized causal LMs train), lora_conversion (exact LoRA vs PEFT's
convert_to_lora, torch), routing (routed batches, hot-swap; every backend),
sharded_step and sharded_memory (keras.distribution, jax).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "torch", "tensorflow")
BENCHMARKS = ("train_step", "peft_step", "delta", "memory", "minilm_fit", "import_time")
OWN_TABLES = {  # benchmark: (backends it runs on, arguments); each prints its own table, run once
    "quantized_step": (BACKENDS, ["--mode", "int8"]),
    "quantized_training": (("torch",), []),
    "lora_conversion": (("torch",), []),
    "routing": (("jax",), ["--all"]),  # --all starts every backend itself
    "sharded_step": (("jax",), []),
    "sharded_memory": (("jax",), []),
}
MEMORY_CONFIGS = (
    ["--kind", "floor"],
    ["--kind", "lora"],
    ["--kind", "gralora", "--k", "2"],
    ["--kind", "gralora", "--k", "4", "--hybrid_r", "8"],
)  # peak RSS: a process each


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
    if benchmark == "peft_step":  # torch against torch's own code
        return run(benchmark, backend, "--steps", steps) if backend == "torch" else []
    if benchmark == "memory":
        # A fixed mmap threshold lets RSS follow live memory (see memory.py);
        # timings run with glibc's default, as users do.
        return [
            row for config in MEMORY_CONFIGS for row in run("memory", backend, *config, MALLOC_MMAP_THRESHOLD_="131072")
        ]
    return run(benchmark, backend)


def aggregate(runs):
    """One row per (bench, backend, config): every float a list over the repeats, in `runs` order."""
    merged = {}
    for row in (row for run_rows in runs for row in run_rows):
        key = (row["bench"], row["backend"], row["config"])
        into = merged.setdefault(key, {k: [] if isinstance(v, float) else v for k, v in row.items()})
        for k, v in row.items():
            if isinstance(into[k], list):
                into[k].append(v)
    return list(merged.values())


def spread(values, digits=2):
    """`median` of one value, `median (min-max)` of several."""
    values = sorted(values) if isinstance(values, list) else [values]
    median = values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1 :][:2]) / 2
    text = f"{median:.{digits}f}"
    return text if len(values) == 1 else f"{text} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"


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
    if "import_time" in by:
        seconds = lambda v: f"{v[0]:.2f} ({v[1]:.2f}-{v[2]:.2f})"  # noqa: E731  median (min-max) of its repeats
        table(
            "Import time in fresh processes (s, median (min-max))",
            ["backend", "import keras", "then import keras_gralora", "(then import keras_hub, for scale)"],
            [
                [r["backend"], seconds(r["keras_s"]), seconds(r["keras_gralora_s"]), seconds(r["keras_hub_s"])]
                for r in by["import_time"]
            ],
        )
    if "train_step" in by:
        table(
            "Train step, 4 x Dense 1024, 16 x 128 tokens, r=32 (median ms; ratio to Keras LoRA)",
            ["backend", "configuration", "ms", "/ Keras LoRA"],
            [[r["backend"], r["config"], spread(r["ms"], 0), spread(r["vs_lora"])] for r in by["train_step"]],
        )
    if "peft_step" in by:
        table(
            "Torch backend vs PEFT on an identical torch stack (median ms)",
            ["configuration", "ms", "/ PEFT LoRA", "/ PEFT GraLoRA"],
            [
                [
                    r["config"],
                    spread(r["ms"], 0),
                    spread(r["vs_peft_lora"]),
                    spread(r["vs_peft_gralora"]) if r["vs_peft_gralora"] else "",
                ]
                for r in by["peft_step"]
            ],
        )
    deltas = by.get("delta", []) + by.get("merge", [])
    if deltas:
        table(
            "delta_kernel() / merge() vs PEFT get_delta_weight / merge (torch), same weights (median ms)",
            ["backend", "what", "size", "ours", "PEFT", "ratio"],
            [
                [
                    r["backend"],
                    r["bench"],
                    r["config"],
                    spread(r["ms"], 1),
                    spread(r["peft_ms"], 1),
                    spread(r["vs_peft"]),
                ]
                for r in sorted(deltas, key=lambda r: (r["backend"], r["bench"]))
            ],
        )
    if "memory" in by:
        lora = {r["backend"]: r for r in by["memory"] if r["config"] == "lora"}
        ratio = lambda r, key: [a / b for a, b in zip(r[key], lora[r["backend"]][key])]  # noqa: E731  per repeat
        xla = lambda r: (  # noqa: E731  jax only
            f"{spread(r['xla_temp_mib'], 1)} ({spread(ratio(r, 'xla_temp_mib'))})" if r["xla_temp_mib"] else ""
        )
        table(
            "Memory of a train step of the train-step stack (MiB; steady state, after warm-up; see memory.py)",
            [
                "backend",
                "configuration",
                "peak RSS above start-up",
                "/ Keras LoRA",
                "step's own RSS growth",
                "XLA temporaries (jax)",
            ],
            [
                [
                    r["backend"],
                    r["config"],
                    spread(r["peak_mib"], 0),
                    spread(ratio(r, "peak_mib")),
                    spread(r["step_mib"], 0),
                    xla(r),
                ]
                for r in by["memory"]
            ],
        )
    if "minilm_fit" in by:
        table(
            "MiniLM (all-MiniLM-L6-v2) fit, q/v adapted, batch 16 x 64 tokens",
            ["backend", "configuration", "trainable", "tokens/s", "step / Keras LoRA"],
            [
                [r["backend"], r["config"], f"{r['trainable']:,}", spread(r["tokens_per_s"], 0), spread(r["vs_lora"])]
                for r in by["minilm_fit"]
            ],
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--only", nargs="+", default=[*BENCHMARKS, *OWN_TABLES], choices=[*BENCHMARKS, *OWN_TABLES])
    parser.add_argument("--steps", default="5", help="timed train steps per configuration (median reported)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each benchmark (fresh processes)")
    args = parser.parse_args()
    runs = []
    started = time.perf_counter()
    for repeat in range(args.repeat):
        for backend in args.backends:
            for benchmark in [b for b in args.only if b in BENCHMARKS]:
                start = time.perf_counter()
                runs.append(measure(benchmark, backend, args.steps))
                print(
                    f"{benchmark} on {backend}, run {repeat + 1}/{args.repeat}: {time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print_tables(aggregate(runs))
    for benchmark in [b for b in args.only if b in OWN_TABLES]:
        backends, arguments = OWN_TABLES[benchmark]
        for backend in [b for b in backends if b in args.backends or benchmark == "routing"]:
            print(f"\n**{benchmark}** ({backend}, {' '.join(arguments) or 'defaults'})\n", flush=True)
            run_own_table(benchmark, backend, arguments)
    print(f"all benchmarks: {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)


def run_own_table(script, backend, arguments):
    """Runs a benchmark that prints its own table, passing its output through."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, os.path.join(HERE, f"{script}.py"), *arguments], env=env)
    if result.returncode:
        raise SystemExit(f"{script} failed on {backend}")


if __name__ == "__main__":
    main()
