"""Per-row adapter routing for inference: many adapters, one batch (PEFT's `adapter_names`).

```python
with keras_gralora.adapter_routing(model, ["math", "code", "__base__", "math"]) as routing:
    y = model(x)                        # row i through adapter names[i], "__base__" through none
    y = model.predict(x)                # one name per row of x, whatever the batch size
    routing.route(["code"] * 4)         # new names: no new trace, never a stale output
    text = causal_lm.generate(prompts)  # KerasHub: one name per prompt
```

The routing is data: an `int32` row vector (`layers/routed.py`). Eager calls
read it from the entered routing; `predict` and `generate` hand it to their
compiled function beside the inputs (`feeds.py`), so changing the names
never retraces. Routing is refused where it cannot be right: training
(PEFT's rule), merged adapters, trained biases or `modules_to_save` inside
the routed model (one weight cannot differ per row), unknown names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import numpy as np
from keras import ops

from keras_gralora.config import BASE_ROW as BASE  # PEFT's name for "no adapter" in adapter_names
from keras_gralora.layers import routed
from keras_gralora.surgery import inject


class AdapterRouting:
    """The routing `adapter_routing` enters: `names`, and `route(names)` to change them.

    Made by `adapter_routing`, which checks `model` and the names first.

    Args:
        model: A model with GraLoRA adapters.
        names: One adapter name per row, or `"__base__"` (`BASE`).

    Raises:
        ValueError: Merged adapters, adapters that train biases or
            `modules_to_save`, unknown names, or layers whose first input
            axis is not a batch axis.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="a")
        >>> with keras_gralora.adapter_routing(model, ["a", "__base__"]) as routing:
        ...     first = model(keras.ops.ones((2, 8)))
        ...     routing.route(["__base__", "a"])  # the next calls swap the rows' adapters
        ...     routing.names
        ['__base__', 'a']
    """

    def __init__(self, model: keras.Layer, names: Sequence[str]) -> None:
        self.model = model
        self.where = f"adapter_routing(model '{model.name}')"
        inside = model._flatten_layers(include_self=False)
        layers = [layer for layer in inside if isinstance(layer, inject.GraLoRAAdapter)]
        configs = inject.adapter_configs(model, layers)
        _check_model(model, layers, configs, {layer.path for layer in inside}, self.where)
        self.slots = tuple(configs)
        self._route = _route(model, None, layers, self.slots)
        self.route(names)

    @property
    def names(self) -> list[str]:
        """The adapter name of each row."""
        return [self.slots[i] if i < len(self.slots) else BASE for i in self._route.values]

    def route(self, names: Sequence[str]) -> None:
        """Sends row `i` of the next calls through adapter `names[i]` (`"__base__"`: none)."""
        values = rows_of(names, self.slots, self.where)
        self._route.values, self._route.rows = values, ops.convert_to_tensor(values, "int32")
        self._route.cache = {}


@contextlib.contextmanager
def adapter_routing(model: keras.Layer, names: Sequence[str]) -> Iterator[AdapterRouting]:
    """Context manager: inside it, row `i` of every batch goes through adapter `names[i]`.

    Args:
        model: A model with GraLoRA adapters (a backbone, or a task holding
            one); calls of any model that contains its adapted layers follow
            the routing: `model(x)`, `predict`, `predict_on_batch` and
            KerasHub's `generate`.
        names: One adapter name per row (per row of all of `predict`'s
            input; per prompt of `generate`), or `"__base__"` for the base
            model. Any adapter of the model may be named, active or not; a
            layer that lacks a row's adapter computes its base for that row.

    Returns:
        A context manager yielding the `AdapterRouting`:
        `routing.route(new_names)` changes the names.

    Raises:
        ValueError: On entry: unknown names, merged adapters, adapters that
            train biases or `modules_to_save`. Inside: a call whose batch
            has another number of rows than `names`, training, `evaluate`,
            merging, `disable_gralora` and adding, deleting or activating
            adapters. The routing holds in this thread only.

    Examples:
        >>> import keras, keras_gralora
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(8, name="query")(inputs))
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="a")
        >>> _ = keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="b")
        >>> with keras_gralora.adapter_routing(model, ["a", "b", "__base__"]):
        ...     y = model(keras.ops.ones((3, 8)))
    """
    routing = AdapterRouting(model, names)
    with routed.following(routing._route):
        yield routing


def rows_of(names, slots, where):
    """The row vector for `names`: the index of each name in `slots`, `len(slots)` for the base."""
    if isinstance(names, np.ndarray):
        names = names.tolist()
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: names must be a list with one adapter name (or {BASE!r}) per row, got {names!r}.")
    if unknown := sorted({n for n in names if n != BASE and n not in slots}):
        raise ValueError(
            f"{where}: no adapter named {unknown}; the model's adapters are {list(slots)} "
            f"(and {BASE!r} for the base model)."
        )
    index = {name: i for i, name in enumerate(slots + (BASE,))}
    return np.array([index[n] for n in names], dtype="int32")


def applying(model):
    """The innermost routing entered in this thread that covers `model`'s adapters, or `None`."""
    if not routed.entered(None):  # nothing entered in this thread: the common case, no walk over the layers
        return None
    routes = routed.entered({id(layer) for layer in inject.adapted_layers(model)})
    return routes[0] if routes else None


def route_of(model, rows):
    """The route of `model`'s adapters for the row vector `rows` (a tensor a compiled function received)."""
    layers = inject.adapted_layers(model)
    return _route(model, rows, layers, tuple(inject.adapter_configs(model, layers)))


def _route(model, rows, layers, slots):
    return routed.Route(rows, slots, frozenset(id(layer) for layer in layers), f"adapter_routing(model '{model.name}')")


def _check_model(model, layers, configs, inside, where):
    if not layers:
        raise ValueError(f"{where}: the model has no GraLoRA adapters to route to. Call enable_gralora first.")
    inject.check_enabled(model, where, layers)
    if merged := [layer.path for layer in layers if layer.merged]:
        raise ValueError(
            f"{where}: adapters are merged into the kernels of {merged[:3]}, so every row would get them. "
            "Call `keras_gralora.unmerge_gralora(model)` first (PEFT refuses adapter_names with merged adapters too)."
        )
    for name, config in configs.items():
        if config.bias != "none":
            raise ValueError(
                f"{where}: adapter {name!r} trains biases (bias={config.bias!r}); a bias is one weight for "
                "every row, so rows routed elsewhere would get it too. Route adapters trained with bias='none'."
            )
        if shared := [path for path in config.modules_to_save if path in inside]:
            raise ValueError(
                f"{where}: adapter {name!r} trains modules {shared} (modules_to_save) inside the routed model; "
                "a module is one weight for every row. Route the backbone and apply each task's head to its rows."
            )
    for layer in layers:
        routed.check_routable(layer)
