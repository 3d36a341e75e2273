"""GraLoRAEinsumDense: a Keras `EinsumDense` layer with a GraLoRA adapter."""

import math
import re

import keras
from keras import ops

from keras_gralora.layers.adapter import GraLoRAAdapter, describe
from keras_gralora.layers.quantized import logical_kernel_shape


@keras.saving.register_keras_serializable(package="keras_gralora")
class GraLoRAEinsumDense(GraLoRAAdapter, keras.layers.EinsumDense):
    """An `EinsumDense` layer whose frozen kernel is adapted by GraLoRA.

    The kernel is read as an `[in, out]` matrix: its axes that also appear in
    the input are `in`, the others `out`, each flattened in the kernel's own
    axis order. GraLoRA then adapts that matrix exactly as `GraLoRADense`
    does, so the update is low-rank in the projection itself (Keras'
    `EinsumDense.enable_lora` factorises only the kernel's last axis).
    KerasHub's `btd,dnh->btnh`, `btd,ndh->btnh` and `btnh,nhd->btd`
    projections all work; equations with no such reading raise at build.

    Args:
        equation: The einsum equation, as for `keras.layers.EinsumDense`.
        output_shape: The output shape without the batch axis, as for
            `keras.layers.EinsumDense`.
        r: Total rank of the block adapters, divisible by `k`.
        k: Number of blocks along the flattened input and output features.
        hybrid_r: Rank of an optional plain LoRA over the whole matrix.
        alpha: Scaling numerator, `scale = alpha / (r + hybrid_r)`.
            Defaults to `2 * (r + hybrid_r)` (scale 2).
        dropout: Dropout rate on the adapter input during training.
        init_weights: `False` initialises B at random instead of zero.
        adapter_name: The name of the adapter these settings create; add
            more with `add_adapter(name, GraLoRAConfig(...))`.
        **kwargs: Any other `keras.layers.EinsumDense` argument.

    Raises:
        ValueError: At construction, bad settings (see `GraLoRAConfig`); at
            build, an equation with no `[in, out]` reading, features that do not divide by
            `k`, a kernel constraint,
            or an unsupported quantization mode, each naming the layer.

    Examples:
        >>> import keras
        >>> from keras_gralora import GraLoRAEinsumDense
        >>> layer = GraLoRAEinsumDense("btd,dnh->btnh", (None, 4, 16), r=8, k=2)
        >>> y = layer(keras.ops.ones((2, 5, 32)))
        >>> tuple(y.shape), tuple(layer.delta_kernel().shape)
        ((2, 5, 4, 16), (32, 4, 16))
    """

    def _build_gralora(self):
        self._layout = ProjectionLayout.of(self)
        super()._build_gralora()

    @classmethod
    def matrix_shape_of(cls, layer):
        """`(in, out)` of a built `EinsumDense` layer's kernel read as a matrix."""
        return ProjectionLayout.of(layer).matrix_shape(logical_kernel_shape(layer))

    def _kernel_view(self):
        return self._layout.kernel_view(logical_kernel_shape(self))

    def _base_output(self, inputs, kernel=None):
        return ops.einsum(self.equation, inputs, self._frozen_kernel() if kernel is None else kernel)

    def _adapter_output(self, inputs, training):
        in_features = self._layout.matrix_shape(logical_kernel_shape(self))[0]
        y = self._gralora_output(self._layout.flatten_input(inputs, in_features), training)
        return self._layout.unflatten_output(y, logical_kernel_shape(self))


class ProjectionLayout:
    """How an einsum projection maps to an `[in, out]` matrix and back.

    Input axes absent from the kernel are batch axes; kernel axes present in
    the input are `in`; the remaining kernel axes are `out`. Transposes are
    only emitted where an axis order actually changes.
    """

    @classmethod
    def of(cls, layer):
        """The layout of a built `EinsumDense` (its build fixed the input rank)."""
        return cls(layer.equation, layer.input_spec.ndim, describe(layer))

    def __init__(self, equation, input_rank, where):
        match = re.fullmatch(r"(\.\.\.)?([a-zA-Z]+),([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)", equation)
        if not match or bool(match.group(1)) != bool(match.group(4)):
            raise ValueError(
                f"{where}: cannot adapt equation {equation!r}. GraLoRA supports `in,kernel->out` "
                "equations, optionally with a leading `...` on both input and output "
                "(for example 'btd,dnh->btnh' or '...d,de->...e')."
            )
        _, inputs, kernel, _, outputs = match.groups()
        self.in_axes = [c for c in kernel if c in inputs]
        self.out_axes = [c for c in kernel if c not in inputs]
        batch_axes = [c for c in inputs if c not in kernel]
        problems = _layout_problems(batch_axes, self.in_axes, self.out_axes, outputs)
        if problems:
            raise ValueError(
                f"{where}: cannot adapt equation {equation!r}: {'; '.join(problems)}. GraLoRA needs "
                "each kernel axis to be either an input (contracted) axis or an output axis."
            )
        self.kernel_axes = kernel
        n_lead = input_rank - len(inputs)  # axes under the ellipsis
        lead = list(range(n_lead))
        # Input: batch axes in input order, then `in` axes in kernel order.
        self.input_perm = lead + [n_lead + inputs.index(c) for c in batch_axes + self.in_axes]
        self.n_batch = n_lead + len(batch_axes)
        # Output: from [lead, batch axes, out axes (kernel order)] to the equation's order.
        produced = batch_axes + self.out_axes
        self.output_perm = lead + [n_lead + produced.index(c) for c in outputs]

    def matrix_shape(self, kernel_shape):
        sizes = dict(zip(self.kernel_axes, kernel_shape))
        return (math.prod(sizes[c] for c in self.in_axes), math.prod(sizes[c] for c in self.out_axes))

    def flatten_input(self, x, in_features):
        """`x` as `[batch axes..., in_features]` (sizes given, not -1: an empty batch has no size to infer)."""
        x = _transpose_if_needed(x, self.input_perm)
        return ops.reshape(x, tuple(ops.shape(x)[: self.n_batch]) + (in_features,))

    def unflatten_output(self, y, kernel_shape):
        sizes = dict(zip(self.kernel_axes, kernel_shape))
        out_dims = tuple(sizes[c] for c in self.out_axes)
        y = ops.reshape(y, tuple(ops.shape(y)[:-1]) + out_dims)
        return _transpose_if_needed(y, self.output_perm)

    def kernel_view(self, kernel_shape):
        """`(shape, perm)`: the kernel is the `[in, out]` matrix reshaped, then transposed."""
        sizes = dict(zip(self.kernel_axes, kernel_shape))
        ordered = self.in_axes + self.out_axes
        return tuple(sizes[c] for c in ordered), tuple(ordered.index(c) for c in self.kernel_axes)


def _layout_problems(batch_axes, in_axes, out_axes, outputs):
    def joined(axes):
        return "".join(axes)

    problems = []
    if shared := [c for c in in_axes if c in outputs]:
        problems.append(f"kernel axes {joined(shared)!r} appear in both input and output (a batched kernel)")
    if summed := [c for c in batch_axes if c not in outputs]:
        problems.append(f"input axes {joined(summed)!r} are summed without the kernel")
    if not in_axes:
        problems.append("no kernel axis is contracted with the input")
    if not out_axes:
        problems.append("no kernel axis reaches the output")
    return problems


def _transpose_if_needed(x, perm):
    return x if list(perm) == list(range(len(perm))) else ops.transpose(x, perm)
