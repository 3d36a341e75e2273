"""Small helpers the test modules share."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
from keras import ops

import keras_gralora

HERE = os.path.dirname(os.path.abspath(__file__))


def to_numpy(x, dtype=None):
    """Any backend's tensor (or a variable) as a NumPy array, optionally cast."""
    return np.asarray(ops.convert_to_numpy(x), dtype)


def random_input(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def run_python(code, backend, *args):
    """Runs `code` in a fresh Python on `backend` (from tests/, arguments as argv); returns its stdout."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def gradients(model, inputs, scalar, training=False, jit=True):
    """`[gradient or None]` of `scalar(model(inputs))` per trainable variable of `model`, on any backend.

    `jit=False` skips jax's compilation (faster for one call on a tiny model).
    """
    variables = model.trainable_variables
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        others = [v.value for v in model.non_trainable_variables]

        def value(trainable):
            found, _ = model.stateless_call(trainable, others, inputs, training=training)
            return scalar(found)

        grads = (jax.jit(jax.grad(value)) if jit else jax.grad(value))([v.value for v in variables])
    elif backend == "torch":
        for v in variables:  # backward() adds to what an earlier one left
            v.value.grad = None
        scalar(model(inputs, training=training)).backward()
        grads = [v.value.grad for v in variables]
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            found = scalar(model(inputs, training=training))
        grads = tape.gradient(found, variables)
    return [None if g is None else ops.convert_to_numpy(g) for g in grads]


def base_model(width=16, seed=0):
    """A small functional model whose base weights depend only on `seed`."""
    inputs = keras.Input((4, width))
    x = keras.layers.EinsumDense("btd,dnh->btnh", (None, 2, width // 2), bias_axes="nh", name="query")(inputs)
    x = keras.layers.Reshape((4, width))(x)
    x = keras.layers.Dense(2 * width, activation="relu", name="ffn")(x)
    outputs = keras.layers.Dense(width, name="value")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3 for w in model.get_weights()])
    return model


def adapted_model(r=4, k=2, hybrid_r=2, targets=("query", "ffn", "value"), seed=0):
    model = base_model(seed=seed)
    keras_gralora.enable_gralora(model, r=r, k=k, hybrid_r=hybrid_r, alpha=3.0, target_layer_names=list(targets))
    randomize(model.trainable_weights, seed=seed + 100, scale=0.2)  # distinguishable, non-zero adapters
    return model


def randomize(variables, seed=0, scale=1.0):
    """Fills `variables` with standard normal draws times `scale`, from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(rng.standard_normal(v.shape).astype("float32") * scale)


def snapshot(model):
    return {v.path: to_numpy(v).copy() for v in model.weights}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after.keys() == before.keys()
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)


X = np.random.default_rng(5).standard_normal((3, 4, 16)).astype("float32")  # inputs of `base_model`


# --- models shared by several test modules ---

MLP_X, MLP_Y = random_input((16, 16)), random_input((16, 4), seed=2)


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    x = keras.layers.Dense(32, activation="relu", name="up")(inputs)
    x = keras.layers.Dense(16, name="down")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def moved(model, before):
    return {path for path, value in snapshot(model).items() if not np.array_equal(value, before[path], equal_nan=True)}


BASE = "__base__"


def layouts_model(quantize=None):
    """Dense, the three KerasHub EinsumDense layouts and a hybrid adapter; adapter 'c' only on some layers."""
    inputs = keras.Input((5, 16))
    x = keras.layers.Dense(16, name="dense")(inputs)
    q = keras.layers.EinsumDense("btd,dnh->btnh", (5, 2, 8), bias_axes="nh", name="query")(x)
    k = keras.layers.EinsumDense("btd,ndh->btnh", (5, 2, 8), name="key")(x)
    x = keras.layers.EinsumDense("btnh,nhd->btd", (5, 16), name="out")(keras.layers.Add()([q, k]))
    model = keras.Model(inputs, keras.layers.Dense(8, name="head")(x))
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3 for w in model.get_weights()])
    if quantize:
        model.quantize(quantize)
    targets = ["dense", "query", "key", "out"]
    keras_gralora.enable_gralora(model, r=4, k=2, adapter_name="a", target_layer_names=targets)
    keras_gralora.enable_gralora(model, r=8, k=2, hybrid_r=2, alpha=5.0, adapter_name="b", target_layer_names=targets)
    keras_gralora.enable_gralora(model, r=4, k=2, alpha=3.0, adapter_name="c", target_layer_names=["dense", "out"])
    for v in model.weights:
        if "gralora" in v.path:
            v.assign(rng.standard_normal(v.shape).astype("float32") * 0.3)
    return model


def alone(model, names, x, run):
    """Row i of `x` through `model` with only adapter names[i] active (the base for "__base__")."""
    active = keras_gralora.active_adapters(model)
    rows = []
    for i, name in enumerate(names):
        if name == BASE:
            with keras_gralora.disable_gralora(model):
                rows.append(to_numpy(run(x[i : i + 1])))
        else:
            keras_gralora.set_active_adapters(model, name)
            rows.append(to_numpy(run(x[i : i + 1])))
    keras_gralora.set_active_adapters(model, active)
    return np.concatenate(rows)


UNNAMED_X = np.random.default_rng(5).standard_normal((3, 12)).astype("float32")


def unnamed_model(seed=0, width=12, depth=3):
    """Dense layers with auto-numbered names (dense_7, dense_8... differ in every build), fixed weights."""
    inputs = keras.Input((12,))
    x = inputs
    for _ in range(depth):
        x = keras.layers.Dense(width)(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.3 for w in model.get_weights()])
    return model


def unnamed_adapted(seed=0, **kwargs):
    model = unnamed_model(seed, **kwargs)
    keras_gralora.enable_gralora(model, r=4, k=2, target_layer_names="all", bias="gralora_only")
    randomize(model.trainable_weights, seed=seed + 1, scale=0.1)
    return model


def array(tensor):
    return tensor.detach().numpy()


def copy_peft_adapter(layer, module, name):
    """PEFT adapter `name` of `module` into our adapter of the same name (hybrid matrices transposed)."""
    a, b, *hybrid = layer.adapter(name).variables
    a.assign(array(module.gralora_A[name]))
    b.assign(array(module.gralora_B[name]))
    if hybrid:
        hybrid[0].assign(array(module.gralora_A_general[name].weight).T)
        hybrid[1].assign(array(module.gralora_B_general[name].weight).T)


def tiny_gemma():
    import keras_hub

    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=48,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=4,
    )
    lm = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    lm.compile(sampler="greedy")
    return backbone, lm
