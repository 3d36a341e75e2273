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
    rng = np.random.default_rng(seed + 100)
    for v in model.trainable_weights:  # distinguishable, non-zero adapters
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.2)
    return model


def snapshot(model):
    return {v.path: to_numpy(v).copy() for v in model.weights}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after.keys() == before.keys()
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)


X = np.random.default_rng(5).standard_normal((3, 4, 16)).astype("float32")  # inputs of `base_model`
