"""One way to change a model's adapter state safely: record what may change, apply, put it back on failure.

Every mutator validates first and writes only when nothing is left to check
(see the reliability guide); this is the last line behind that: a write
that fails all the same (a device error, an interrupt, a bug) must not leave
half a change. `Snapshot` records exactly what a change may touch, chosen
by the caller, so taking it costs only what the change can reach:

- `variables`: values (adapter factors, biases, `modules_to_save`);
- `kernels`: the storage and merged names of the layers whose kernels may change, bit for bit (a copy
  of each kernel: callers name only the layers a change can reach);
- `structure`: which layers are adapted, their adapters, the active set and
  every trainable flag (a change that adds adapters or adapts layers);
- `deletions`: the adapters themselves, variables included, so that a change
  that deletes adapters (or unadapts layers) can put them back as they were.

`rolled_back(model, ...)` is the context manager the mutators use.
"""

import contextlib

from keras_gralora.backend import to_numpy
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.in_place import adapt_in_place, unadapt_in_place
from keras_gralora.surgery.selection import active_adapters, adapted_layers


class Snapshot:
    """What a state change may touch, recorded so that `restore()` puts it back exactly.

    Args:
        model: The model (or layer) whose adapters change.
        variables: The variables whose values may change.
        kernels: The adapted layers whose kernels may change (merge, unmerge, load onto a merged layer).
        structure: Whether adapters may be added, layers adapted, the active set or trainable flags changed.
        deletions: Whether adapters may be deleted (implies `structure`).
    """

    def __init__(self, model, variables=(), kernels=(), structure=False, deletions=False):
        self.model = model
        self.values = [(variable, to_numpy(variable)) for variable in variables]
        self.kernels = [(layer, layer.merge_state()) for layer in kernels]
        self.structure = structure or deletions
        self.deleted = [_record(layer) for layer in adapted_layers(model)] if deletions else []
        if self.structure:
            self.names = {id(layer): layer.adapter_names for layer in adapted_layers(model)}
            self.active = active_adapters(model)
            self.flags = [(layer, layer.trainable) for layer in model._flatten_layers(include_self=True)]
            self.flags += [(variable, variable.trainable) for variable in model.weights]

    def restore(self):
        """Puts back what was recorded: new adapters and adapted layers go, values, kernels and flags return."""
        if self.structure:
            for layer in adapted_layers(self.model):
                for name in [n for n in layer.adapter_names if n not in self.names.get(id(layer), [])]:
                    layer.delete_adapter(name)
                if id(layer) not in self.names and not layer.adapter_names:
                    unadapt_in_place(layer)
            for layer, adapters, order in self.deleted:
                _put_back(layer, adapters, order)
            for layer in adapted_layers(self.model):
                layer.set_active_adapters(self.active)
        for variable, value in self.values:
            variable.assign(value)
        for layer, state in self.kernels:
            layer.restore_merge_state(state)
        if self.structure:
            for obj, trainable in self.flags:
                obj.trainable = trainable


def _record(layer):
    """`(layer, its NamedAdapters, its variable lists)`: what `_put_back` needs after a deletion."""
    order = (list(layer._trainable_variables), list(layer._non_trainable_variables))  # Keras' `layer.weights` order
    return layer, list(layer._gralora.adapters.values()), order


def _put_back(layer, adapters, order):
    """Gives `layer` its `adapters` (the recorded `NamedAdapter`s, variables included) again, in their order."""
    missing = [adapter for adapter in adapters if adapter.name not in getattr(layer, "adapter_names", ())]
    if missing and not getattr(layer, "attached", isinstance(layer, GraLoRAAdapter)):  # unadapted by the change
        adapt_in_place(layer, missing[0].name, missing[0].config)
        layer.delete_adapter(missing[0].name)
    for adapter in missing:
        with layer._unlocked_tracker():
            for variable in adapter.variables:
                layer._track_variable(variable)
        layer._gralora.adapters[adapter.name] = adapter
    layer._gralora.adapters = dict(sorted(layer._gralora.adapters.items(), key=lambda item: item[1].created))
    layer._trainable_variables[:], layer._non_trainable_variables[:] = order


@contextlib.contextmanager
def rolled_back(model, variables=(), kernels=(), structure=False, deletions=False):
    """Context manager: an exception inside restores what `Snapshot(model, ...)` recorded on entry, then rises."""
    snapshot = Snapshot(model, variables, kernels, structure, deletions)
    try:
        yield snapshot
    except BaseException:
        snapshot.restore()
        raise
