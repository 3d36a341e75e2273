"""The saving side of `test_faults.py`'s kill trials (run as a script, one process per test).

It imports once, builds two adapted tiny Llama backbones (one base, other
adapter values and alpha), writes their outputs and the base weights for
the parent, and saves each artifact (timing the second save). Then, for each artifact name read
from stdin, it forks a saver that writes the two models onto that target in
turn until the parent kills it with SIGKILL, and reports how it ended.
"""

import json
import os
import signal
import sys
import time

import keras
import keras_hub
import numpy as np

import keras_gralora

CONFIG = dict(
    vocabulary_size=48, num_layers=2, hidden_dim=16, intermediate_dim=32, num_query_heads=4, num_key_value_heads=2
)
INPUTS = {"token_ids": np.arange(2 * 6, dtype="int32").reshape(2, 6) % 48, "padding_mask": np.ones((2, 6), "int32")}
SAVES = {
    "adapter": lambda model, target: keras_gralora.save_gralora_weights(model, target),
    "export": lambda model, target: keras_gralora.export_merged(model, target),
    "peft": lambda model, target: keras_gralora.save_peft_adapter(model, target),
}
TARGETS = {"adapter": "task.gralora.weights.h5", "export": "served.keras", "peft": "peft"}


def backbone(folder, seed, alpha):
    keras.utils.set_random_seed(1)
    model = keras_hub.models.LlamaBackbone(**CONFIG)
    if not os.path.exists(os.path.join(folder, "base.weights.h5")):
        model.save_weights(os.path.join(folder, "base.weights.h5"))
    model.enable_gralora(r=4, k=2, hybrid_r=2, alpha=alpha, target_layer_names=["query", "value"])
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.3)
    return model


def saver(model_pair, name, target):
    """Writes the two models in turn, forever (the parent kills it)."""
    try:
        for i in range(10**9):
            SAVES[name](model_pair[(i + 1) % 2], target)
    finally:
        os._exit(3)


def main(folder):
    models = [backbone(folder, 10, 8.0), backbone(folder, 20, 16.0)]
    for i, model in enumerate(models):
        np.save(os.path.join(folder, f"outputs_{i}.npy"), keras.ops.convert_to_numpy(model(INPUTS)))
    durations = {}
    for name, save in SAVES.items():
        save(models[1], os.path.join(folder, TARGETS[name]))  # warm: the first save traces and compiles
        start = time.perf_counter()
        save(models[0], os.path.join(folder, TARGETS[name]))
        durations[name] = time.perf_counter() - start
    print(json.dumps(durations), flush=True)
    for line in sys.stdin:
        name = line.strip()
        pid = os.fork()
        if pid == 0:
            saver(models, name, os.path.join(folder, TARGETS[name]))
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print("killed" if killed else f"ended {status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
