"""How a GraLoRA layer saves itself in Keras files: its config and its own variables.

The config lists every adapter with its settings and the active ones, so
`.keras` files rebuild the layer as it was. The variables are stored under
their names (`kernel`, `bias`, `gralora_a_<adapter>`, ...), the kernel
always unmerged, so a merged layer and an unmerged one save the same thing
and reload unmerged. Files written before adapters had names (one adapter,
`gralora_a`, `r`/`k` at the top of the config) still load.
"""

import contextlib
import contextvars

from keras_gralora.config import DEFAULT_ADAPTER, GraLoRAConfig
from keras_gralora.layers.named_adapter import ROLES, variable_name
from keras_gralora.layers.quantized import base_class, own_variables, plain_twin

_EXPORTING = contextvars.ContextVar("keras_gralora_exporting", default=False)


def exporting():
    """Whether this thread is inside `exporting_plain_layers()`."""
    return _EXPORTING.get()


@contextlib.contextmanager
def exporting_plain_layers():
    """In this thread only, GraLoRA layers save as the plain layers their merge would give (`export.py`).

    Other threads, and the layers themselves, see nothing of it.
    """
    token = _EXPORTING.set(True)
    try:
        yield
    finally:
        _EXPORTING.reset(token)


class AdapterSerialization:
    """Mixin of `GraLoRAAdapter`: `get_config`/`from_config` and own-variable saving."""

    def get_config(self):
        if exporting():
            return base_class(self).get_config(self)
        adapters = [{"name": a.name, **a.config.to_dict()} for a in self._gralora.adapters.values()]
        return {**super().get_config(), "adapters": adapters, "active_adapters": list(self._gralora.active)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        adapters, active = config.pop("adapters", None), config.pop("active_adapters", None)
        if adapters is None:  # written before adapters had names: `r`, `k`, ... at the top
            return super().from_config(config)
        named = [(e["name"], GraLoRAConfig(**{k: v for k, v in e.items() if k != "name"})) for e in adapters]
        (name, first), *rest = named
        layer = super().from_config({**config, **first.layer_kwargs(), "adapter_name": name})
        layer._gralora.adapters[name].config = first  # with the model-level settings the constructor lacks
        for name, adapter_config in rest:
            layer.add_adapter(name, adapter_config)
        layer.set_active_adapters(active)
        return layer

    def _named_variables(self):
        """The layer's own variables by name: kernel, bias, a quantized kernel's scale (and zero point), adapters."""
        return own_variables(self)

    def _saved_variables(self):
        """What this layer's slot of a Keras file holds: `_named_variables`, unless another layer saves some."""
        return self._named_variables()

    def save_own_variables(self, store):
        if not self.built:
            return
        if exporting():  # what the plain layer holding the merged kernel saves
            return plain_twin(self, self.merged_storage()).save_own_variables(store)
        unmerged = self.unmerged_storage()
        for name, variable in self._named_variables().items():
            store[name] = unmerged.get(name, variable)

    def load_own_variables(self, store):
        if not self.built:
            return
        expected = self._saved_variables()
        keys = self._stored_keys(store)
        missing = sorted(set(expected) - set(keys))
        unexpected = sorted(set(keys) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{self._gralora_where()}: the saved variables do not match this layer "
                f"(missing: {missing}, unexpected: {unexpected}). Was the file saved from a layer "
                f"with other adapters than {self.adapter_names}?"
            )
        for name, variable in expected.items():
            saved_shape = tuple(store[keys[name]].shape)
            if saved_shape != tuple(variable.shape):
                raise ValueError(
                    f"{self._gralora_where()}: saved `{name}` has shape {saved_shape}, "
                    f"this layer's has {tuple(variable.shape)}."
                )
        for name, variable in expected.items():
            variable.assign(store[keys[name]])
        self._gralora.merged.clear()
        self._gralora.quantized_original = None
        self._refresh()

    def _stored_keys(self, store):
        """`{our variable name: its key in store}`; files without adapter names map to our one adapter."""
        keys = {key: key for key in store.keys()}
        if any(role in keys for role in ROLES) and self.adapter_names == [DEFAULT_ADAPTER]:
            keys = {(variable_name(key, DEFAULT_ADAPTER) if key in ROLES else key): key for key in keys}
        return keys
