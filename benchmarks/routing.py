"""Routing cost: 8 rows over 4 adapters in one batch vs the same batch with one adapter active; hot-swap vs reload.

Models: a tiny random Gemma (2 layers, hidden 64; forward and greedy
`generate` of 8 new tokens) and the real MiniLM backbone (6 layers, hidden
384; forward of 8 x 64 tokens), every projection adapted by 4 adapters
(r=8, k=2), one batch of 8 rows. Configurations, timed round-robin after
two warm-up calls each, `--rounds` rounds in one process:

- `one adapter`: `predict_on_batch` / `generate` with adapter 0 active;
- `routed`: the same call inside `adapter_routing`, rows over adapters 0-3 (2 each);
- `routed, no swap lock`: the same, with the swap lock's wrappers taken off
  Keras' and KerasHub's passes (what the lock that makes hot-swaps atomic costs);
- `hot-swap`: `hotswap_adapter(file)` then the compiled call;
- `reload`: `delete_adapter` + `load_gralora_weights(file)` then the call (it recompiles).

One JSON line per model and configuration (median seconds, and routed / one
adapter). `--all` runs every backend `--repeat` times in fresh processes and
prints the table: the median over processes with its min-max.

    python benchmarks/routing.py --all --repeat 3
"""

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["a0", "a1", "a2", "a3"] * 2


def timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def adapted(backbone):
    import numpy as np

    for name in sorted(set(NAMES)):
        backbone.enable_gralora(r=8, k=2, adapter_name=name, target_layer_names="all")
    rng = np.random.default_rng(0)
    for variable in backbone.weights:
        if "gralora" in variable.path:
            variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.05)
    return backbone


def models():
    import keras_hub
    import numpy as np

    gemma = adapted(
        keras_hub.models.GemmaBackbone(
            vocabulary_size=256,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=1,
            hidden_dim=64,
            intermediate_dim=128,
            head_dim=16,
        )
    )
    lm = keras_hub.models.GemmaCausalLM(gemma, preprocessor=None)
    lm.compile(sampler="greedy")
    tokens = np.tile(np.arange(1, 17, dtype="int32"), (8, 1))
    prompt = {
        "token_ids": np.pad(tokens[:, :8], [(0, 0), (0, 8)]),
        "padding_mask": np.arange(16)[None].repeat(8, 0) < 8,
    }
    gemma_x = {"token_ids": tokens, "padding_mask": np.ones((8, 16), bool)}
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    import sentiment_task

    minilm = adapted(keras_hub.models.BertBackbone.from_preset(sentiment_task.minilm_preset()))
    minilm_x = {
        "token_ids": np.tile(np.arange(100, 164, dtype="int32"), (8, 1)),
        "segment_ids": np.zeros((8, 64), "int32"),
        "padding_mask": np.ones((8, 64), bool),
    }
    return {
        "Gemma forward": (gemma, lambda: gemma.predict_on_batch(gemma_x)),
        "Gemma generate": (gemma, lambda: lm.generate(prompt, stop_token_ids=None)),
        "MiniLM forward": (minilm, lambda: minilm.predict_on_batch(minilm_x)),
    }


def measure(rounds):
    import keras

    import keras_gralora

    rows = []
    for label, (backbone, call) in models().items():
        keras_gralora.set_active_adapters(backbone, "a0")

        def routed():
            with keras_gralora.adapter_routing(backbone, NAMES):
                call()

        def routed_unlocked():
            with without_swap_lock():
                routed()

        swap_lock_wrappers()  # found before the timing
        configs = {"one adapter": call, "routed": routed, "routed, no swap lock": routed_unlocked}
        times = {name: [] for name in configs}
        for fn in configs.values():
            fn(), fn()
        for _ in range(rounds):
            for name, fn in configs.items():
                times[name].append(timed(fn))
        one, routed_s = statistics.median(times["one adapter"]), statistics.median(times["routed"])
        rows.append(
            {
                "backend": keras.backend.backend(),
                "model": label,
                "one_s": one,
                "routed_s": routed_s,
                "ratio": routed_s / one,
                "unlocked_s": statistics.median(times["routed, no swap lock"]),
            }
        )
        if label != "Gemma generate":
            rows.append({"backend": keras.backend.backend(), "model": label, **swap_times(backbone, call, rounds)})
    return rows


@functools.cache
def swap_lock_wrappers():
    """`[(class, name, wrapper)]`: the swap lock's wrappers (`swap_lock.reading`) on Keras' and KerasHub's passes."""
    import keras
    import keras_hub

    classes = [keras.Model] + [c for c in vars(keras_hub.models).values() if isinstance(c, type)]
    return [
        (cls, name, method)
        for cls in classes
        for name, method in list(vars(cls).items())
        if getattr(method, "_gralora_swap_lock", False)
    ]


@contextlib.contextmanager
def without_swap_lock():
    """The passes as Keras and KerasHub define them: the wrappers taken off (found once, outside the timing)."""
    wrapped = swap_lock_wrappers()
    for cls, name, method in wrapped:
        setattr(cls, name, method.__wrapped__)
    try:
        yield
    finally:
        for cls, name, method in wrapped:
            setattr(cls, name, method)


def swap_times(backbone, call, rounds):
    import keras_gralora

    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "a1.gralora.weights.h5")
        keras_gralora.save_gralora_weights(backbone, path, adapter_names="a1")

        def hotswap():
            keras_gralora.hotswap_adapter(backbone, path, "a0", source_adapter_name="a1")
            call()

        def reload():
            keras_gralora.delete_adapter(backbone, "a3")
            keras_gralora.load_gralora_weights(backbone, path, adapter_names={"a1": "a3"})
            call()

        times = {"hotswap": [], "reload": []}
        hotswap(), reload()
        for _ in range(max(3, rounds // 4)):
            times["hotswap"].append(timed(hotswap))
            times["reload"].append(timed(reload))
    return {"hotswap_s": statistics.median(times["hotswap"]), "reload_s": statistics.median(times["reload"])}


def run_all(repeat, rounds):
    rows = []
    for backend in ("jax", "torch", "tensorflow"):
        for _ in range(repeat):
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            out = subprocess.run(
                [sys.executable, __file__, "--rounds", str(rounds)], env=env, capture_output=True, text=True, check=True
            ).stdout
            rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(
        "| backend | model | one adapter (ms) | routed, 8 rows / 4 adapters (ms) | routed / one | "
        "routed without the swap lock (ms) | hot-swap + call (ms) | reload + recompile + call (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backend in ("jax", "torch", "tensorflow"):
        for model in ("Gemma forward", "Gemma generate", "MiniLM forward"):
            timing = [r for r in rows if r["backend"] == backend and r["model"] == model and "ratio" in r]
            swaps = [r for r in rows if r["backend"] == backend and r["model"] == model and "hotswap_s" in r]
            cells = [
                spread([r["one_s"] * 1e3 for r in timing], 1),
                spread([r["routed_s"] * 1e3 for r in timing], 1),
                spread([r["ratio"] for r in timing], 2),
                spread([r["unlocked_s"] * 1e3 for r in timing], 1),
            ]
            cells += (
                [spread([r[key] * 1e3 for r in swaps], 0) for key in ("hotswap_s", "reload_s")] if swaps else ["-", "-"]
            )
            print(f"| {backend} | {model} | " + " | ".join(cells) + " |")


def spread(values, digits):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--all", action="store_true", help="every backend, --repeat fresh processes each")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.all:
        return run_all(args.repeat, args.rounds)
    for row in measure(args.rounds):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
