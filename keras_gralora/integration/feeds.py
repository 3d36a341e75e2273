"""How a routing's row vector reaches compiled `predict` and `generate`: as data, beside the inputs.

Inside `adapter_routing`, `predict(x)` runs Keras' own loop on `(x, {ROWS:
rows})`, so every batch carries its rows' adapter indices; a KerasHub
task with a preprocessor preprocesses `x` first. `generate` adds each
batch's slice of the rows to the inputs of its compiled function. The
model's `predict_step` / `generate_step` (wrapped per model, when its
function is made) take the rows out and trace the layers under that route,
so a new routing is new data for the same trace. A step without rows is
traced under no route at all, whatever is entered around it: no trace ever
holds one routing's names as constants.
"""

import threading

import keras
import numpy as np
from keras import ops

from keras_gralora.backend import gathered
from keras_gralora.layers import routed
from keras_gralora.serving import routing

ROWS = "gralora_rows"
_LOCAL = threading.local()


def carries_rows(x):
    return isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[1], dict) and set(x[1]) == {ROWS}


def with_rows(x, route, where):
    """`(x, {ROWS: rows})` for Keras' data adapters, after checking `x` has one row per name."""
    if (count := _in_memory(x)) is None:
        raise ValueError(
            f"{where} inside {route.where}: got {type(x).__name__}; routing pairs each row with its adapter name, "
            "so it needs the rows in memory (arrays, tensors, a dict of them, or a list of strings for a task "
            "with a preprocessor). Iterate the dataset and call `routing.route(names)` and the model per batch."
        )
    if count != len(route.values):
        raise ValueError(
            f"{where} inside {route.where}: {len(route.values)} adapter names for {count} rows; give one name per row."
        )
    return (x, {ROWS: route.values})


def _in_memory(x):
    """The number of rows of in-memory inputs, or `None` for datasets, generators and the like."""
    if isinstance(x, str):
        return 1
    if isinstance(x, (list, tuple)) and x and all(isinstance(item, str) for item in x):
        return len(x)
    leaves = keras.tree.flatten(x) if isinstance(x, (dict, list, tuple)) else [x]
    if not leaves or not all(hasattr(leaf, "shape") and len(leaf.shape) for leaf in leaves):
        return None
    return int(leaves[0].shape[0])


def predicting(predict, where):
    """`keras.Model.predict` / `predict_on_batch`, routed inside `adapter_routing`."""

    def predict_with_rows(self, x=None, *args, **kwargs):
        route = routing.applying(self)
        if route is not None and not carries_rows(x):
            x = with_rows(x, route, where)
        return predict(self, x, *args, **kwargs)

    predict_with_rows._gralora_guard = True
    return predict_with_rows


def preprocessing_predict(predict):
    """KerasHub's `PipelineModel.predict`: routed, its preprocessor (if any) runs on the rows in memory first."""

    def predict_with_rows(self, x=None, batch_size=None, **kwargs):
        route = routing.applying(self)
        if route is None:
            return predict(self, x, batch_size=batch_size, **kwargs)
        x = with_rows(x, route, "predict")[0]  # KerasHub would batch it into a dataset: the rows go in beside it
        if getattr(self, "preprocessor", None) is not None:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(self.preprocess_samples(x))
        return keras.Model.predict(self, x, batch_size=batch_size, **kwargs)

    predict_with_rows._gralora_guard = True
    return predict_with_rows


def install_step(model, name):
    """Wraps `model`'s `predict_step` or `generate_step` to read the rows; True when newly wrapped."""
    step = getattr(model, name)
    if getattr(step, "_gralora_rows", False):
        return False
    wrapped = (_predict_step if name == "predict_step" else _generate_step)(model, step)
    wrapped._gralora_rows = True
    model.__dict__[name] = wrapped  # beside Keras' attribute tracking: a function, not state
    return True


def _predict_step(model, step):
    def predict_step(*args):
        *head, data = args  # jax: (state, data); tensorflow, torch: (data,)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if carries_rows(x):
            with routed.following(routing.route_of(model, x[1][ROWS])):
                return step(*head, (x[0],))
        with routed.following(None):
            return step(*args)

    return predict_step


def _generate_step(model, step):
    def generate_step(inputs, *args, **kwargs):
        if isinstance(inputs, dict) and ROWS in inputs:
            rows, inputs = inputs[ROWS], {key: value for key, value in inputs.items() if key != ROWS}
            with routed.following(routing.route_of(model, rows)):
                return step(inputs, *args, **kwargs)
        with routed.following(None):
            return step(inputs, *args, **kwargs)

    return generate_step


def feeding(generate_function):
    """A KerasHub `generate_function` that adds each batch's rows inside a routed `generate`.

    Its outputs that span several processes (multi-host jax: the batch is
    split over them) are gathered whole on every process, which KerasHub's
    `generate` then fetches (JAX refuses to fetch them as they are).
    """

    def generate_function_with_rows(inputs, *args, **kwargs):
        feed = getattr(_LOCAL, "feed", None)
        if feed is not None:
            inputs = {**inputs, ROWS: feed.take(inputs)}
        return keras.tree.map_structure(gathered, generate_function(inputs, *args, **kwargs))

    generate_function_with_rows._gralora_feeding = True
    return generate_function_with_rows


def routed_generate(generate):
    """KerasHub's `CausalLM.generate`, one adapter name per prompt inside `adapter_routing`."""

    def generate_with_rows(self, inputs, *args, **kwargs):
        route = routing.applying(self)
        if route is None:
            return generate(self, inputs, *args, **kwargs)
        count = _in_memory(inputs)
        if count is not None and count != len(route.values):
            raise ValueError(
                f"generate inside {route.where}: {len(route.values)} adapter names for {count} "
                "prompts; give one name per prompt."
            )
        _LOCAL.feed = _Feed(route)
        try:
            outputs = generate(self, inputs, *args, **kwargs)
            _LOCAL.feed.check_used()
        finally:
            _LOCAL.feed = None
        return outputs

    generate_with_rows._gralora_guard = True
    return generate_with_rows


class _Feed:
    """The rows of one routed `generate`, handed out batch by batch."""

    def __init__(self, route):
        self.route, self.used = route, 0

    def take(self, inputs):
        count = int(ops.shape(keras.tree.flatten(inputs)[0])[0])
        rows = self.route.values[self.used : self.used + count]
        if len(rows) < count:
            raise ValueError(
                f"generate inside {self.route.where}: {len(self.route.values)} adapter names, but the "
                f"prompts have more rows (batch of {count} after {self.used})."
            )
        self.used += count
        return np.asarray(rows)

    def check_used(self):
        if self.used != len(self.route.values):
            raise ValueError(
                f"generate inside {self.route.where}: {len(self.route.values)} adapter names for "
                f"{self.used} prompts; give one name per prompt."
            )
