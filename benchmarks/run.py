"""Runs every benchmark once per backend (one process each) and prints one table.

    python benchmarks/run.py                 # all backends
    python benchmarks/run.py --backends torch
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("jax", "torch", "tensorflow")


def run(script, backend, *args):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args], env=env, capture_output=True, text=True
    )
    if result.returncode:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"{script} failed on {backend}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--steps", default="9", help="timed steps per configuration (median reported)")
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        rows += run("train_step.py", backend, "--steps", args.steps)
    print("| backend | configuration | train step (ms, median) | / Keras LoRA |")
    print("|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['backend']} | {row['config']} | {row['ms']:.1f} | {row['vs_lora']:.2f} |")


if __name__ == "__main__":
    main()
