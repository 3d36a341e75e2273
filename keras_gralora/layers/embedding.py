"""GraLoRAEmbedding and GraLoRAReversibleEmbedding: token tables adapted by GraLoRA.

The table `[V, D]` is the `[in, out]` matrix of a one-hot input: the
vocabulary splits into `k` blocks, `D` into `k` blocks, and the adapted
table is `W + delta` with the Dense grid's `delta`. The forward pass never
forms a one-hot product: each token gathers its row of `A` (rank `r`, plus
the hybrid), which feeds the Dense grid's second product from its own
vocabulary block only. A tied `ReversibleEmbedding`'s reverse projection
(an LM's logits) multiplies by the adapted table, as Keras LoRA's does,
without forming it: `x @ delta.T` is the same grid with `A` and `B`
swapped. No adapter dropout (a one-hot input has nothing to drop; PEFT's
embedding LoRA has none either). An int8/int4 table looks its rows up (and
projects its logits) with Keras' own quantized calls, then adds the adapters.
"""

import keras
from keras import ops
from keras.src.backend import set_keras_mask  # as Keras' ReversibleEmbedding.call

from keras_gralora import ops as gralora_ops
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE
from keras_gralora.layers.quantized import ReadOnlyView, check_quantization_mode
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding


class GraLoRATable(GraLoRAAdapter):
    """An embedding table (`Embedding`, `ReversibleEmbedding`) whose frozen rows GraLoRA adapts.

    The vocabulary (the one-hot input axis) and the features are each split
    into `k` contiguous blocks; cell `(p, j)` of the grid is a rank-`r/k`
    update of vocabulary block `p`'s rows in feature block `j`. Each token
    gathers its row of `A` (`a` `(k, V/k, r)`, `b` `(k, r, D/k)`, PEFT's
    Dense layout with the vocabulary as input), so a step costs `r` multiply-
    adds per token and feature, a plain LoRA's. Embeddings are adapted only
    when named (`target_layer_names`), as PEFT; `"all"` leaves them out.
    An int8/int4 table (Keras' `quantize`, before or after adapting) looks
    its rows up with Keras' own quantized call and adds the adapters;
    merging requantizes it, as for a Dense kernel. Per-row routing is
    refused with a clear error.

    Args:
        *args, **kwargs: The Keras layer's (`input_dim`, `output_dim`, ...).
        r, k, hybrid_r, alpha, init_weights, adapter_name: The first
            adapter's settings, as for `GraLoRADense`; `k` splits the
            vocabulary and the features. `dropout` must stay 0.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAEmbedding
        >>> layer = GraLoRAEmbedding(100, 8, r=4, k=2)
        >>> y = layer(keras.ops.convert_to_tensor([[1, 2, 99]]))
        >>> tuple(y.shape), [tuple(v.shape) for v in layer.adapter("default").variables]
        ((1, 3, 8), [(2, 50, 4), (2, 4, 4)])
    """

    IN_ALL = False
    ROUTABLE = False
    bias = None
    activation = None

    @classmethod
    def matrix_shape_of(cls, layer):
        """`(V, D)`: the table read as the matrix of a one-hot input."""
        return layer.input_dim, layer.output_dim

    @property
    def _kernel(self):
        return self._embeddings

    @property
    def kernel_constraint(self):
        """The table's `embeddings_constraint` (what the adapter checks as a kernel constraint)."""
        return self.embeddings_constraint

    @property
    def embeddings(self):
        """The table as the forward pass applies it: frozen rows plus the active adapters' deltas (`kernel`)."""
        return self.kernel

    def _frozen_kernel(self):
        return self._embeddings

    def _base_output(self, inputs, kernel=None):
        if kernel is None and self.quantization_mode is not None:  # Keras' own lookup, dequantized
            mode = check_quantization_mode(self.quantization_mode, self._gralora_where())
            return getattr(keras.layers.Embedding, f"_{mode}_call")(ReadOnlyView(self, lora_enabled=False), inputs)
        return ops.take(self._frozen_kernel() if kernel is None else kernel, inputs, axis=0)

    def quantized_call(self, *args, **kwargs):
        """`call`, which runs Keras' quantized lookup itself (Keras calls this for a quantized layer)."""
        return self.call(*args, **kwargs)

    def call(self, inputs, training=None):
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        x = self._add_bias_adapters_activation(self._base_output(inputs), inputs, training)
        return ops.cast(x, self.compute_dtype)

    def _adapter_output(self, inputs, training):
        y = self._sum_adapters(ops.reshape(inputs, (-1,)), training, gathered_forward)  # no dropout: refused
        return ops.reshape(y, tuple(ops.shape(inputs)) + (self.output_dim,))

    def _reverse_adapter_output(self, x):
        """`x @ delta.T` of the forward adapters for hidden states `x [..., D]`: `[..., V]`, float32."""
        lead = tuple(ops.shape(x)[:-1])
        y = self._sum_adapters(ops.reshape(ops.cast(x, ADAPTER_DTYPE), (-1, self.output_dim)), False, swapped_forward)
        return ops.reshape(y, lead + (self.input_dim,))


