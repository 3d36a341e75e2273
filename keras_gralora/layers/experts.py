"""GraLoRA on raw expert weights `[E, in, out]`: the experts of KerasHub's mixture-of-experts models.

KerasHub's experts are no Dense layers: one layer (the *host*, e.g.
`MixtralMoeExperts`) holds each projection of all its experts as one
`[E, in, out]` weight and multiplies by it in its own `call`
(`einsum("th,ehm->etm", x, self._expert_feedforward_gate_dense)`). An
adapted weight gets a small layer of its own, `GraLoRAExpertWeights`, which
the host tracks as `gralora_<attribute>` (path `<host path>/<weight name>`,
the key the pattern arguments match) and which holds one Dense grid per
expert, `a [E, k, in/k, r]`, `b [E, k, r, out/k]`. The host's class becomes
`GraLoRA<its class>` (as a Dense becomes a `GraLoRADense`, `in_place.py`),
whose only changes are that, inside its `call`, the adapted attributes read
the frozen weight plus the active adapters' deltas, and that its files hold
the weight unmerged. So the experts' own forward code runs unchanged on the
adapted weight, as PEFT's `target_parameters` does with torch's
parametrizations. Outside `call` the attribute is the stored weight.

The host's side (its class, `attach`, `detach`) is `expert_hosts.py`.
"""

import weakref

import keras
from keras import ops
from keras.src.backend.common.variables import AutocastScope, get_autocast_scope  # Keras' autocast of variables

from keras_gralora import ops as gralora_ops
from keras_gralora.backend import to_numpy
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE
from keras_gralora.layers.quantized import own_variables
from keras_gralora.layers.serialization import exporting


def expert_attributes(layer):
    """The attributes of `layer` holding expert weights: float `[E, in, out]` variables, `E = layer.num_experts`."""
    experts = getattr(layer, "num_experts", None)
    if isinstance(layer, GraLoRAAdapter) or not isinstance(experts, int) or not layer.built:
        return []
    return [
        name
        for name, value in vars(layer).items()
        if isinstance(value, keras.Variable)
        and len(value.shape) == 3
        and value.shape[0] == experts
        and "float" in keras.backend.standardize_dtype(value.dtype)
    ]


def holder_attribute(attribute):
    """The host attribute that holds the adapters of weight `attribute`: `gralora_<attribute>`."""
    return "gralora_" + attribute.lstrip("_")


def expert_weights(model):
    """Every expert weight inside `model`, in model order: its `GraLoRAExpertWeights`, or an `ExpertWeight`."""
    found = []
    for layer in model._flatten_layers(include_self=False):
        for attribute in expert_attributes(layer):
            holder = getattr(layer, holder_attribute(attribute), None)
            found.append(holder if holder is not None else ExpertWeight(layer, attribute))
    return found


class ExpertWeight:
    """One expert weight of `host` (its attribute `attribute`), not adapted yet: a target of `enable_gralora`.

    Answers what the checks before adapting ask of a layer (`path`, `name`,
    `built`, no quantization); `GraLoRAExpertWeights` adapts it.
    """

    EXPERTS = True
    built = True
    quantization_mode = None
    lora_rank = None
    kernel_constraint = None
    bias = None

    def __init__(self, host, attribute):
        self.host, self.attribute = host, attribute
        self.variable = vars(host)[attribute]
        self.name = self.variable.name
        self.path = f"{host.path}/{self.name}"

    def adapted(self):
        """Its `GraLoRAExpertWeights` once adapted, else `None`."""
        return getattr(self.host, holder_attribute(self.attribute), None)

    def __repr__(self):
        return f"<ExpertWeight '{self.path}' {tuple(self.variable.shape)}>"


