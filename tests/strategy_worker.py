"""Trains a tiny adapted Gemma two steps under torch DDP or tf.distribute, or alone: `MODE [RANK PORT] OUT`.

MODE: `ddp RANK PORT` (torch's DistributedDataParallel, 2 processes over
gloo, each its half of every batch, Keras' own torch recipe: a torch loop
over `model.parameters()`), `torch` (the same loop, one process, whole
batches), `mirrored` (tf.distribute.MirroredStrategy over 2 logical CPU
devices, Keras' `fit`) or `tensorflow` (the same `fit`, no strategy).
Writes `{"losses": [...], "adapters": [...]}` to OUT as JSON; the DDP ranks
also save their adapters to one file beside OUT, and reload it.
"""

import json
import os
import sys

mode, out = sys.argv[1], sys.argv[-1]
os.environ["KERAS_BACKEND"] = "torch" if mode in ("ddp", "torch") else "tensorflow"

if mode == "mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_gralora  # noqa: E402

SIZES = dict(vocabulary_size=48, num_layers=2, hidden_dim=16, intermediate_dim=32, num_query_heads=4)
IDS = np.random.default_rng(0).integers(1, 48, (16, 8)).astype("int32")


def task():
    keras.utils.set_random_seed(0)
    lm = keras_hub.models.GemmaCausalLM(
        keras_hub.models.GemmaBackbone(num_key_value_heads=4, head_dim=8, **SIZES), preprocessor=None
    )
    keras_gralora.enable_gralora(lm, r=4, k=2, target_layer_names=["query", "value"])  # the task: DDP wraps it
    for i, v in enumerate(lm.trainable_weights):  # B starts at zero: make the adapters matter at once
        v.assign(np.random.default_rng(i).standard_normal(v.shape).astype("float32") * 0.1)
    return lm


def torch_loop(rank=0, world=1):
    import torch

    lm = task()
    model = torch.nn.parallel.DistributedDataParallel(lm) if world > 1 else lm
    optimizer = torch.optim.SGD([p for p in lm.parameters() if p.requires_grad], lr=0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses = []
    for step in range(2):
        rows = np.arange(step * 8, step * 8 + 8)[rank * 8 // world : (rank + 1) * 8 // world]
        x = {"token_ids": torch.tensor(IDS[rows]), "padding_mask": torch.ones(len(rows), 8, dtype=torch.int32)}
        optimizer.zero_grad()
        loss = loss_fn(torch.tensor(np.roll(IDS, -1, axis=1)[rows]), model(x))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return lm, losses


def fit(strategy=None):
    import contextlib

    with strategy.scope() if strategy else contextlib.nullcontext():
        lm = task()
        lm.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        x, y = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}, np.roll(IDS, -1, axis=1)
        history = lm.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    return lm, history.history["loss"]


if mode == "ddp":
    import torch.distributed

    rank, port = int(sys.argv[2]), sys.argv[3]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    lm, losses = torch_loop(rank, 2)
elif mode == "torch":
    lm, losses = torch_loop()
else:
    import tensorflow as tf

    lm, losses = fit(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mode == "mirrored" else None)
    assert mode != "mirrored" or type(lm.trainable_weights[0].value).__name__ == "MirroredVariable"
adapters = [keras.ops.convert_to_numpy(v.value).tolist() for v in lm.trainable_weights]
result = {"losses": losses, "adapters": adapters}
if mode == "ddp":  # both ranks save into one folder: rank 0 writes, rank 1 waits for the complete file
    from keras_gralora.files import atomic

    writes, make = [], atomic.temp_path
    atomic.temp_path = lambda target, suffix="": writes.append(target) or make(target, suffix)
    path = os.path.join(os.path.dirname(out), "ddp.gralora.weights.h5")
    keras_gralora.save_gralora_weights(lm, path)
    reloaded = task()
    keras_gralora.load_gralora_weights(reloaded, path)  # the complete file, on both ranks
    result["writes"] = len(writes)
    result["reloaded"] = [keras.ops.convert_to_numpy(v.value).tolist() for v in reloaded.trainable_weights]
with open(out, "w") as file:
    json.dump(result, file)
