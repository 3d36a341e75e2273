"""Per-row adapters inside a layer: which route a call follows, and its output.

A `Route` says, for each row of the batch, which adapter it goes through:
`rows [batch]` holds an index into `slots` (the model's adapter names, in
creation order), and `len(slots)` for a row that takes the base alone.
`rows` is a tensor, so a compiled function that receives it as data serves
every routing without a new trace (`keras_gralora/routing.py` feeds it to
`predict` and `generate`). Routes are kept per thread: a route entered in
one thread never changes what another thread's calls compute.

Inside a layer the adapters that share one shape are stacked, and each row
gathers its own (`ops.routed_block_forward`); a row whose adapter this layer
lacks gets zero, so that layer computes its base for it.
"""

import dataclasses
import threading

import numpy as np
from keras import ops

from keras_gralora import ops as gralora_ops
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE, describe

_LOCAL = threading.local()


@dataclasses.dataclass(eq=False)
class Route:
    rows: object  # int32 tensor [batch]: an index into `slots`, `len(slots)` for the base
    slots: tuple  # adapter names
    layers: frozenset  # ids of the layers the route applies to
    where: str  # how messages name the routing
    values: object = None  # `rows` as numpy, where known (an entered routing)
    cache: dict = dataclasses.field(default_factory=dict)  # per-row picks and scales, shared by the layers


def _stack():
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


class following:
    """Context manager: calls in this thread follow `route` (`None`: no route, whatever is entered outside)."""

    def __init__(self, route):
        self.route = route

    def __enter__(self):
        _stack().append(self.route)
        return self.route

    def __exit__(self, *exc):
        _stack().pop()


def current(layer):
    """The route `layer`'s call follows in this thread, or `None`."""
    stack = getattr(_LOCAL, "stack", None)
    route = stack[-1] if stack else None
    return route if route is not None and id(layer) in route.layers else None


def entered(layer_ids):
    """The routes entered in this thread that include any of `layer_ids` (`None`: any), innermost first."""
    return [route for route in reversed(_stack())
            if route is not None and (layer_ids is None or route.layers & layer_ids)]


def check_routable(layer):
    """Raises `ValueError` unless the rows of `layer`'s input are its first axis (what routing splits)."""
    layout = getattr(layer, "_layout", None)
    if layout is not None and (layout.n_batch == 0 or layout.input_perm[0] != 0):
        raise ValueError(
            f"{describe(layer)} at '{layer.path}': equation {layer.equation!r} does not keep the input's first "
            "axis as a batch axis, so its rows cannot be routed to different adapters. Route a model whose "
            "adapted layers take the batch first (every KerasHub projection does)."
        )


def routed_output(layer, x, route, training):
    """The summed adapter output of `layer` for `x [rows, ..., in]`, each row through its routed adapter."""
    if training:
        raise ValueError(
            f"{describe(layer)} at '{layer.path}' was called with training=True inside {route.where}. Routing "
            "rows to adapters is for inference (as PEFT's adapter_names); train one adapter at a time with "
            "`keras_gralora.set_active_adapters` outside the routing block."
        )
    n_rows, batch = route.rows.shape[0], x.shape[0]
    if n_rows is not None and batch is not None and n_rows != batch:
        raise ValueError(
            f"{route.where} gives {n_rows} adapter names, but {describe(layer)} at '{layer.path}' got a batch of "
            f"{batch} rows. Give one name per row of the batch."
        )
    lead = tuple(ops.shape(x)[:-1])
    adapters = list(layer._gralora.adapters.values())
    in_features = adapters[0].variables[0].shape[0] * adapters[0].variables[0].shape[1]
    x = ops.reshape(ops.cast(x, ADAPTER_DTYPE), (ops.shape(x)[0], -1, in_features))
    y = None
    for members in _groups(adapters, route.slots):
        out = _group_output(x, route, members)
        y = out if y is None else ops.add(y, out)
    return ops.reshape(y, lead + (ops.shape(y)[-1],))


def _groups(adapters, slots):
    """The routed adapters, `[(slot, adapter)]` per shape of their variables (those can be stacked)."""
    groups = {}
    for adapter in adapters:
        if adapter.name in slots:
            shapes = tuple(tuple(v.shape) for v in adapter.variables)
            groups.setdefault(shapes, []).append((slots.index(adapter.name), adapter))
    return list(groups.values())


def _group_output(x, route, members):
    """Rows whose adapter is in `members` through it; zero for the other rows."""
    pick, present, scale = _rows_of(route, members)
    gathered = [
        ops.take(ops.stack([adapter.variables[i].value for _, adapter in members]), pick, axis=0)
        for i in range(len(members[0][1].variables))
    ]
    y = gralora_ops.routed_block_forward(x, *gathered[:2], scale, *gathered[2:])
    return ops.where(present, y, 0.0)


def _rows_of(route, members):
    """`(pick, present, scale)` per row for `members`: which member it gathers, whether it is theirs, its scale.

    Computed once per route and set of members, which every layer with those adapters shares: in numpy
    for an entered routing (its tensors are made per call, so no trace keeps one), with `ops` for the
    rows a compiled step received (its route lives as long as that trace).
    """
    key = tuple((slot, adapter.config.scale) for slot, adapter in members)
    if key not in route.cache:
        table = np.full(len(route.slots) + 1, len(members), dtype="int32")  # slot -> position in `members`
        table[[slot for slot, _ in members]] = np.arange(len(members))
        scales = np.array([scale for _, scale in key] + [0.0], dtype=ADAPTER_DTYPE)
        if route.values is not None:
            position = table[route.values]
            route.cache[key] = (np.minimum(position, len(members) - 1), (position < len(members))[:, None, None],
                                scales[position][:, None, None])
        else:
            position = ops.take(table, route.rows)
            route.cache[key] = (ops.minimum(position, len(members) - 1),
                                ops.reshape(ops.less(position, len(members)), (-1, 1, 1)),
                                ops.reshape(ops.take(scales, position), (-1, 1, 1)))
    pick, present, scale = route.cache[key]
    return (pick, present, scale) if route.values is None else tuple(map(ops.convert_to_tensor, (pick, present, scale)))
