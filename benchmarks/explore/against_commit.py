"""Train step of this checkout's GraLoRA vs an earlier commit's, interleaved in one process.

The earlier commit's `keras_gralora/` is read from git and imported under
another package name, so both versions train the same stack (same weights,
same data) step by step, round robin, after warm-up. Each repeat gives the
median step time of each version; the ratio new / old is reported as min /
median / max over repeats. Prints one JSON line per configuration.

    KERAS_BACKEND=torch python benchmarks/against_commit.py --commit c3d7f2d --repeat 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/stack.py

import keras
from stack import interleaved, stack, stack_arguments, stack_data

import keras_gralora

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
OLD = "keras_gralora_at_commit"


def import_commit(commit):
    """`keras_gralora` as of `commit`, imported as the package `keras_gralora_at_commit`."""
    folder = tempfile.mkdtemp()
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit, "keras_gralora"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        text = subprocess.run(
            ["git", "show", f"{commit}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        target = os.path.join(folder, name.replace("keras_gralora", OLD, 1))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(text.replace("keras_gralora", OLD))
    sys.path.insert(0, folder)
    return __import__(OLD)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--commit", required=True)
    args = stack_arguments(parser).parse_args()
    old = import_commit(args.commit)
    x, y = stack_data(args.batch, args.seq, args.width)
    for k, hybrid_r in ((2, 0), (2, 8), (4, 0), (4, 8)):
        keras.utils.set_random_seed(0)
        new_model, old_model = (
            stack("gralora", args.width, args.depth, args.r, k, hybrid_r, dense=package.GraLoRADense)
            for package in (keras_gralora, old)
        )
        for model in (new_model, old_model):
            model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        old_model.set_weights(new_model.get_weights())  # same variables, same order in both versions
        ratios, seconds = [], []
        for _ in range(args.repeat):
            new_s, old_s = interleaved([new_model, old_model], x, y, args.steps)
            ratios.append(new_s / old_s)
            seconds.append((new_s, old_s))
        print(
            json.dumps(
                {
                    "bench": "against_commit",
                    "backend": keras.backend.backend(),
                    "commit": args.commit,
                    "config": f"k={k} hybrid_r={hybrid_r}",
                    "new_ms": [round(1000 * s[0], 1) for s in seconds],
                    "old_ms": [round(1000 * s[1], 1) for s in seconds],
                    "ratio_min": min(ratios),
                    "ratio_median": statistics.median(ratios),
                    "ratio_max": max(ratios),
                }
            )
        )
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
