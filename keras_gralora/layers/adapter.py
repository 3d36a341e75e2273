"""What GraLoRADense and GraLoRAEinsumDense share: adapter weights, forward, merge."""

import contextlib

import keras
from keras import ops

from keras_gralora import ops as gralora_ops
from keras_gralora.backend import compiled

# Adapters live in float32 whatever the layer's dtype policy, as in PEFT.
ADAPTER_DTYPE = "float32"


def describe(layer):
    """How error messages name a layer."""
    return f"{type(layer).__name__} '{layer.name}'"


def check_base_layer(layer, config):
    """Checks that a Dense/EinsumDense can carry `config`; returns the config.

    Works on the plain Keras layer too, so `inject.py` can check every target
    before it changes any.
    """
    where = describe(layer)
    if getattr(layer, "lora_rank", None):
        raise ValueError(
            f"{where}: Keras LoRA (lora_rank={layer.lora_rank}) and GraLoRA cannot be combined "
            "on one layer. Drop `lora_rank`/`enable_lora`; GraLoRA's `r` plays that role."
        )
    if getattr(layer, "quantization_mode", None):
        raise ValueError(
            f"{where}: the layer is quantized (mode {layer.quantization_mode!r}); GraLoRA adapts "
            "float kernels. Enable GraLoRA before quantizing, or on an unquantized model."
        )
    if layer.kernel_constraint is not None:
        raise ValueError(
            f"{where}: the base layer has kernel_constraint={layer.kernel_constraint!r}, which "
            "GraLoRA cannot honour (the kernel is frozen and merging would bypass the constraint). "
            "Remove the kernel constraint."
        )
    return config.validate(where)


