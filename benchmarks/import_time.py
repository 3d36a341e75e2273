"""What `import keras_gralora` adds to `import keras`, in fresh processes, on the backend in KERAS_BACKEND.

Each repeat starts two fresh Pythons, in alternating order: one imports
keras and then keras_gralora, timing each import; the other imports keras
and then keras_hub (for scale: what keras_gralora used to import itself).
Prints medians with their min-max over the repeats, one JSON line.

    KERAS_BACKEND=jax python benchmarks/import_time.py --repeat 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

TIMED = """
import sys, time
start = time.perf_counter(); import keras; middle = time.perf_counter()
import {second}; end = time.perf_counter()
assert {second!r} != "keras_gralora" or "keras_hub" not in sys.modules
print(middle - start, end - middle)
"""


def timed_imports(second):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", TIMED.format(second=second)], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds = {"keras": [], "keras_gralora": [], "keras_hub": []}
    for i in range(args.repeat):
        for second in ("keras_gralora", "keras_hub") if i % 2 == 0 else ("keras_hub", "keras_gralora"):
            keras_s, second_s = timed_imports(second)
            seconds[second].append(second_s)
            seconds["keras"].append(keras_s)
    print(
        json.dumps(
            {
                "bench": "import_time",
                "backend": os.environ.get("KERAS_BACKEND", "jax"),
                "config": "import",
                **{
                    f"{name}_s": [round(statistics.median(v), 3), round(min(v), 3), round(max(v), 3)]
                    for name, v in seconds.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
