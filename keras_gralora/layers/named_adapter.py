"""The parts of a GraLoRA layer that need no layer: checks, names, one adapter's record."""

import dataclasses
import itertools

import keras

from keras_gralora.config import GraLoRAConfig
from keras_gralora.layers.quantized import check_quantization_mode

_CREATION = itertools.count()  # orders adapters across layers (`adapter_names(model)`)

# Adapters live in float32 whatever the layer's dtype policy, as in PEFT.
ADAPTER_DTYPE = "float32"
ROLES = ("gralora_a", "gralora_b", "gralora_hybrid_a", "gralora_hybrid_b")


def variable_name(role, adapter_name):
    """`gralora_a_math`: the variable of `role` in adapter `adapter_name` (torch forbids dots)."""
    return f"{role}_{adapter_name}"


def describe(layer):
    """How error messages name a layer."""
    return f"{type(layer).__name__} '{layer.name}'"


def check_base_layer(layer, config):
    """Checks that a Dense/EinsumDense/convolution can carry `config`; returns the config.

    Works on the plain Keras layer too, so `inject.py` can check every target
    before it changes any.
    """
    where = describe(layer)
    if getattr(layer, "lora_rank", None):
        raise ValueError(
            f"{where}: Keras LoRA (lora_rank={layer.lora_rank}) and GraLoRA cannot be combined "
            "on one layer. Drop `lora_rank`/`enable_lora`; GraLoRA's `r` plays that role."
        )
    check_quantization_mode(layer.quantization_mode, where)
    if isinstance(layer, keras.layers.Embedding):
        check_table(layer, config, where)
    if getattr(layer, "EXPERTS", False) and config.dropout:
        raise ValueError(
            f"{where} at '{layer.path}': dropout={config.dropout} on expert weights: their adapters are added to the "
            "weight the experts multiply by, so there is no adapter input to drop (PEFT's target_parameters "
            "refuses lora_dropout too). Use dropout=0."
        )
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(
            f"{where}: a grouped convolution (groups={layer.groups}) has one kernel per group of channels; "
            "GraLoRA adapts convolutions with groups=1. Leave this layer out of the targets."
        )
    attribute = "embeddings_constraint" if isinstance(layer, keras.layers.Embedding) else "kernel_constraint"
    if (constraint := getattr(layer, attribute)) is not None:
        raise ValueError(
            f"{where}: the base layer has {attribute}={constraint!r}, which "
            "GraLoRA cannot honour (the kernel is frozen and merging would bypass the constraint). "
            f"Remove the {attribute.replace('_', ' ')}."
        )
    return config.validate(where)


def check_table(layer, config, where):
    """An embedding table takes GraLoRA without dropout."""
    if config.dropout:
        raise ValueError(
            f"{where}: dropout={config.dropout} on an embedding table: its input is a token id (a one-hot "
            "row), there is no activation to drop (PEFT's embedding LoRA has none). Use dropout=0 here "
            "(or leave the table out of target_layer_names)."
        )


@dataclasses.dataclass(eq=False)
class NamedAdapter:
    """One adapter of a layer: its name, settings and (once built) variables.

    Layers make these; read them with `layer.adapter(name)`.

    Args:
        name: The adapter's name.
        config: Its `GraLoRAConfig`.
        variables: In PEFT's order: A `(k, in/k, r)`, B `(k, r, out/k)`,
            then hybrid A `(in, hybrid_r)` and hybrid B `(hybrid_r, out)`
            when `config.hybrid_r > 0`. Their names end in `_<adapter name>`.

    Attributes:
        created: A process-wide creation counter (orders adapters), set when made.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRADense
        >>> layer = GraLoRADense(16, r=4, k=2, adapter_name="math")
        >>> _ = layer(keras.ops.ones((1, 8)))
        >>> adapter = layer.adapter("math")
        >>> adapter.config.r, [tuple(v.shape) for v in adapter.variables]
        (4, [(2, 4, 4), (2, 4, 8)])
    """

    name: str
    config: GraLoRAConfig
    variables: tuple = ()
    created: int = dataclasses.field(init=False, default_factory=lambda: next(_CREATION))

    def factors(self):
        """`(a, b, scale[, hybrid_a, hybrid_b])`, the arguments of `keras_gralora.ops`."""
        a, b, *hybrid = self.variables
        return (a, b, self.config.scale, *hybrid)
