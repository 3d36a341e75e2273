"""What every process of a multi-process run does, and what one process with all 8 devices does to compare.

`scenario(feed, shared)` trains a tiny adapted Gemma under `ModelParallel`
(KerasHub's layout map on a 2 x 4 mesh, the `B` factors sharded over
"model" by a layout map key), then makes every call that reads or writes
weights, and returns what each gave (numbers as lists, so JSON carries
them). `processes_worker.py` runs it as process 0 or 1 of 2 (4 CPU devices
each); `test_processes.py` runs it in its own process with 8 devices.
"""

import os

import keras
import numpy as np

import keras_gralora
from keras_gralora.backend import to_numpy
from keras_gralora.files import atomic

SIZES = dict(
    vocabulary_size=48,
    num_layers=2,
    hidden_dim=16,
    intermediate_dim=32,
    num_query_heads=4,
    num_key_value_heads=4,
    head_dim=8,
)
ROWS, SEQ, BATCH = 16, 8, 8  # 2 global batches of 8 rows; each of 2 processes feeds 4 rows of each
WRITES = []  # the temporary files this process made (`atomic.temp_path`): only the writing process makes any


def data():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 48, (ROWS, SEQ)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}, np.roll(ids, -1, axis=1)


def local_rows(process, processes=2):
    """The rows process `process` feeds, batch after batch: its share of each global batch, in batch order."""
    share = BATCH // processes
    return np.concatenate([np.arange(b * BATCH + process * share, b * BATCH + (process + 1) * share) for b in range(2)])


def distribution():
    import keras_hub

    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices=devices)
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    layout_map[".*gralora_b_.*"] = (None, None, "model")  # adapters sharded too: no process holds them whole
    # Each process feeds its own rows (`local_rows`): Keras must not shard them again
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False)


def _counting_writes():
    if getattr(atomic.temp_path, "_counted", False):
        return
    make = atomic.temp_path

    def temp_path(target, suffix=""):
        WRITES.append(os.path.basename(target))
        return make(target, suffix)

    temp_path._counted = True
    atomic.temp_path = temp_path


def specs(model):
    return {v.path: [str(axis) for axis in v.value.sharding.spec] for v in model.weights if "gralora" not in v.path}


def scenario(feed, shared, process=None):
    """Runs every call under the distribution; `{name: result}`.

    `feed(task)` trains it; `predict` gets this process's rows
    (`local_rows`, or all of them in one process), two batches of them.
    """
    import keras_hub

    _counting_writes()
    found = {}
    x, _ = data()
    with distribution().scope():
        keras.utils.set_random_seed(0)
        task = keras_hub.models.GemmaCausalLM(keras_hub.models.GemmaBackbone(**SIZES), preprocessor=None)
        backbone = task.backbone
        backbone.enable_gralora(r=4, k=2, target_layer_names=["query", "value"])
        backbone.enable_gralora(r=4, k=2, target_layer_names=["query", "value"], adapter_name="second")
        for i, v in enumerate(backbone.trainable_weights):  # B starts at zero: make the adapters matter at once
            v.assign(np.random.default_rng(i).standard_normal(v.shape).astype("float32") * 0.1)
        task.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        found["losses"] = feed(task)
        found["adapters"] = [to_numpy(v).tolist() for v in backbone.weights if "gralora_" in v.path]
        found["outputs"] = to_numpy(backbone(x)).tolist()
        before = specs(backbone)
        keras_gralora.merge_gralora(backbone)
        found["merged outputs"] = to_numpy(backbone(x)).tolist()
        found["merge keeps layouts"] = specs(backbone) == before
        keras_gralora.unmerge_gralora(backbone)
        try:  # a save that fails on the writing process: every process raises, none waits for ever
            backbone.save_gralora_weights(os.path.join(shared, "missing", "a.gralora.weights.h5"))
            found["failed save"] = "saved"
        except (OSError, ValueError) as error:
            found["failed save"] = str(error)
        backbone.save_gralora_weights(os.path.join(shared, "a.gralora.weights.h5"))
        keras_gralora.export_merged(backbone, os.path.join(shared, "merged.keras"))
        keras_gralora.save_peft_adapter(backbone, os.path.join(shared, "peft"), adapter_name="default")
        keras_gralora.save_lora_adapter(backbone, os.path.join(shared, "lora"), adapter_name="default")
        keras_gralora.hotswap_adapter(backbone, os.path.join(shared, "a.gralora.weights.h5"), "second", "default")
        keras_gralora.set_active_adapters(backbone, "second")
        found["hot-swapped outputs"] = to_numpy(backbone(x)).tolist()
        keras_gralora.set_active_adapters(backbone, "default")
        names = ["default", "__base__"] * (ROWS // 2)
        with keras_gralora.adapter_routing(backbone, names):
            found["routed outputs"] = to_numpy(backbone(x)).tolist()
        rows = np.arange(ROWS) if process is None else local_rows(process)
        names = np.array(["default", "__base__", "second", "default"] * (ROWS // 4))[rows].tolist()
        with keras_gralora.adapter_routing(backbone, names):  # predict's outputs: every process's rows, in order
            predicted = task.predict({k: v[rows] for k, v in x.items()}, batch_size=len(rows) // 2, verbose=0)
        found["routed predict"] = predicted.tolist()
        prompt = {"token_ids": x["token_ids"][:2], "padding_mask": np.arange(SEQ)[None].repeat(2, 0) < 4}  # 4 given
        task.compile(sampler="greedy")
        found["generated"] = to_numpy(task.generate(prompt, max_length=SEQ, stop_token_ids=None)["token_ids"]).tolist()
        with keras_gralora.adapter_routing(backbone, ["second", "__base__"]):  # generate's prompts: the same on all
            routed = task.generate(prompt, max_length=SEQ, stop_token_ids=None)["token_ids"]
        found["routed generate"] = to_numpy(routed).tolist()
        keras_gralora.load_peft_adapter(backbone, os.path.join(shared, "peft"), adapter_name="from_peft")
        keras_gralora.set_active_adapters(backbone, "from_peft")
        found["PEFT directory outputs"] = to_numpy(backbone(x)).tolist()
    reloaded = keras.saving.load_model(os.path.join(shared, "merged.keras"))
    found["merged export outputs"] = to_numpy(reloaded(x)).tolist()
    fresh = keras_hub.models.GemmaBackbone(**SIZES)
    fresh.set_weights([to_numpy(w) for w in backbone.weights if "gralora_" not in w.path])
    fresh.load_gralora_weights(os.path.join(shared, "a.gralora.weights.h5"))
    found["reloaded outputs"] = to_numpy(fresh(x)).tolist()
    found["writes"] = list(WRITES)
    found["left over"] = sorted(name for name in os.listdir(shared) if atomic.TMP_MARK in name)
    return found
