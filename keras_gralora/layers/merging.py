"""Deltas and merging for GraLoRA layers: `delta_kernel`, `merge`, `unmerge`.

Merging adds adapters' deltas to the kernel; the forward pass then skips
them. `unmerge` takes every merged delta out again (a float kernel: float
rounding aside; an int8/int4 kernel: exactly, see `layers/quantized.py`);
files always store that unmerged kernel.
"""

from keras import ops

from keras_gralora import ops as gralora_ops
from keras_gralora.backend import compiled
from keras_gralora.layers.quantized import dequantized_kernel, requantized, storage_values


class AdapterMerging:
    """Mixin of `GraLoRAAdapter`; uses its `_gralora` state, `adapter()`, `_refresh()` and `_named_variables()`."""

    def delta_matrix(self, adapter_name=None):
        """`scale * update` as the `[in, out]` matrix, float32 (see `delta_kernel`)."""
        return self._delta(adapter_name, kernel_view=None)

    def delta_kernel(self, adapter_name=None):
        """`scale * update` in the kernel's own shape and axis order, float32.

        `adapter_name=None` sums the active adapters this layer has (what
        `merge()` adds).
        """
        return self._delta(adapter_name, kernel_view=self._kernel_view())

    @property
    def kernel(self):
        """The kernel as the forward pass applies it: the frozen kernel plus the deltas `call` adds.

        Some layers multiply by a sublayer's `kernel` instead of calling it
        (KerasHub's Gemma 4 feed-forward reads `ffw_gating.kernel`); they so
        apply the adapters and train them, as with Keras' LoRA, whose
        `kernel` adds its factors. Adapter dropout applies in `call` only. A
        quantized kernel is returned as Keras returns it.
        """
        kernel = self._frozen_kernel()
        state = getattr(self, "_gralora", None)
        if state is None or not state.forward or self.quantization_mode is not None:
            return kernel
        view = self._kernel_view()
        for adapter in state.forward:
            a, b, scale, *hybrid = adapter.factors()
            delta = _delta_in_view(a, b, *(hybrid or (None, None)), scale, view)
            kernel = ops.add(kernel, ops.cast(delta, kernel.dtype))
        return kernel

    def _frozen_kernel(self):
        """The kernel as stored (merged adapters in it), as Keras' `kernel` reads it."""
        return super().kernel

    def _kernel_view(self):
        """`(shape, perm)` taking the `[in, out]` matrix to the kernel: none needed."""
        return None

    def _delta(self, names, kernel_view):
        if names is None:
            names = [n for n in self._gralora.active if n in self._gralora.adapters]
        elif isinstance(names, str):
            names = [names]
        if not names:
            raise ValueError(f"{self._gralora_where()}: no active adapter, so there is no delta to compute.")
        total = None
        for name in names:
            a, b, scale, *hybrid = self.adapter(name).factors()
            tensors = [ops.convert_to_tensor(v) for v in (a, b, *hybrid)]
            delta = _compiled_delta(*tensors, scale=scale, kernel_view=kernel_view)
            total = delta if total is None else ops.add(total, delta)
        return total

    def merge(self, adapter_names=None, safe=False):
        """Folds adapters into the kernel; already merged ones are skipped.

        Args:
            adapter_names: A name or a list of names; `None` merges the active ones.
            safe: When `True`, check the merged kernel is finite first and
                raise `ValueError` (kernel unchanged) if it is not.
        """
        if adapter_names is None:
            adapter_names = [n for n in self._gralora.active if n in self._gralora.adapters]
        elif isinstance(adapter_names, str):
            adapter_names = [adapter_names]
        todo = [self.adapter(name).name for name in adapter_names if name not in self._gralora.merged]
        if not todo:
            return
        merged, original = self._merged_float(todo)
        if safe and not bool(ops.all(ops.isfinite(merged))):
            raise ValueError(
                f"{self._gralora_where()}: merging {todo} would make the kernel non-finite (NaN or inf); "
                "the adapter weights are broken. The kernel was left unchanged."
            )
        if original is not None:
            self._assign_storage(requantized(self, merged))
            self._gralora.quantized_original = original
        else:
            self._kernel.assign(merged)
        self._gralora.merged.extend(todo)
        self._refresh()

    def _merged_float(self, todo):
        """`(float kernel with `todo` merged too, original quantized storage or None)`; changes nothing."""
        if self.quantization_mode is not None:  # lossy: the original dequantized plus every merged delta
            original = self._gralora.quantized_original or storage_values(self)
            delta = self._delta(self._gralora.merged + todo, self._kernel_view())
            return dequantized_kernel(self, original) + delta, original
        return self._kernel + ops.cast(self._delta(todo, self._kernel_view()), self._kernel.dtype), None

    def merged_storage(self):
        """`{variable name: value}` of the kernel's storage as `merge()` would leave it; the layer is not changed."""
        todo = [n for n in self._gralora.active if n in self._gralora.adapters and n not in self._gralora.merged]
        if not todo:
            return self._storage()
        merged, original = self._merged_float(todo)
        return requantized(self, merged) if original is not None else {self._kernel.name: merged}

    def unmerge(self):
        """Takes every merged adapter back out of the kernel; a no-op when none is merged.

        A float kernel gets the deltas subtracted (float rounding aside, the
        original); a quantized one gets its original integer kernel and scale
        back, bit for bit.
        """
        if not self._gralora.merged:
            return
        self._assign_storage(self.unmerged_storage())
        self._gralora.merged.clear()
        self._gralora.quantized_original = None
        self._refresh()

    def merge_state(self):
        """The kernel's storage and merged names as they are now: `restore_merge_state` puts them back bit for bit."""
        return self._storage(), self.merged_adapters, self._gralora.quantized_original

    def _storage(self):
        """`{name: numpy array}` of the variables that hold the base kernel (`quantized.storage_values`)."""
        return storage_values(self)

    def restore_merge_state(self, state):
        """Puts back what `merge_state()` returned: the kernel's storage and the merged names."""
        values, merged, self._gralora.quantized_original = state
        self._assign_storage(values)
        self._gralora.merged[:] = merged
        self._refresh()

    def unmerged_storage(self):
        """`{variable name: value}` of the kernel's storage with nothing merged (what files store)."""
        if not self._gralora.merged:
            return {}
        if self.quantization_mode is not None:
            return dict(self._gralora.quantized_original)
        delta = self._delta(self._gralora.merged, self._kernel_view())
        return {self._kernel.name: self._kernel - ops.cast(delta, self._kernel.dtype)}

    def _assign_storage(self, values):
        variables = self._named_variables()
        for name, value in values.items():
            variables[name].assign(value)


@compiled(static_argnames=("scale", "kernel_view"))
def _compiled_delta(a, b, hybrid_a=None, hybrid_b=None, *, scale, kernel_view):
    """`ops.delta_matrix`, then reshaped and transposed by `kernel_view`, as one program.

    Module-level so that every layer of the same shapes shares one compilation.
    """
    return _delta_in_view(a, b, hybrid_a, hybrid_b, scale, kernel_view)


def _delta_in_view(a, b, hybrid_a, hybrid_b, scale, kernel_view):
    matrix = gralora_ops.delta_matrix(a, b, scale, hybrid_a, hybrid_b)
    if kernel_view is None:
        return matrix
    shape, perm = kernel_view
    return ops.transpose(ops.reshape(matrix, shape), perm)
