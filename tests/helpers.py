"""Small helpers the test modules share."""

import os
import subprocess
import sys
import textwrap

import numpy as np
from keras import ops

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
        env=env, cwd=HERE, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout
