"""`fix_quantized_gradients`: a quantized model's reverse embedding passes the float model's gradient.

Keras 3.15's int8 `ReversibleEmbedding` (the tied or untied logits
projection of KerasHub's Gemma, Llama, Qwen, Mistral...) quantizes the
hidden states in its reverse call without a straight-through gradient, so
every layer below the logits trains on a wrong gradient: Keras' own LoRA
and GraLoRA alike (`docs/keras-int8-reverse-embedding-gradient.md`).
`layers/reversible_embedding.py` holds the corrected layer; this module
swaps it in, in place, as `inject.py` swaps in GraLoRA layers.
"""

import keras

from keras_gralora.layers.quantized import rebind_quantize
from keras_gralora.layers.reversible_embedding import (
    KERAS_REVERSIBLE_EMBEDDING,
    ReversibleEmbedding,
    restore_int4_inputs,
)

OWN_CALLS = ("call", "quantized_call", "_int8_call", "_int4_call")


def fix_quantized_gradients(model: keras.Layer) -> list[str]:
    """Gives every `ReversibleEmbedding` of `model` a straight-through gradient on its quantized reverse call.

    Each layer becomes `keras_gralora.layers.ReversibleEmbedding` in place
    (the same object, weights, name, config and file slots); its outputs
    stay Keras' own, bit for bit, and only the input gradient of its int8 /
    int4 reverse projection changes, to the float projection's (and an int4
    layer rebuilt from a file reads its inputs unquantized, as
    `quantize("int4")` made it). Use it on a
    model tuned with Keras' own `enable_lora`, before or after `quantize`;
    `enable_gralora` calls it for you. Calling it again does nothing.

    Args:
        model: A Keras model or layer, e.g. a KerasHub backbone or task.

    Returns:
        The paths of the layers it changed.

    Raises:
        ValueError: a quantized subclass of `ReversibleEmbedding` overrides
            its call; nothing was changed.

    Examples:
        >>> import keras
        >>> from keras_gralora import fix_quantized_gradients
        >>> inputs = keras.Input((3,), dtype="int32")
        >>> embedding = keras.layers.ReversibleEmbedding(10, 4, name="tokens")
        >>> model = keras.Model(inputs, embedding(embedding(inputs), reverse=True))
        >>> fix_quantized_gradients(model)
        ['tokens']
        >>> fix_quantized_gradients(model)
        []
    """
    found = [layer for layer in model._flatten_layers() if isinstance(layer, KERAS_REVERSIBLE_EMBEDDING)]
    own = [layer for layer in found if not isinstance(layer, ReversibleEmbedding) and overrides_call(layer)]
    if quantized := [layer for layer in own if layer.quantization_mode is not None]:
        layer = quantized[0]
        raise ValueError(
            f"fix_quantized_gradients: layer '{layer.path}' is a {type(layer).__name__}, a subclass of Keras' "
            f"ReversibleEmbedding with its own {overrides_call(layer)}, quantized {layer.quantization_mode!r}; its "
            "reverse gradient cannot be fixed without changing what it computes, so nothing was changed. Quantize "
            "that layer's model without it, or give the subclass the straight-through gradient of "
            "keras_gralora.layers.ReversibleEmbedding."
        )
    fixed = [layer for layer in found if not isinstance(layer, ReversibleEmbedding) and not overrides_call(layer)]
    for layer in fixed:
        layer.__class__ = ReversibleEmbedding  # compiled train functions retrace: `guards.traced_state`
        rebind_quantize(layer)  # Keras keeps the old class's `quantize` on the instance
        restore_int4_inputs(layer)
    return [layer.path for layer in fixed]


def overrides_call(layer):
    """The call methods a subclass between `type(layer)` and Keras' class defines itself (KerasHub's: none)."""
    mro = type(layer).__mro__
    own = mro[: mro.index(KERAS_REVERSIBLE_EMBEDDING)]
    return [name for name in OWN_CALLS if any(name in vars(cls) for cls in own)]
