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

import keras
import numpy as np
from train_step import interleaved_medians

import keras_gralora

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def stack(package, width, depth, r, k, hybrid_r):
    layers = [keras.Input((None, width))]
    layers += [package.GraLoRADense(width, r=r, k=k, hybrid_r=hybrid_r, init_weights=False) for _ in range(depth)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def interleaved(models, x, y, steps, warmup=2):
    """Median seconds of `train_on_batch` per model, steps taken round robin (`train_step.interleaved_medians`)."""
    medians = interleaved_medians(
        {i: (lambda m=m: m.train_on_batch(x, y)) for i, m in enumerate(models)}, steps, warmup
    )  # train_on_batch returns Python floats: it waits for the step
    return [medians[i] for i in range(len(models))]


def stack_arguments(parser):
    """The stack's size and timing flags, shared with `quantized_step.py`."""
    for name, default in (
        ("width", 1024),
        ("depth", 4),
        ("batch", 16),
        ("seq", 128),
        ("r", 32),
        ("steps", 5),
        ("repeat", 3),
    ):
        parser.add_argument(f"--{name}", type=int, default=default)
    return parser


def stack_data(args, rng):
    """Random inputs and targets `[batch, seq, width]` for the stack."""
    return [rng.standard_normal((args.batch, args.seq, args.width)).astype("float32") for _ in range(2)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--commit", required=True)
    args = stack_arguments(parser).parse_args()
    old = import_commit(args.commit)
    x, y = stack_data(args, np.random.default_rng(0))
    for k, hybrid_r in ((2, 0), (2, 8), (4, 0), (4, 8)):
        keras.utils.set_random_seed(0)
        new_model = stack(keras_gralora, args.width, args.depth, args.r, k, hybrid_r)
        old_model = stack(old, args.width, args.depth, args.r, k, hybrid_r)
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
