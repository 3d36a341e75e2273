"""Serving from threads: forward passes stay right on float, int8 and int4 bases, also while the model is exported."""

import os
import sys
import threading

import keras
import numpy as np
import pytest
from helpers import X, adapted_model, to_numpy

import keras_gralora
from keras_gralora.surgery import inject

CALLS = 8


@pytest.fixture(autouse=True)
def short_switch_interval():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside every call
    yield
    sys.setswitchinterval(interval)


def run_threads(model, inputs, expected, background=None, threads=3):
    """`threads` threads call `model` on random inputs while `background()` loops; returns the wrong outputs."""
    wrong, done = [], threading.Event()

    def serve(seed):
        rng = np.random.default_rng(seed)
        for _ in range(CALLS):
            i = int(rng.integers(len(inputs)))
            if not np.allclose(to_numpy(model(inputs[i])), expected[i], rtol=1e-5, atol=1e-5):
                wrong.append(i)

    def loop():
        while not done.is_set():
            background()

    workers = [threading.Thread(target=serve, args=(seed,)) for seed in range(threads)]
    extra = [threading.Thread(target=loop)] if background else []
    for thread in workers + extra:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in extra:
        thread.join()
    return wrong


@pytest.mark.parametrize("mode", [None, "int8", "int4"])
def test_concurrent_forward_passes_are_right_and_leave_the_layers_as_they_were(mode):
    model = adapted_model()
    if mode:
        model.quantize(mode)
    inputs = [X * scale for scale in (1.0, -0.5, 2.0, 0.25)]
    expected = [to_numpy(model(x)) for x in inputs]
    assert run_threads(model, inputs, expected) == []
    for layer in inject.adapted_layers(model):
        assert layer.bias is not None and (layer.activation is not None)


def test_forward_passes_during_export_and_saves_see_the_unchanged_model(tmp_path):
    model = adapted_model()
    keras.utils.set_random_seed(0)
    inputs = [X * scale for scale in (1.0, -0.5)]
    expected = [to_numpy(model(x)) for x in inputs]
    count = [0]

    def save_and_export():
        keras_gralora.export_merged(model, tmp_path / "served.keras")
        keras_gralora.save_gralora_weights(model, tmp_path / "task.weights.h5")
        count[0] += 1

    assert run_threads(model, inputs, expected, background=save_and_export, threads=2) == []
    assert count[0] >= 1
    assert not inject.adapted_layers(model)[0].merged
    served = keras.saving.load_model(tmp_path / "served.keras")
    np.testing.assert_allclose(to_numpy(served(X)), expected[0], rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["served.keras", "task.weights.h5"]  # no temporary file left
