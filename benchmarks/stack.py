"""What the benchmarks share: the train-step stack, its data and flags, interleaved timing, memory readings.

The stack is `depth` Dense layers of `width` (default 4 x 1024) on `[batch, seq, width]` inputs (16 x 128),
r = 32, SGD, MSE, as GraLoRA, Keras' own LoRA (biases frozen: both train the factors only) or the floor.
Configurations that are compared run in one process, round robin after warm-up (`interleaved_medians`).
"""

import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

from keras_gralora import GraLoRADense

SIZES = {"width": 1024, "depth": 4, "batch": 16, "seq": 128, "r": 32}


def stack(kind, width=1024, depth=4, r=32, k=2, hybrid_r=0, dense=GraLoRADense):
    """`depth` Dense layers of `width`: `"gralora"` (`dense`, e.g. another commit's class), `"lora"` or `"floor"`.

    The floor freezes the kernels and trains the biases only: forward, the
    input gradients between layers and the bias gradients, the least any
    adapter method pays. (It replaced a trainable gate below a frozen stack,
    which also paid the first layer's input gradient and hit an XLA CPU slow
    path on jax: 5.5 s per step vs 0.5 s for Keras LoRA.)
    """
    layers = [keras.Input((None, width))]
    for _ in range(depth):
        if kind == "gralora":
            layers.append(dense(width, r=r, k=k, hybrid_r=hybrid_r, init_weights=False))
        else:
            layers.append(keras.layers.Dense(width))
    model = keras.Sequential(layers)
    for layer in model.layers:
        if kind == "lora":
            layer.enable_lora(r)
            layer.bias.trainable = False  # the same trainable set as GraLoRA: the factors only
        elif kind == "floor":
            layer.kernel.trainable = False
    return model


def stack_arguments(parser, **defaults):
    """The stack's size and timing flags (`--width --depth --batch --seq --r --steps --repeat`)."""
    for name, default in {**SIZES, "steps": 5, "repeat": 3, **defaults}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    return parser


def stack_data(batch=16, seq=128, width=1024, seed=0):
    """Random inputs and targets `[batch, seq, width]` for the stack."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, seq, width)).astype("float32") for _ in range(2)]


def interleaved_medians(steps, rounds, warmup=2):
    """`{name: median seconds}` of each `steps[name]()` over `rounds` round-robin rounds after `warmup` each.

    Each step must wait for its result (e.g. return a Python float), so
    async backends are timed in full.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def train_on_batch_step(model, x, y):
    """Compiles `model` (SGD, MSE) and returns its step; `train_on_batch` returns floats, so it waits."""
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return lambda: model.train_on_batch(x, y)


def interleaved(models, x, y, steps, warmup=2):
    """Median seconds of a `train_on_batch` step per compiled model, taken round robin."""
    medians = interleaved_medians(
        {i: (lambda m=m: m.train_on_batch(x, y)) for i, m in enumerate(models)}, steps, warmup
    )
    return [medians[i] for i in range(len(models))]


def compiled_jax_step(model, x, y):
    """The stack's loss (MSE) and gradients as XLA compiles them under jax (`memory.py`, `explore/profile_step.py`)."""
    import jax

    def loss(trainable, non_trainable, x, y):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return keras.ops.mean((out - y) ** 2)

    arguments = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], x, y)
    return jax.jit(jax.value_and_grad(loss)).lower(*arguments).compile()


def rss_mib(field):
    """`VmRSS` (now) or `VmHWM` (peak since the last reset), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # reported in KiB
    raise RuntimeError(f"/proc/self/status has no {field}: the memory benchmarks need Linux")


def reset_peak_rss():
    """Resets `VmHWM` to the current RSS (Linux `/proc/self/clear_refs`)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
