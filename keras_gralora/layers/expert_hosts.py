"""The layers holding expert weights, once adapted: `GraLoRA<their class>`, reading the adapted weights in `call`.

`attach` gives an expert weight (`experts.ExpertWeight`) its adapter layer
and turns the host's class into its GraLoRA subclass (as `in_place.py`
turns a Dense into a `GraLoRADense`): inside the host's own `call`, and in
this thread only, each adapted attribute reads `adapted_kernel()` (the
stored weight plus the active deltas, formed once per call); everywhere
else, the stored weight. `detach` undoes both.

The delta is formed once per call (`E * in * out * r / k` multiply-adds),
not per token: KerasHub's experts multiply every token by every expert's
whole matrix, so it costs `r / (k * tokens)` of their own matmul.
Applying the adapters to the activations instead would take a rewrite of
each family's forward code, and is cheaper only below about
`in * out / (in + out)` tokens per call (the delta's product takes `k`
times its minimal multiply-adds, `ops.delta_matrix`; measured: about 250
tokens at `in = 256`, `out = 512`, `benchmarks/moe_step.py`); for
generation, merge the adapters first.
"""

import contextvars

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.experts import ExpertWeight, GraLoRAExpertWeights, expert_attributes, holder_attribute
from keras_gralora.layers.serialization import exporting

_READING = contextvars.ContextVar("keras_gralora_expert_hosts_in_call", default=frozenset())
_HOST_CLASS = {}  # plain host class -> its GraLoRA subclass
PLAIN_HOST_CLASS = {}  # and back


def holders(host):
    """The `GraLoRAExpertWeights` of `host`, one per adapted weight."""
    readable = [name for name, value in vars(type(host)).items() if isinstance(value, _AdaptedRead)]
    return [holder for name in readable if (holder := getattr(host, holder_attribute(name), None)) is not None]


class _AdaptedRead:
    """A host class's expert-weight attribute: inside the host's `call`, the adapted weight; else the stored one."""

    def __init__(self, attribute):
        self.attribute = attribute

    def __get__(self, host, owner=None):
        if host is None:
            return self
        stored = vars(host)[self.attribute]
        holder = getattr(host, holder_attribute(self.attribute), None) if id(host) in _READING.get() else None
        return stored if holder is None else holder.adapted_kernel()

    def __set__(self, host, value):
        vars(host)[self.attribute] = value


class ExpertsHost:
    """Mixin of an adapted host's class: its expert weights read adapted in `call`, and saved unmerged."""

    def call(self, *args, **kwargs):
        token = _READING.set(_READING.get() | {id(self)})  # this thread (and task) only: concurrent callers unaffected
        try:
            return super().call(*args, **kwargs)
        finally:
            _READING.reset(token)

    def save_own_variables(self, store):
        """As Keras' `Layer.save_own_variables` (keys `"0"`, `"1"`...); adapted weights unmerged (an export: merged)."""
        values = {}
        for holder in holders(self):
            found = holder.merged_storage() if exporting() else holder.unmerged_storage()
            if holder.variable.name in found:
                values[id(holder.variable)] = found[holder.variable.name]
        for index, variable in enumerate(self._trainable_variables + self._non_trainable_variables):
            store[str(index)] = values.get(id(variable), variable)


def host_class(cls, attribute):
    """`GraLoRA<cls>`, reading `attribute` adapted (made once per class; attributes added as adapted)."""
    if cls not in _HOST_CLASS:
        _HOST_CLASS[cls] = type(f"GraLoRA{cls.__name__}", (ExpertsHost, cls), {"__module__": __name__})
        PLAIN_HOST_CLASS[_HOST_CLASS[cls]] = cls
    adapted = _HOST_CLASS[cls]
    if not isinstance(vars(adapted).get(attribute), _AdaptedRead):
        setattr(adapted, attribute, _AdaptedRead(attribute))
    return adapted


def attach(target, name, config):
    """Adapts expert weight `target` (an `ExpertWeight`, or a detached holder) with adapter `name`; the holder.

    The host lists its adapter layers in its weights' order whatever order they came in (a file's, a
    rollback's), so its variables (and an optimizer's slots for them) are in the same order in every build.
    """
    if not isinstance(target, ExpertWeight):  # a detached holder
        holder = target
        holder.add_adapter(name, config)
    else:
        holder = GraLoRAExpertWeights(target.variable, target.host, target.attribute, config, name, name=target.name)
        holder._parent_path = target.host.path  # its path (and its variables'): `<host path>/<weight name>`
        holder.build()
    host = holder.host()
    cls = PLAIN_HOST_CLASS.get(type(host), type(host))
    with GraLoRAAdapter._unlocked_tracker(host):
        setattr(host, holder_attribute(holder.attribute), holder)
    order = {name: index for index, name in enumerate(expert_attributes(host))}
    adapted = sorted(
        (layer for layer in host._layers if isinstance(layer, GraLoRAExpertWeights)), key=lambda h: order[h.attribute]
    )
    host._layers[:] = [layer for layer in host._layers if not isinstance(layer, GraLoRAExpertWeights)] + adapted
    host.__class__ = host_class(cls, holder.attribute)
    return holder


def detach(holder):
    """Takes `holder` off its host; the host's plain class returns with its last adapted weight."""
    host = holder.host()
    with GraLoRAAdapter._unlocked_tracker(host):
        host._tracker.untrack(holder)
        delattr(host, holder_attribute(holder.attribute))
    if not holders(host):
        host.__class__ = PLAIN_HOST_CLASS[type(host)]