class GraLoRAAdapter:
    """Mixin placed before a Keras `Dense`/`EinsumDense` in the bases.

    The host class provides `_base_output(inputs)` (its frozen projection,
    before bias), `_adapter_output(inputs, training)`, the classmethod
    `matrix_shape_of(layer)` (the `(in, out)` view of a built layer's
    kernel) and, when its kernel is not already `[in, out]`,
    `_kernel_view()` (see `ProjectionLayout.kernel_view`).
    """

    def call(self, inputs, training=None):
        x = self._base_output(inputs)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if not self.merged:  # a merged adapter already lives in the kernel
            x = ops.add(x, ops.cast(self._adapter_output(inputs, training), x.dtype))
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _init_gralora(self, config):
        self.gralora_config = check_base_layer(self, config)
        self._gralora_merged = False
        with self._unlocked_tracker():
            self._gralora_seed = keras.random.SeedGenerator() if config.dropout > 0 else None

    def _gralora_where(self):
        return describe(self)

    def _kernel_matrix_shape(self):
        return self.matrix_shape_of(self)

    def _build_gralora(self):
        """Freezes the base weights and creates the adapter weights."""
        config = self.gralora_config
        in_features, out_features = self._kernel_matrix_shape()
        config.validate_features(in_features, out_features, self._gralora_where())
        r, k, hybrid_r = config.r, config.k, config.hybrid_r
        self._kernel.trainable = False
        if self.bias is not None:
            self.bias.trainable = False

        with self._unlocked_tracker(), self._open_name_scope():
            self.gralora_a = self._add_adapter_weight("gralora_a", (k, in_features // k, r), in_features // k)
            self.gralora_b = self._add_adapter_weight("gralora_b", (k, r, out_features // k), r, zero=True)
            if hybrid_r:
                self.gralora_hybrid_a = self._add_adapter_weight(
                    "gralora_hybrid_a", (in_features, hybrid_r), in_features
                )
                self.gralora_hybrid_b = self._add_adapter_weight(
                    "gralora_hybrid_b", (hybrid_r, out_features), hybrid_r, zero=True
                )

    @contextlib.contextmanager
    def _unlocked_tracker(self):
        # Keras locks a layer's state after build; adapting a built layer in
        # place (see `inject.py`) must add state all the same.
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            yield
        finally:
            if locked:
                self._tracker.lock()

    def _add_adapter_weight(self, name, shape, fan_in, zero=False):
        if zero and self.gralora_config.init_weights:
            initializer = "zeros"
        else:
            bound = gralora_ops.kaiming_uniform_bound(fan_in)
            initializer = keras.initializers.RandomUniform(-bound, bound)
        return self.add_weight(
            name=name, shape=shape, initializer=initializer, dtype=ADAPTER_DTYPE, autocast=False
        )

    @property
    def adapter_variables(self):
        """The adapter's variables, in PEFT's order (A, B, hybrid A, hybrid B)."""
        names = ("gralora_a", "gralora_b", "gralora_hybrid_a", "gralora_hybrid_b")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    @property
    def merged(self):
        """Whether the adapter is currently folded into the kernel."""
        return self._gralora_merged

    def _gralora_output(self, x, training):
        """Adapter output for `x [..., in]`, in float32, scaled; `[..., out]`."""
        k, block_in, _ = self.gralora_a.shape
        out_features = k * self.gralora_b.shape[-1]
        lead = tuple(ops.shape(x)[:-1])
        # One 2-D [tokens, in] view for every matmul: XLA on CPU was several
        # times slower differentiating matmuls over rank-3 inputs (benchmarks/).
        # Sizes come from the weights: a traced `x` may not know its last axis.
        x = ops.reshape(ops.cast(x, ADAPTER_DTYPE), (-1, k * block_in))
        if training and self._gralora_seed is not None:
            x = keras.random.dropout(x, self.gralora_config.dropout, seed=self._gralora_seed)
        y = gralora_ops.block_forward(x, *self._adapter_factors())
        return ops.reshape(y, lead + (out_features,))

    def delta_matrix(self):
        """`scale * update` as the `[in, out]` matrix, float32."""
        return self._delta(kernel_view=None)

    def delta_kernel(self):
        """`scale * update` in the kernel's own shape and axis order, float32."""
        return self._delta(kernel_view=self._kernel_view())

    def _kernel_view(self):
        """`(shape, perm)` taking the `[in, out]` matrix to the kernel: none needed."""
        return None

    def _delta(self, kernel_view):
        a, b, scale, *hybrid = self._adapter_factors()
        tensors = [ops.convert_to_tensor(v) for v in (a, b, *hybrid)]
        return _compiled_delta(*tensors, scale=scale, kernel_view=kernel_view)

    def _adapter_factors(self):
        """`(a, b, scale[, hybrid_a, hybrid_b])`, the arguments of the ops."""
        hybrid = (self.gralora_hybrid_a, self.gralora_hybrid_b) if self.gralora_config.hybrid_r else ()
        return (self.gralora_a, self.gralora_b, self.gralora_config.scale, *hybrid)

    def merge(self, safe=False):
        """Folds the adapter into the kernel; a no-op when already merged.

        Args:
            safe: When `True`, check the merged kernel is finite first and
                raise `ValueError` (kernel unchanged) if it is not.
        """
        if self._gralora_merged:
            return
        merged = self._kernel + ops.cast(self.delta_kernel(), self._kernel.dtype)
        if safe and not bool(ops.all(ops.isfinite(merged))):
            raise ValueError(
                f"{self._gralora_where()}: merging would make the kernel non-finite (NaN or inf); "
                "the adapter weights are broken. The kernel was left unchanged."
            )
        self._kernel.assign(merged)
        self._gralora_merged = True

    def unmerge(self):
        """Takes a merged adapter back out of the kernel; a no-op when not merged."""
        if not self._gralora_merged:
            return
        self._kernel.assign(self._unmerged_kernel())
        self._gralora_merged = False

    def _unmerged_kernel(self):
        if not self._gralora_merged:
            return ops.convert_to_tensor(self._kernel)
        return self._kernel - ops.cast(self.delta_kernel(), self._kernel.dtype)

    # Saving: the files always hold the base kernel unmerged, so a merged
    # layer and an unmerged one save the same thing and reload unmerged.
    def _named_variables(self):
        named = {"kernel": self._kernel}
        if self.bias is not None:
            named["bias"] = self.bias
        named.update((v.name, v) for v in self.adapter_variables)
        return named

    def save_own_variables(self, store):
        if not self.built:
            return
        for name, variable in self._named_variables().items():
            store[name] = self._unmerged_kernel() if name == "kernel" else variable

    def load_own_variables(self, store):
        if not self.built:
            return
        expected = self._named_variables()
        missing = sorted(set(expected) - set(store.keys()))
        unexpected = sorted(set(store.keys()) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{self._gralora_where()}: the saved variables do not match this layer "
                f"(missing: {missing}, unexpected: {unexpected}). Was the file saved from a layer "
                f"with other settings than {self.gralora_config}?"
            )
        for name, variable in expected.items():
            saved_shape = tuple(store[name].shape)
            if saved_shape != tuple(variable.shape):
                raise ValueError(
                    f"{self._gralora_where()}: saved `{name}` has shape {saved_shape}, "
                    f"this layer's has {tuple(variable.shape)}."
                )
        for name, variable in expected.items():
            variable.assign(store[name])
        self._gralora_merged = False

    def get_config(self):
        return {**super().get_config(), **self.gralora_config.to_dict()}


@compiled(static_argnames=("scale", "kernel_view"))
def _compiled_delta(a, b, hybrid_a=None, hybrid_b=None, *, scale, kernel_view):
    """`ops.delta_matrix`, then reshaped and transposed by `kernel_view`, as one program.

    Module-level so that every layer of the same shapes shares one compilation.
    """
    matrix = gralora_ops.delta_matrix(a, b, scale, hybrid_a, hybrid_b)
    if kernel_view is None:
        return matrix
    shape, perm = kernel_view
    return ops.transpose(ops.reshape(matrix, shape), perm)