def gathered_forward(ids, a, b, scale, hybrid_a=None, hybrid_b=None):
    """The scaled adapter for token `ids [n]`: `[n, D]`, without a one-hot product.

    Token `v` in vocabulary block `p` has `A` features only in block `p`:
    its row of `a[p]` (and of the hybrid `A`), zero in the other blocks. So
    `xa [p, n, r(+h)]` is the gathered rows masked to their own block, and
    `ops.block_output` computes the rest as for a Dense layer.
    """
    k, block_in, r = a.shape
    rows = ops.take(ops.reshape(a, (k * block_in, r)), ids, axis=0)  # row v of the table is a[v // (V/k), v % (V/k)]
    if hybrid_a is not None:
        rows = ops.concatenate([rows, ops.take(hybrid_a, ids, axis=0)], axis=-1)  # [n, r + h]
    own_block = ops.cast(ops.equal(ops.arange(k)[:, None], (ids // block_in)[None]), rows.dtype)  # [p, n]
    return gralora_ops.block_output(own_block[..., None] * rows[None], b, scale, hybrid_b)


def swapped_forward(x, a, b, scale, hybrid_a=None, hybrid_b=None):
    """`x @ delta.T` for `x [n, D]`: the grid of `delta.T` is `delta`'s with `A` and `B` swapped and transposed."""
    hybrid = () if hybrid_a is None else (ops.transpose(hybrid_b), ops.transpose(hybrid_a))
    return gralora_ops.block_forward(x, ops.transpose(b, (0, 2, 1)), ops.transpose(a, (0, 2, 1)), scale, *hybrid)


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAEmbedding(GraLoRATable, keras.layers.Embedding):
    """A Keras `Embedding` adapted by GraLoRA (the grid, layout and limits: `GraLoRATable`).

    Args:
        *args, **kwargs: As `GraLoRATable` (a `keras.layers.Embedding`'s, then the adapter's).

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAEmbedding
        >>> layer = GraLoRAEmbedding(10, 4, r=2, k=2, mask_zero=True)
        >>> tuple(layer(keras.ops.convert_to_tensor([[0, 3, 9]])).shape)
        (1, 3, 4)
    """


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAReversibleEmbedding(GraLoRATable, ReversibleEmbedding):
    """A `ReversibleEmbedding` adapted by GraLoRA: tied logits read the adapted table (see `GraLoRATable`).

    The reverse call (`reverse=True`) of a tied table adds `h @ delta.T`
    without forming the `[V, D]` delta; an untied one (`tie_weights=False`)
    projects with its own `reverse_embeddings`, not adapted. The quantized
    reverse gradient fix of `keras_gralora.layers.ReversibleEmbedding` is
    inherited.

    Args:
        *args, **kwargs: As `GraLoRATable`, with `keras.layers.ReversibleEmbedding`'s arguments.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAReversibleEmbedding
        >>> layer = GraLoRAReversibleEmbedding(10, 4, r=2, k=2)
        >>> hidden = layer(keras.ops.convert_to_tensor([[1, 2]]))
        >>> tuple(layer(hidden, reverse=True).shape)
        (1, 2, 10)
    """

    def call(self, inputs, reverse=False, training=None):
        if not reverse:
            result = GraLoRATable.call(self, inputs, training)
            if (mask := keras.layers.Embedding.compute_mask(self, inputs)) is not None:
                set_keras_mask(result, mask)
            return result
        adapted = self.tie_weights and self._gralora.forward
        if self.quantization_mode is not None:  # Keras' quantized projection (ours: its input gradient fixed)
            keras_call = getattr(ReversibleEmbedding, f"_{self.quantization_mode}_call")
            logits = self.reverse_logits(inputs, keras_call, soft_cap=None if adapted else self.logit_soft_cap)
            if not adapted:
                return logits
        elif not adapted:
            return ReversibleEmbedding.call(self, inputs, reverse=True)
        else:
            kernel, x = ops.transpose(self._frozen_kernel()), inputs
            if self.reverse_dtype is not None:
                x, kernel = ops.cast(x, self.reverse_dtype), ops.cast(kernel, self.reverse_dtype)
            logits = ops.matmul(x, kernel)
        logits = ops.add(logits, ops.cast(self._reverse_adapter_output(inputs), logits.dtype))
        if self.logit_soft_cap is not None:
            logits = ops.multiply(ops.tanh(ops.divide(logits, self.logit_soft_cap)), self.logit_soft_cap)
        return logits
