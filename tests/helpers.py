"""Small helpers the test modules share."""

import numpy as np
from keras import ops


def to_numpy(x, dtype=None):
    """Any backend's tensor (or a variable) as a NumPy array, optionally cast."""
    return np.asarray(ops.convert_to_numpy(x), dtype)


def random_input(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")