class GraLoRAExpertWeights(GraLoRAAdapter, keras.layers.Layer):
    """GraLoRA adapters on one `[E, in, out]` expert weight of another layer: the Dense grid, once per expert.

    Made by `enable_gralora(..., target_parameters=...)`, never called: the
    host layer reads `adapted_kernel()` (the weight plus the active deltas)
    in its own `call`. Named adapters, merging (into the host's weight), files and
    summaries work as for a Dense layer; there is no dropout (the delta is
    added to the weight, so there is no adapter input to drop, as PEFT
    refuses `lora_dropout` for `target_parameters`), no routing, no quantized
    weight.

    Args:
        weight: The host's `[E, in, out]` variable.
        host: The layer that holds `weight` and multiplies by it.
        attribute: The host attribute holding `weight`.
        config: The first adapter's `GraLoRAConfig`.
        adapter_name: Its name.
        **kwargs: Keras layer arguments (`name`).

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAConfig
        >>> from keras_gralora.layers.expert_hosts import attach
        >>> from keras_gralora.layers.experts import ExpertWeight
        >>> class Experts(keras.layers.Layer):
        ...     num_experts = 4
        ...     def build(self, _):
        ...         self.w = self.add_weight(shape=(4, 8, 6), name="w")
        ...     def call(self, x):
        ...         return keras.ops.einsum("th,ehm->etm", x, self.w)
        >>> experts = Experts()
        >>> _ = experts(keras.ops.ones((3, 8)))
        >>> holder = attach(ExpertWeight(experts, "w"), "default", GraLoRAConfig(r=4, k=2, init_weights=False))
        >>> [tuple(v.shape) for v in holder.adapter("default").variables], type(experts).__name__
        ([(4, 2, 4, 4), (4, 2, 4, 3)], 'GraLoRAExperts')
        >>> tuple(experts(keras.ops.ones((3, 8))).shape)
        (4, 3, 6)
    """

    EXPERTS = True
    ROUTABLE = False
    IN_ALL = False
    quantization_mode = None
    kernel_constraint = None
    bias = None
    activation = None

    def __init__(self, weight, host, attribute, config, adapter_name="default", **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)  # the settings come as a config, not as GraLoRAAdapter's keywords
        object.__setattr__(self, "_weight", weight)  # not tracked: the host holds (and saves) it
        object.__setattr__(self, "_host", weakref.ref(host))
        self.attribute = attribute
        self._init_gralora(config, adapter_name)

    @property
    def variable(self):
        """The host's `[E, in, out]` weight these adapters update."""
        return self._weight

    def host(self):
        """The layer holding the weight (a method: Keras' walks of the object structure read every property)."""
        return self._host()

    @property
    def attached(self):
        """Whether the host holds this layer (`detach` leaves it outside, for a rollback to attach again)."""
        return getattr(self._host(), holder_attribute(self.attribute), None) is self

    @classmethod
    def matrix_shape_of(cls, layer):
        return tuple(layer.variable.shape[1:])

    @classmethod
    def lead_shape_of(cls, layer):
        return tuple(layer.variable.shape[:1])

    @property
    def _kernel(self):
        return self._weight

    def _frozen_kernel(self):
        return self._weight

    @property
    def kernel(self):
        """The stored weight (merged adapters in it); the host's `call` multiplies by `adapted_kernel()`.

        Not the adapted weight, as a Dense layer's `kernel` is: Keras' walks of
        the object structure read every property, and this one would form
        an `[E, in, out]` delta on each.
        """
        return self._weight

    def adapted_kernel(self):
        """The weight as the host's `call` multiplies by it: stored weight plus the active adapters' deltas.

        Added in float32, rounded once to the weight's dtype, then cast as
        Keras autocasts the weight itself (a `bfloat16` compute policy).
        """
        weight, forward = self._weight, self._gralora.forward
        if not forward:
            return weight
        with AutocastScope(None):  # the stored float, not its compute-dtype copy
            total = ops.cast(ops.convert_to_tensor(weight), ADAPTER_DTYPE)
        for adapter in forward:
            total = ops.add(total, gralora_ops.delta_matrix(*adapter.factors()))
        total = ops.cast(total, weight.dtype)
        scope = get_autocast_scope()
        return scope.maybe_cast(total) if scope is not None and weight._autocast else total

    def call(self, *args, **kwargs):
        raise TypeError(
            f"{self._gralora_where()} is not called: its host '{self._host().name}' reads `adapted_kernel()` in its "
            "own call."
        )

    def _base_output(self, inputs, kernel=None):
        raise TypeError(f"{self._gralora_where()}: expert weights have no forward pass of their own.")

    def _adapter_output(self, inputs, training):
        raise TypeError(f"{self._gralora_where()}: expert weights have no forward pass of their own.")

    def quantize(self, mode=None, type_check=True, config=None):
        """Keras quantizes no raw expert weight; `Model.quantize` warns and leaves it float, as before adapting."""
        raise NotImplementedError(
            f"{self._gralora_where()}: expert weights stay float (Keras quantizes Dense/EinsumDense kernels only)."
        )

    def _named_variables(self):
        return {self._weight.name: self._weight, **own_variables(self)}

    def _saved_variables(self):
        return own_variables(self)  # the host saves the weight

    def _storage(self):
        return {self._weight.name: to_numpy(self._weight)}

    def save_own_variables(self, store):
        if self.built and not exporting():  # an export holds no adapters (the host saves the merged weight)
            for name, variable in own_variables(self).items():
                store[name] = variable
