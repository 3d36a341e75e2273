"""GraLoRADense: a Keras `Dense` layer with a GraLoRA adapter."""

import keras
from keras import ops

from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.quantized import logical_kernel_shape


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRADense(GraLoRAAdapter, keras.layers.Dense):
    """A `Dense` layer whose frozen kernel is adapted by GraLoRA.

    The input and output features are each split into `k` contiguous blocks;
    every cell of the resulting `k x k` grid gets its own rank-`r/k` adapter.
    The output is `activation(x @ kernel + bias + scale * adapter(x))`,
    computed as PEFT's GraLoRA does. The kernel and bias are not trainable;
    the adapter (`r * (in + out)` parameters, plus `hybrid_r * (in + out)`)
    is, and stays float32 under any dtype policy.

    Args:
        units: Positive integer, dimensionality of the output space.
        r: Total rank of the block adapters, divisible by `k`.
        k: Number of blocks along the input and the output features.
        hybrid_r: Rank of an optional plain LoRA over the whole matrix.
        alpha: Scaling numerator, `scale = alpha / (r + hybrid_r)`.
            Defaults to `2 * (r + hybrid_r)` (scale 2).
        dropout: Dropout rate on the adapter input during training.
        init_weights: `False` initialises B at random instead of zero
            (for tests).
        adapter_name: The name of the adapter these settings create; add
            more with `add_adapter(name, GraLoRAConfig(...))`.
        **kwargs: Any other `keras.layers.Dense` argument.

    Raises:
        ValueError: At construction, bad settings (see `GraLoRAConfig`); at
            build, features that do not divide by `k`, a kernel constraint,
            or an unsupported quantization mode, each naming the layer.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAConfig, GraLoRADense
        >>> layer = GraLoRADense(64, r=8, k=2)
        >>> y = layer(keras.ops.ones((2, 32)))
        >>> tuple(y.shape), layer.count_params() - 32 * 64 - 64
        ((2, 64), 768)
        >>> layer.add_adapter("other", GraLoRAConfig(r=4, k=4))  # a second, inactive adapter
        >>> layer.adapter_names, layer.active_adapters
        (['default', 'other'], ['default'])
        >>> layer.merge()  # fold the active adapters into the kernel for serving
    """

    @classmethod
    def matrix_shape_of(cls, layer):
        """`(in, out)` of a built `Dense` layer's kernel (also when quantized)."""
        return logical_kernel_shape(layer)

    def _base_output(self, inputs, kernel=None):
        return ops.matmul(inputs, self._frozen_kernel() if kernel is None else kernel)

    def _adapter_output(self, inputs, training):
        return self._gralora_output(inputs, training)
