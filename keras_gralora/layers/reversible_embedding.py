"""ReversibleEmbedding: Keras' layer whose quantized reverse projection passes the right gradient to its input.

A causal LM's logits are `embedding(hidden_states, reverse=True)`. Keras
3.15's int8 `ReversibleEmbedding._int8_call(reverse=True)` (and int4 with
an input quantizer) quantizes the hidden states and multiplies integers, so
the gradient reaching the hidden states, and every layer below the logits,
is not the float model's: it passes through `round` and the input scale
only. Keras' quantized `Dense` avoids this with a straight-through gradient
(the upstream gradient times the dequantized kernel); this layer gives the
reverse projection the same. Its outputs are Keras' own, bit for bit.
"""

import keras
from keras import ops

from keras_gralora.layers.quantized import ReadOnlyView

KERAS_REVERSIBLE_EMBEDDING = keras.layers.ReversibleEmbedding


@keras.saving.register_keras_serializable(package="keras_gralora")
class ReversibleEmbedding(KERAS_REVERSIBLE_EMBEDDING):
    """Keras' `ReversibleEmbedding` with a straight-through input gradient on its quantized reverse projection.

    Forward values, weights, config and file slots are those of
    `keras.layers.ReversibleEmbedding` (same class name, so weights files
    interchange with it). Only the gradient of `call(x, reverse=True)` on an
    int8 / int4 layer that quantizes its inputs changes: it is the upstream
    gradient times the dequantized reverse kernel, the gradient of the float
    projection, as Keras' quantized `Dense` does. The backward pass
    dequantizes the kernel once (an `output_dim x input_dim` float matrix).
    An int4 layer rebuilt from a file does not quantize its inputs, as
    `quantize("int4")` built it (Keras' rebuild does: its logits differ).
    `keras_gralora.fix_quantized_gradients(model)` turns a model's
    ReversibleEmbedding layers into this one; `enable_gralora` does it too.

    Args:
        input_dim, output_dim, tie_weights, ...: as `keras.layers.ReversibleEmbedding`.

    Examples:
        >>> layer = ReversibleEmbedding(input_dim=10, output_dim=4)
        >>> layer.build()
        >>> layer.quantize("int8")
        >>> hidden = keras.ops.ones((2, 3, 4))
        >>> tuple(layer(hidden, reverse=True).shape)
        (2, 3, 10)
    """

    def quantize(self, mode=None, type_check=True, config=None):
        """Keras' `quantize` (whose type check refuses subclasses: this one computes what Keras' does)."""
        super().quantize(mode, type_check=False, config=config)

    def _int4_build(self, embeddings_shape, config=None):
        super()._int4_build(embeddings_shape, config)
        restore_int4_inputs(self)

    def _int8_call(self, inputs, reverse=False):
        if reverse:
            return self.reverse_logits(inputs, KERAS_REVERSIBLE_EMBEDDING._int8_call, self.logit_soft_cap)
        return super()._int8_call(inputs)

    def _int4_call(self, inputs, reverse=False):
        if reverse:
            return self.reverse_logits(inputs, KERAS_REVERSIBLE_EMBEDDING._int4_call, self.logit_soft_cap)
        return super()._int4_call(inputs)

    def reverse_logits(self, inputs, keras_call, soft_cap):
        """Keras' quantized reverse projection (`keras_call`), soft-capped at `soft_cap` (`None`: not capped).

        With input quantization, its input gradient is that of the dequantized kernel (`_straight_through`).
        """
        if self.inputs_quantizer:
            logits = self._straight_through(inputs, keras_call)
        else:
            logits = keras_call(ReadOnlyView(self, logit_soft_cap=None), inputs, reverse=True)
        if soft_cap is not None:  # as Keras: after the projection
            logits = ops.multiply(ops.tanh(ops.divide(logits, soft_cap)), soft_cap)
        return logits

    def _straight_through(self, inputs, keras_call):
        """Keras' quantized reverse projection, not soft-capped; its input gradient is the dequantized kernel's."""
        names = [name for name, value in vars(self).items() if _is_frozen_variable(value)]

        @ops.custom_gradient
        def project(inputs, *storage):  # the integer storage as tensors: tensorflow's custom gradient needs them
            frozen = dict(zip(names, storage))

            def grad_fn(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                kernel = _dequantized_reverse_kernel(self, keras_call, frozen)
                inputs_grad = ops.matmul(ops.cast(upstream, kernel.dtype), ops.transpose(kernel))
                return (ops.cast(inputs_grad, inputs.dtype), *(None for _ in storage))

            return keras_call(ReadOnlyView(self, logit_soft_cap=None, **frozen), inputs, reverse=True), grad_fn

        return project(inputs, *(ops.convert_to_tensor(getattr(self, name)) for name in names))


def restore_int4_inputs(layer):
    """An int4 layer rebuilt from a file (no config kept) reads its inputs as `quantize("int4")` made it: unquantized.

    Keras 3.15 builds an int4 `ReversibleEmbedding` without a config with
    an input quantizer, which `Int4QuantizationConfig()` does not give it,
    so a reloaded int4 LM's logits differ from the saved one's.
    """
    if layer.quantization_mode == "int4" and layer.quantization_config is None:
        layer.inputs_quantizer = None


def _is_frozen_variable(value):
    return isinstance(value, keras.Variable) and not value.trainable


def _dequantized_reverse_kernel(layer, keras_call, frozen):
    """The float `(output_dim, input_dim)` matrix the reverse projection multiplies by, in every Keras layout.

    Keras' own reverse call without input quantization, applied to the
    identity: each layout's dequantization (per channel, int4 groups with a
    zero point, tied or not) is Keras' code, not a copy of it.
    """
    view = ReadOnlyView(layer, inputs_quantizer=None, logit_soft_cap=None, **frozen)
    return keras_call(view, ops.eye(layer.output_dim, dtype=layer.compute_dtype), reverse=True)
