"""Per-row adapters inside a layer: which route a call follows, and its output.

A `Route` says, for each row of the batch, which adapter it goes through:
`rows [batch]` holds an index into `slots` (the model's adapter names, in
creation order), and `len(slots)` for a row that takes the base alone.
`rows` is a tensor, so a compiled function that receives it as data serves
every routing without a new trace (`keras_gralora/serving/routing.py` feeds it to
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
from keras_gralora.backend import dispatches_each_op
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
    """The route `layer`'s call follows in this thread: the innermost entered that covers it, or `None`.

    Routings over different models nest, each applying to its own model's layers; a `following(None)` (a
    compiled step traced without rows) hides every route entered outside it.
    """
    for route in reversed(getattr(_LOCAL, "stack", ())):
        if route is None:
            return None
        if id(layer) in route.layers:
            return route
    return None


def entered(layer_ids):
    """The routes entered in this thread that include any of `layer_ids` (`None`: any), innermost first.

    As `current`, a `following(None)` hides the routes entered outside it.
    """
    found = []
    for route in reversed(_stack()):
        if route is None:
            break
        if layer_ids is None or route.layers & layer_ids:
            found.append(route)
    return found


def check_routable(layer):
    """Raises `ValueError` unless the rows of `layer`'s input are its first axis (what routing splits)."""
    if not layer.ROUTABLE:
        raise ValueError(
            f"{describe(layer)} at '{layer.path}': per-row adapter routing covers Dense and EinsumDense layers, "
            "not convolutions. Route a model whose adapters sit on projections, or serve each adapter on its own "
            "(`set_active_adapters`, or `export_merged` per adapter)."
        )
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
    if x.shape[0] == 0:  # an empty batch routes to nothing (and its reshapes below could not infer a size)
        b = adapters[0].variables[1]
        return ops.zeros(lead + (b.shape[0] * b.shape[2],), ADAPTER_DTYPE)
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
    rows = _rows_of(route, members)
    weights = [[adapter.variables[i].value for _, adapter in members] for i in range(len(members[0][1].variables))]
    if rows.known is not None and len(rows.known):  # rows known in Python: each row's weights stacked, one op
        gathered = [ops.stack([values[row] for row in rows.known]) for values in weights]
    else:  # a compiled step's rows, or an empty batch
        pick = rows.pick if rows.known is None else _tensor(rows.known)
        gathered = [ops.take(ops.stack(values), pick, axis=0) for values in weights]
    y = gralora_ops.routed_block_forward(x, *gathered[:2], _tensor(rows.scale), *gathered[2:])
    return y if rows.present is None else ops.where(_tensor(rows.present), y, 0.0)


@dataclasses.dataclass
class _Rows:
    """Per row, for one set of stacked adapters: which it takes, whether it is theirs (`None`: all are), its scale."""

    pick: object = None  # int tensor [batch], for rows a compiled step received
    known: object = None  # the same as numpy, for an entered routing's rows
    present: object = None  # bool [batch, 1, 1]
    scale: object = None  # float32 [batch, 1, 1]


def _rows_of(route, members):
    """The `_Rows` of `route` for `members`, computed once per route and shared by every layer with them.

    An entered routing's rows are numpy and become tensors per call, so no trace keeps one (torch's
    eager tensors may be kept: `_tensor`); a compiled step's rows are `ops`, kept as long as its trace.
    """
    key = tuple((slot, adapter.config.scale) for slot, adapter in members)
    if key not in route.cache:
        table = np.full(len(route.slots) + 1, len(members), dtype="int32")  # slot -> position in `members`
        table[[slot for slot, _ in members]] = np.arange(len(members))
        scales = np.array([scale for _, scale in key] + [0.0], dtype=ADAPTER_DTYPE)
        if route.values is not None:
            position = table[route.values]
            present = (position < len(members))[:, None, None]
            found = _Rows(
                known=np.minimum(position, len(members) - 1),
                present=None if present.all() else present,
                scale=scales[position][:, None, None],
            )
        else:
            position = ops.take(table, route.rows)
            found = _Rows(
                pick=ops.minimum(position, len(members) - 1),
                present=ops.reshape(ops.less(position, len(members)), (-1, 1, 1)),
                scale=ops.reshape(ops.take(scales, position), (-1, 1, 1)),
            )
        if dispatches_each_op():  # torch's eager tensors can be kept: no trace holds them
            found.present, found.scale = map(_tensor, (found.present, found.scale))
        route.cache[key] = found
    return route.cache[key]


def _tensor(value):
    return ops.convert_to_tensor(value) if isinstance(value, np.ndarray) else value
