"""What crossing processes costs: GraLoRA's train step on 1 process x 8 devices vs 2 processes x 4 (jax, CPU).

The same Gemma (KerasHub's layout map on a 2 x 4 "batch" x "model" mesh,
GraLoRA r=8 k=2 on query and value) trains under `ModelParallel` in one
process with 8 virtual CPU devices, and in two processes with 4 each
(gloo collectives over local TCP, `keras.distribution.initialize`), each
feeding its half of every batch. The two set-ups need their own processes,
so they alternate: `--repeat` blocks, each running one then the other,
`--steps` timed steps after two of warm-up; printed are the medians and
ranges of the per-step time each process measures. The bytes come from
XLA's compiled train step (the same SPMD program either way): the output
sizes of its collectives, and those whose replica groups join devices of
both processes, which gloo moves between them.

    python benchmarks/processes_step.py --hidden 256 --steps 10 --repeat 3
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np

import keras_gralora  # noqa: F401  (adds Backbone.enable_gralora)

BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}


def model_and_data(args, process=0, processes=1):
    import keras
    import keras_hub
    import tensorflow as tf

    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices=keras.distribution.list_devices())
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    dist = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False)
    sizes = dict(num_query_heads=4, num_key_value_heads=4, head_dim=args.hidden // 4, intermediate_dim=2 * args.hidden)
    with dist.scope():
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GemmaBackbone(vocabulary_size=1024, num_layers=2, hidden_dim=args.hidden, **sizes)
        task = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
        backbone.enable_gralora(r=8, k=2, target_layer_names=["query", "value"])
        task.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    ids = np.random.default_rng(0).integers(1, 1024, (args.batch, args.seq)).astype("int32")
    share = args.batch // processes
    rows = slice(process * share, (process + 1) * share)
    x, y = {"token_ids": ids[rows], "padding_mask": np.ones_like(ids[rows])}, np.roll(ids, -1, axis=1)[rows]
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    return task, dist, data, (x, y)


def timed(task, dist, data, steps):
    with dist.scope():
        task.fit(data, steps_per_epoch=2, verbose=0)  # warm-up: compiles
        start = time.perf_counter()
        task.fit(data, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / steps


def collective_bytes(task, dist, batch):
    """`(all collectives' bytes, those joining devices 0-3 with 4-7)` of the compiled train step."""
    import jax

    x, y = batch
    with dist.scope():
        put = lambda v: jax.device_put(v, dist.get_data_layout(v.shape).backend_layout)  # noqa: E731
        variables = (task.trainable_variables, task.non_trainable_variables, task.optimizer.variables)
        state = tuple([v.value for v in group] for group in (*variables, task.metrics_variables))
        step = jax.jit(task.train_step, out_shardings=(None, task._get_state_sharding_spec()))
        text = step.lower(state, ({k: put(v) for k, v in x.items()}, put(y), None)).compile().as_text()
    total = crossing = 0
    pattern = r"= (\w+)\[([\d,]*)\]\S* (?:all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)\S*\((.*)"
    for dtype, dims, rest in re.findall(pattern, text):
        size = BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
        total += size
        crossing += size if any(g & {0, 1, 2, 3} and g & {4, 5, 6, 7} for g in device_groups(rest)) else 0
    return total, crossing


def device_groups(operands):
    """The device groups of one HLO collective, from any of XLA's three spellings of them."""
    if match := re.search(r"source_target_pairs=\{(\{[\d,{}]*\})\}", operands):
        return [set(map(int, pair.split(","))) for pair in re.findall(r"\{(\d+,\d+)\}", match.group(1))]
    if match := re.search(r"replica_groups=\{(\{[\d,{}]*\})\}", operands):  # {{0,1},{2,3}}
        return [set(map(int, re.findall(r"\d+", g))) for g in match.group(1).split("},{")]
    if match := re.search(r"replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", operands):
        count, size, dims, perm = match.groups()  # iota over dims, transposed by perm, in count groups of size
        return [set(row) for row in iota(dims, perm).reshape(int(count), int(size)).tolist()]
    mesh = r"replica_groups=mesh\[([^\]]*)\](?:, device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))? \{([^}]*)\}"
    if match := re.search(mesh, operands):  # a mesh of devices (iota, or device_ids), grouped along named axes
        axes, dims, perm, along = match.groups()
        axes = re.findall(r"'(\w+)'=(\d+)", axes)
        ids = iota(dims or "8", perm).reshape([int(n) for _, n in axes])
        inner = [i for i, (name, _) in enumerate(axes) if f"'{name}'" in along]
        outer = [i for i in range(len(axes)) if i not in inner]
        groups = ids.transpose(outer + inner).reshape(-1, int(np.prod([ids.shape[i] for i in inner])))
        return [set(row) for row in groups.tolist()]
    raise ValueError(f"unknown replica group spelling in: {operands[:200]}")


def iota(dims, perm=None):
    """XLA's iota device list: 0..n-1 shaped `dims`, transposed by `perm`, flattened."""
    ids = np.arange(8).reshape([int(d) for d in dims.split(",")])
    return (ids.transpose([int(p) for p in perm.split(",")]) if perm else ids).reshape(-1)


def one(args):
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    task, dist, data, batch = model_and_data(args)
    seconds = timed(task, dist, data, args.steps)  # builds the optimizer too
    total, crossing = collective_bytes(task, dist, batch)
    print(json.dumps({"seconds": seconds, "bytes": total, "crossing": crossing}))


def worker(args):
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    keras.distribution.initialize(f"127.0.0.1:{args.port}", num_processes=2, process_id=args.process)
    task, dist, data, _ = model_and_data(args, args.process, 2)
    print(json.dumps({"seconds": timed(task, dist, data, args.steps)}))


def run(args, *extra):
    command = [sys.executable, __file__, *extra, *(f"--{k}={v}" for k, v in sizes(args).items())]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "KERAS_BACKEND": "jax"})


def sizes(args):
    return {name: getattr(args, name) for name in ("hidden", "batch", "seq", "steps")}


def last_json(proc):
    out, _ = proc.communicate(timeout=1800)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def main():
    parser = argparse.ArgumentParser()
    for name, default in {"hidden": 256, "batch": 16, "seq": 64, "steps": 10, "repeat": 3}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--mode", default="driver")
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "one":
        return one(args)
    if args.mode == "worker":
        return worker(args)
    single, pairs, sizes_found = [], [], None
    for _ in range(args.repeat):  # one set-up, then the other, in turn
        sizes_found = last_json(run(args, "--mode=one"))
        single.append(sizes_found["seconds"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [run(args, "--mode=worker", f"--process={i}", f"--port={port}") for i in range(2)]
        pairs.append([last_json(p)["seconds"] for p in procs])
    for name, times in (("1 process x 8 devices", single), ("2 processes x 4 devices", [max(p) for p in pairs])):
        ms = [1000 * t for t in times]
        row = {"bench": "processes_step", "config": name, "ms": float(np.median(ms)), "ms_range": [min(ms), max(ms)]}
        print(json.dumps({**row, "collective_bytes": sizes_found["bytes"], "crossing_bytes": sizes_found["crossing"]}))


if __name__ == "__main__":
    main()
