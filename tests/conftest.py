import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "jax")

import hypothesis
import keras
import pytest

# Keras layers run eagerly op by op, so examples are slow-ish and vary in time.
hypothesis.settings.register_profile("keras", max_examples=8, deadline=None, derandomize=True)
hypothesis.settings.load_profile("keras")

# Scripts the tests start as subprocesses: they run on import, so `--doctest-modules` must not import them.
collect_ignore = ["strategy_worker.py"]


def pytest_collection_finish(session):
    """Moves what the imports made (tensorflow, torch, jax, keras_hub) out of the garbage collector's sight.

    Keras' `Layer.__delattr__` runs a full `gc.collect()` for every variable
    it deletes (each `quantize` deletes the float kernel): 0.5 s apiece over
    all three backends' objects, 9 s to quantize a 2-layer Llama. Frozen,
    they are never scanned again; what tests make is still collected.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
