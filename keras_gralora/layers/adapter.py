"""What every GraLoRA layer kind shares: its constructor, named adapters and the forward pass.

A layer holds any number of named adapters (creation order). The forward
pass adds every *active* adapter that is not merged, each with its own
scale, as PEFT does (merging: `layers/merging.py`; saving:
`layers/serialization.py`). Model-wide bookkeeping (which adapters are active
everywhere, deleting, disabling) lives in `keras_gralora/lifecycle/adapters.py`, merging
and unloading in `keras_gralora/lifecycle/merge.py`.
"""

import dataclasses
from typing import Any

import keras
from keras import ops

from keras_gralora import ops as gralora_ops
from keras_gralora.backend import add_same_shape
from keras_gralora.config import GraLoRAConfig, check_adapter_name
from keras_gralora.layers import routed
from keras_gralora.layers.adapter_weights import AdapterWeights
from keras_gralora.layers.merging import AdapterMerging
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE, NamedAdapter, check_base_layer, describe
from keras_gralora.layers.quantized import QuantizedBase, own_variables
from keras_gralora.layers.serialization import AdapterSerialization


@dataclasses.dataclass(eq=False)
class _State:
    adapters: dict  # name -> NamedAdapter, creation order
    active: tuple = ()  # may name adapters other layers have and this one lacks
    merged: list = dataclasses.field(default_factory=list)  # merge order
    quantized_original: dict = None  # a quantized kernel's storage before the first merge (exact unmerge)
    enabled: bool = True
    forward: tuple = ()  # derived: the adapters `call` adds
    merged_active: tuple = ()  # derived: active adapters already in the kernel
    version: int = 0  # moves with every change of what the forward pass computes: `guards.traced_state`


