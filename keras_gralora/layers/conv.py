"""GraLoRAConv1D/2D/3D: Keras' convolutions with a GraLoRA adapter.

A kernel `[*window, Cin, Cout]` is read as the `[Cin * window, Cout]`
matrix with the input channel outermost, torch's `weight.flatten(1)`
order (so an exported LoRA is PEFT's conv layout as it stands). Its `k`
input blocks are then input-channel blocks, each with the whole window, and
its `k` output blocks output-channel blocks: grid cell `(p, j)` is a
rank-`r/k` pair whose `A` convolves input-channel block `p` with the
layer's window, strides, padding and dilation, and whose `B` is a 1x1 map
into output-channel block `j`. With `k = 1` it is Keras LoRA's convolution.
"""

import math

import keras
from keras import ops

from keras_gralora import ops as gralora_ops
from keras_gralora.layers.adapter import GraLoRAAdapter
from keras_gralora.layers.named_adapter import ADAPTER_DTYPE


class GraLoRAConv(GraLoRAAdapter):
    """A Keras convolution (`Conv1D`, `Conv2D`, `Conv3D`, groups 1) whose frozen kernel GraLoRA adapts.

    The input and output channels are each split into `k` contiguous blocks;
    every cell of the `k x k` grid gets its own rank-`r/k` adapter: a
    convolution over its input-channel block with the layer's own window,
    then a 1x1 map into its output-channel block. In float32 the forward
    pass convolves once by the kernel plus the deltas (cheaper: a kernel is
    small beside its activations); otherwise the adapters' own pass runs all
    `k` blocks' `A` as one grouped convolution (`groups = k`), `r * Cin *
    window` multiply-adds per output position, then the Dense grid's
    cross-block exchange and `B` (see `call`). Adapter weights are those
    of the `[Cin * window, Cout]` matrix (input channel outermost):
    `a` `(k, Cin/k * window, r)`, `b` `(k, r, Cout/k)`. Per-row adapter
    routing is not offered for convolutions (a clear error says so).

    Args:
        *args, **kwargs: The Keras convolution's (`filters`, `kernel_size`, `strides`...).
        r, k, hybrid_r, alpha, dropout, init_weights, adapter_name: The
            first adapter's settings, as for `GraLoRADense`; `k` splits the
            input and the output channels.

    Raises:
        ValueError: At build, channels that do not divide by `k`, `groups`
            other than 1, or a kernel constraint, each naming the layer.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAConv2D
        >>> layer = GraLoRAConv2D(8, 3, r=4, k=2, padding="same")
        >>> y = layer(keras.ops.ones((1, 5, 5, 6)))
        >>> tuple(y.shape), [tuple(v.shape) for v in layer.adapter("default").variables]
        ((1, 5, 5, 8), [(2, 27, 4), (2, 4, 4)])
    """

    ROUTABLE = False

    @classmethod
    def matrix_shape_of(cls, layer):
        """`(Cin * window, Cout)` of a built convolution's kernel."""
        *window, channels_in, channels_out = layer._kernel.shape
        return channels_in * math.prod(window), channels_out

    @classmethod
    def block_sizes_of(cls, layer):
        """`(Cin, Cout)`: the blocks split channels, each with the whole window."""
        return tuple(layer._kernel.shape[-2:])

    def _kernel_view(self):
        """The `[in, out]` matrix is the kernel as `[Cin, *window, Cout]`, reshaped."""
        *window, channels_in, channels_out = self._kernel.shape
        rank = len(window)
        return (channels_in, *window, channels_out), (*range(1, rank + 1), 0, rank + 1)

    def _padded(self, inputs, data_format):
        """`(inputs, padding)` as Keras' `Conv1D.call` passes them to the convolution ("causal": padded first).

        `data_format` is that of `inputs` (the adapters' own pass runs channels-last).
        """
        if self.padding != "causal":
            return inputs, self.padding
        left = [self.dilation_rate[0] * (self.kernel_size[0] - 1), 0]
        return ops.pad(
            inputs, [[0, 0], left, [0, 0]] if data_format == "channels_last" else [[0, 0], [0, 0], left]
        ), "valid"

    def _convolve(self, inputs, kernel, data_format):
        inputs, padding = self._padded(inputs, data_format)
        return ops.conv(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=padding,
            dilation_rate=self.dilation_rate,
            data_format=data_format,
        )

    def call(self, inputs, training=None):
        """One convolution by `kernel + deltas` where that is exact and cheaper, else the adapters' own pass.

        A convolution's kernel is small beside its activations, so adding the
        (few-thousand-entry) deltas to a float32 kernel and convolving once
        costs about the base alone, as Keras' conv LoRA does
        (`benchmarks/conv_step.py`). The adapters' own pass (a grouped
        convolution, then `B`) runs where the sum would lose them: a kernel
        below float32 (bfloat16 would round a small delta away), and adapter
        dropout in training.
        """
        forward = self._gralora.forward
        dropping = training and any(adapter.config.dropout for adapter in forward)
        float32 = self.compute_dtype == keras.backend.standardize_dtype(self._kernel.dtype) == "float32"
        if not forward or dropping or not float32:
            return super().call(inputs, training)
        return self._add_bias_adapters_activation(self._base_output(inputs, self.kernel), inputs, training, False)

    def _base_output(self, inputs, kernel=None):
        return self._convolve(inputs, self._frozen_kernel() if kernel is None else kernel, self.data_format)

    def _add_bias(self, x):
        if self.data_format == "channels_last":
            return ops.add(x, self.bias)
        return ops.add(x, ops.reshape(self.bias, (1, self.filters) + (1,) * self.rank))

    def _adapter_output(self, inputs, training):
        channels_last = self.data_format == "channels_last"
        x = ops.cast(inputs if channels_last else ops.moveaxis(inputs, 1, -1), ADAPTER_DTYPE)
        y = self._sum_adapters(x, training, self._block_forward)
        return y if channels_last else ops.moveaxis(y, -1, 1)

    def _block_forward(self, x, a, b, scale, hybrid_a=None, hybrid_b=None):
        """`ops.block_forward` with a grouped convolution for the first product: `x [N, *space, Cin]`."""
        k, width = a.shape[0], a.shape[2] + (0 if hybrid_a is None else hybrid_a.shape[-1])  # width: r (+ h)
        *window, channels_in, _ = self._kernel.shape
        rows = ops.reshape(gralora_ops.rows_by_input_block(a, hybrid_a), (k, channels_in // k, *window, width))
        rank = len(window)
        kernel = ops.transpose(rows, (*range(2, rank + 2), 1, 0, rank + 2))  # [*window, Cin/k, k, width]
        kernel = ops.reshape(kernel, (*window, channels_in // k, k * width))  # group p: output columns p*width...
        xa = self._convolve(x, kernel, "channels_last")  # [N, *space', k * width]
        space = tuple(ops.shape(xa)[:-1])
        xa = ops.transpose(ops.reshape(xa, (-1, k, width)), (1, 0, 2))  # [p, n, width]
        y = gralora_ops.block_output(xa, b, scale, hybrid_b)
        return ops.reshape(y, space + (ops.shape(y)[-1],))


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAConv1D(GraLoRAConv, keras.layers.Conv1D):
    """A `Conv1D` adapted by GraLoRA (the grid, layout and limits: `GraLoRAConv`).

    Args:
        *args, **kwargs: `filters`, `kernel_size`, ... as `keras.layers.Conv1D`; `r`, `k`, ... as `GraLoRAConv`.

    Examples:
        >>> tuple(GraLoRAConv1D(4, 3, r=2, k=2)(keras.ops.ones((1, 5, 6))).shape)[-1]
        4
    """


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAConv2D(GraLoRAConv, keras.layers.Conv2D):
    """A `Conv2D` adapted by GraLoRA (the grid, layout and limits: `GraLoRAConv`).

    Args:
        *args, **kwargs: `filters`, `kernel_size`, ... as `keras.layers.Conv2D`; `r`, `k`, ... as `GraLoRAConv`.

    Examples:
        >>> tuple(GraLoRAConv2D(4, 3, r=2, k=2)(keras.ops.ones((1, 5, 5, 6))).shape)[-1]
        4
    """


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAConv3D(GraLoRAConv, keras.layers.Conv3D):
    """A `Conv3D` adapted by GraLoRA (the grid, layout and limits: `GraLoRAConv`).

    Args:
        *args, **kwargs: `filters`, `kernel_size`, ... as `keras.layers.Conv3D`; `r`, `k`, ... as `GraLoRAConv`.

    Examples:
        >>> tuple(GraLoRAConv3D(4, 3, r=2, k=2)(keras.ops.ones((1, 5, 5, 5, 6))).shape)[-1]
        4
    """