class GraLoRAAdapter(AdapterWeights, AdapterMerging, AdapterSerialization, QuantizedBase):
    """The adapter API every GraLoRA layer kind shares (Dense, EinsumDense, convolutions, tables).

    A mixin placed before the Keras layer class in the bases: its methods
    hold any number of named adapters on one frozen kernel, add the active
    ones in the forward pass (each with its own scale, as PEFT), merge and
    unmerge them, and report their updates. Its constructor takes the Keras
    layer's arguments, then, by keyword, `r`, `k`, `hybrid_r`, `alpha`,
    `dropout`, `init_weights` and `adapter_name`, which create the first
    adapter; `add_adapter` adds the others.

    A layer kind (a subclass) provides the methods of `LAYER_CONTRACT`,
    checked when the class is defined: `_base_output`, `_adapter_output`,
    `matrix_shape_of` and, when its kernel is not already `[in, out]`,
    `_kernel_view` (each documented below). `tests/layer_harness.py` runs
    every layer kind through the same checks.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAConfig, GraLoRADense
        >>> layer = GraLoRADense(16, r=4, k=2)
        >>> _ = layer(keras.ops.ones((1, 8)))
        >>> layer.add_adapter("math", GraLoRAConfig(r=8, k=4, init_weights=False))
        >>> layer.set_active_adapters(["default", "math"])
        >>> tuple(layer.delta_matrix().shape), layer.merged
        ((8, 16), False)
    """

    LAYER_CONTRACT = ("_base_output", "_adapter_output", "matrix_shape_of")
    ROUTABLE = True  # whether `adapter_routing` can send each row through its own adapter here
    IN_ALL = True  # whether `target_layer_names="all"` takes this kind (embeddings: only when named, as PEFT)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        kind = mro[: mro.index(GraLoRAAdapter)]  # the layer kind and its subclasses, before this contract
        if missing := [name for name in GraLoRAAdapter.LAYER_CONTRACT if not any(name in vars(c) for c in kind)]:
            raise TypeError(
                f"{cls.__name__}: a GraLoRA layer kind must define {missing} (see `GraLoRAAdapter`'s layer contract: "
                "GraLoRADense is the smallest example)."
            )

    # --- The layer contract ---

    def _base_output(self, inputs, kernel=None):
        """The frozen projection of `inputs` before bias and activation; `kernel` (`[in, out]` view) replaces it."""
        raise NotImplementedError

    def _adapter_output(self, inputs, training):
        """The sum of the forward adapters' outputs for `inputs`, in the base output's layout."""
        raise NotImplementedError

    @classmethod
    def matrix_shape_of(cls, layer):
        """`(in, out)`: the matrix view of a built plain `layer`'s kernel (also when quantized)."""
        raise NotImplementedError

    @classmethod
    def block_sizes_of(cls, layer):
        """`(in, out)` sizes that the `k` blocks split (a convolution's channels); by default `matrix_shape_of`."""
        return cls.matrix_shape_of(layer)

    @classmethod
    def lead_shape_of(cls, layer):
        """Axes before every adapter variable's own: `()`, or `(E,)` for a weight of `E` experts' matrices."""
        return ()

    # `_kernel_view()` (merging.py): the kernel as `[in, out]`; a kind whose kernel is laid out otherwise overrides it.

    def __init__(
        self,
        *args: Any,
        r: int = 32,
        k: int = 2,
        hybrid_r: int = 0,
        alpha: float | None = None,
        dropout: float = 0.0,
        init_weights: bool = True,
        adapter_name: str = "default",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)  # the Keras layer's own arguments
        self._init_gralora(GraLoRAConfig(r, k, hybrid_r, alpha, dropout, init_weights), adapter_name)

    def build(self, input_shape=None):
        super().build(input_shape)
        self._build_gralora()

    def call(self, inputs, training=None):
        return self._add_bias_adapters_activation(self._base_output(inputs), inputs, training)

    def _add_bias_adapters_activation(self, x, inputs, training, adapters=True):
        """The rest of the forward pass after the frozen projection `x` (float or quantized).

        `adapters=False`: `x` already holds them (a kernel with the deltas added).
        """
        state = self._gralora
        if self.bias is not None:
            x = self._add_bias(x)
        if training and state.merged_active and self.trainable:  # `fit` checks earlier: guards.py
            raise ValueError(
                f"{self._gralora_where()}: adapters {list(state.merged_active)} are merged into the kernel "
                "and active, so training would never move them (a merged adapter gets no gradient). Call "
                "`keras_gralora.unmerge_gralora(model)` before training, then merge again when done."
            )
        if adapters and (state.forward or routed.current(self) is not None):
            x = add_same_shape(x, ops.cast(self._adapter_output(inputs, training), x.dtype))
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _add_bias(self, x):
        """`x` plus the bias, broadcast along the last axis (a channels-first convolution overrides it)."""
        return ops.add(x, self.bias)

    def _init_gralora(self, config, adapter_name):
        with self._unlocked_tracker():
            self._gralora = _State(adapters={})
            self._gralora_seed = None
        self.add_adapter(adapter_name, config)

    def _gralora_where(self):
        return describe(self)

    def _kernel_matrix_shape(self):
        return self.matrix_shape_of(self)

    # --- Named adapters (layer level; see `keras_gralora/lifecycle/adapters.py` for the model) ---

    @property
    def adapter_names(self):
        """The names of this layer's adapters, in creation order."""
        return list(self._gralora.adapters)

    def adapter(self, name):
        """The `NamedAdapter` called `name`: `.config`, `.variables`."""
        if name not in self._gralora.adapters:
            raise ValueError(
                f"{self._gralora_where()} has no adapter named {name!r}; its adapters are {self.adapter_names}."
            )
        return self._gralora.adapters[name]

    @property
    def active_adapters(self):
        """The active adapters' names (the forward pass adds those this layer has)."""
        return list(self._gralora.active)

    @property
    def merged_adapters(self):
        """The names of the adapters folded into the kernel, in merge order."""
        return list(self._gralora.merged)

    @property
    def merged(self):
        """Whether any adapter is currently folded into the kernel."""
        return bool(self._gralora.merged)

    @property
    def adapter_variables(self):
        """Every adapter's variables, adapter by adapter in creation order."""
        return [v for adapter in self._gralora.adapters.values() for v in adapter.variables]

    def add_adapter(self, name, config):
        """Adds adapter `name` with `config`; it is active only if it is the layer's first.

        On a built layer the variables are created at once, else at build.
        """
        self.check_new_adapter(name, config)
        adapter = NamedAdapter(name, config)
        if self.built:
            adapter.variables = self._create_variables(name, config)
        self._gralora.adapters[name] = adapter
        if config.dropout > 0 and self._gralora_seed is None:
            with self._unlocked_tracker():
                self._gralora_seed = keras.random.SeedGenerator()
        if len(self._gralora.adapters) == 1:
            self._gralora.active = (name,)
        self._refresh()

    def check_new_adapter(self, name, config):
        """Raises `ValueError` unless `add_adapter(name, config)` would succeed; changes nothing."""
        where = self._gralora_where()
        check_adapter_name(name, where)
        if name in self._gralora.adapters:
            raise ValueError(
                f"{where} at '{self.path}' already has an adapter named {name!r} (adapters: {self.adapter_names}). "
                "Choose another adapter_name, or delete that adapter first."
            )
        check_base_layer(self, config)
        if self.built:
            config.validate_features(*self.block_sizes_of(self), where)

    def delete_adapter(self, name):
        """Removes adapter `name` and its variables; refuses a merged adapter."""
        adapter = self.adapter(name)
        if name in self._gralora.merged:
            raise ValueError(
                f"{self._gralora_where()}: adapter {name!r} is merged into the kernel; deleting it would "
                "leave its update in the kernel for good. Unmerge first (`unmerge_gralora`)."
            )
        del self._gralora.adapters[name]
        for variable in adapter.variables:
            self._untrack_variable(variable)
        self._gralora.active = tuple(n for n in self._gralora.active if n != name)
        self._refresh()

    def replace_adapter(self, name, config, values):
        """Gives adapter `name` new settings and new variables holding `values` (numpy, in `ROLES` order).

        The adapter becomes the newest (its variables come last, as in a
        fresh build that adds it last); whether it is active stays.
        """
        old = self.adapter(name)
        if name in self._gralora.merged:
            raise ValueError(f"{self._gralora_where()}: adapter {name!r} is merged into the kernel; unmerge first.")
        config.validate_features(*self.block_sizes_of(self), self._gralora_where())
        for variable in old.variables:
            self._untrack_variable(variable)
        del self._gralora.adapters[name]
        adapter = self._gralora.adapters[name] = NamedAdapter(name, config)
        adapter.variables = self._create_variables(name, config)
        for variable, value in zip(adapter.variables, values):
            variable.assign(value)
        self._refresh()

    def set_active_adapters(self, names):
        """Makes exactly `names` (a name or a list) active and trainable; the rest inactive and frozen."""
        self._gralora.active = tuple(dict.fromkeys([names] if isinstance(names, str) else names))
        self._refresh()

    def enable_adapters(self, enabled):
        """`False`: the forward pass adds no adapter (merged ones stay in the kernel)."""
        self._gralora.enabled = bool(enabled)
        self._refresh()

    def _refresh(self):
        """Derives trainability and the forward list from the state; moves its version (compiled functions retrace)."""
        state = self._gralora
        for adapter in state.adapters.values():
            for variable in adapter.variables:
                variable.trainable = adapter.name in state.active
        forward = [n for n in state.active if n in state.adapters and n not in state.merged]
        state.forward = tuple(state.adapters[n] for n in forward) if state.enabled else ()
        state.merged_active = tuple(n for n in state.merged if n in state.active)
        state.version += 1

    # --- Weights ---

    def _build_gralora(self):
        """Freezes the base weights and creates the pending adapters' weights."""
        self.freeze_base()
        for adapter in self._gralora.adapters.values():
            if not adapter.variables:
                adapter.variables = self._create_variables(adapter.name, adapter.config)
        self._refresh()

    def freeze_base(self):
        """Makes the layer's own weights other than adapters (kernel, bias, a reverse table) non-trainable."""
        adapters = {id(v) for v in self.adapter_variables}
        for variable in own_variables(self).values():
            if id(variable) not in adapters:
                variable.trainable = False

    # --- Forward ---

    def _gralora_output(self, x, training):
        """Summed output of the adapters to add, for `x [..., in]`: float32, scaled, `[..., out]`."""
        if (route := routed.current(self)) is not None:  # per-row adapters: `keras_gralora.adapter_routing`
            return routed.routed_output(self, x, route, training)
        k, block_in, _ = self._gralora.forward[0].variables[0].shape
        lead = tuple(ops.shape(x)[:-1])
        # One 2-D [tokens, in] view for every matmul: XLA on CPU was several
        # times slower differentiating matmuls over rank-3 inputs (benchmarks/).
        # Sizes come from the weights: a traced `x` may not know its last axis.
        y = self._sum_adapters(ops.reshape(ops.cast(x, ADAPTER_DTYPE), (-1, k * block_in)), training)
        return ops.reshape(y, lead + (ops.shape(y)[-1],))

    def _sum_adapters(self, x, training, forward=None):
        """The sum over the forward adapters of `forward(x after dropout, *adapter.factors())` (`ops.block_forward`)."""
        forward = forward or gralora_ops.block_forward
        y = None
        for adapter in self._gralora.forward:
            rate = adapter.config.dropout
            inputs = keras.random.dropout(x, rate, seed=self._gralora_seed) if training and rate else x
            out = forward(inputs, *adapter.factors())
            y = out if y is None else ops.add(y, out)
        return y
