"""GraLoRA over Keras' own int8 / int4 quantized kernels: the frozen base of QLoRA-style tuning.

Keras' quantized `Dense` / `EinsumDense` (and `Embedding`, whose lookup
dequantizes the gathered rows) compute the base projection from
the integer kernel and its scale (`_int8_call`, `_int4_call`: the integer
matmul under a custom gradient that dequantizes only for the input
gradient), then add bias and activation. A GraLoRA layer reuses exactly
that matmul as its frozen base (run on a view of the layer that has no
bias and activation, so the layer itself never changes) and adds bias,
the float32 adapters and activation itself, as for a float base.
`quantize` on an adapted layer quantizes its base kernel with Keras' own
quantizer and keeps the adapters.

Merging into an integer kernel is lossy: the kernel is dequantized, the
delta added in float32 and the sum requantized by Keras' own `quantize`
(same mode and config, so the same block size), which moves each entry by
at most half a quantization step. The original integer kernel and scale are
kept (on the host, at the kernel's quantized size) so that `unmerge`
restores them bit for bit, and files always store them.
"""

import functools

import keras
from keras import ops
from keras.src.quantizers.quantizers import dequantize_with_sz_map  # Keras' grouped int4 dequantization

from keras_gralora.backend import to_numpy

SUPPORTED_MODES = ("int8", "int4")


def check_quantization_mode(mode, where):
    """Raises `ValueError` unless GraLoRA can adapt a base quantized with `mode`."""
    if mode is not None and mode not in SUPPORTED_MODES:
        raise ValueError(
            f"{where}: quantization mode {mode!r} cannot carry GraLoRA adapters; supported modes are "
            f"{list(SUPPORTED_MODES)} (float8 rescales activations per step and gptq/awq replace the kernel "
            "with calibrated weights, so Keras computes no plain quantized matmul to add the adapter to). "
            "Quantize with 'int8' or 'int4', or adapt the float model."
        )
    return mode


def logical_kernel_shape(layer):
    """The float kernel's shape, also for an int4 kernel that Keras stores packed."""
    if layer.quantization_mode == "int4":
        if hasattr(layer, "original_kernel_shape"):  # EinsumDense
            return tuple(layer.original_kernel_shape)
        return (layer._kernel.shape[0], layer._orig_output_dim)  # Dense
    return tuple(layer._kernel.shape)


STORAGE = ("kernel", "kernel_scale", "kernel_zero", "g_idx", "embeddings", "embeddings_scale", "embeddings_zero")
TABLE_STORAGE = {"embeddings": "_embeddings"}  # a table's storage name -> the attribute Keras' quantized call reads


def own_variables(layer):
    """`{name: variable}` of `layer`'s own variables (not a sublayer's): kernel, bias, scale, adapters..."""
    return {v.name: v for v in layer._trainable_variables + layer._non_trainable_variables}


def storage_values(layer):
    """`{name: numpy array}` of the variables that hold the base kernel (a quantized one's scale, zero, groups)."""
    return {name: to_numpy(v) for name, v in own_variables(layer).items() if name in STORAGE}


def dequantized_kernel(layer, values):
    """The float32 kernel, in the float kernel's shape, that int8/int4 storage `values` stands for."""
    mode = layer.quantization_mode
    if isinstance(layer, keras.layers.Embedding):  # Keras' own quantized lookup of every row, in float32
        storage = {TABLE_STORAGE.get(name, name): ops.convert_to_tensor(value) for name, value in values.items()}
        view = ReadOnlyView(layer, compute_dtype="float32", lora_enabled=False, **storage)
        return getattr(keras.layers.Embedding, f"_{mode}_call")(view, ops.arange(layer.input_dim, dtype="int32"))
    kernel, scale = ops.convert_to_tensor(values["kernel"]), ops.convert_to_tensor(values["kernel_scale"])
    if mode == "int4":
        columns = getattr(layer, "_int4_unpacked_column_size", None) or getattr(layer, "_orig_output_dim", None)
        kernel = keras.quantizers.unpack_int4(kernel, columns, axis=-1)
    kernel = ops.cast(kernel, "float32")
    if "kernel_zero" in values:  # int4 in groups along the input axis: (q - zero) * scale
        float_kernel = dequantize_with_sz_map(kernel, scale, values["kernel_zero"], values["g_idx"], group_axis=0)
    elif mode == "int8" and hasattr(layer, "_adjust_scale_for_dequant"):  # EinsumDense: scale in the output's layout
        float_kernel = ops.divide(kernel, layer._adjust_scale_for_dequant(scale))
    else:
        float_kernel = ops.divide(kernel, scale)
    return ops.reshape(float_kernel, logical_kernel_shape(layer))


def base_class(layer):
    """The plain Keras class (`Dense`, `EinsumDense`, `Conv2D`, ...) of a GraLoRA layer: the first of Keras' own."""
    return next(c for c in type(layer).__mro__ if c.__module__.startswith("keras."))


def _scratch(layer, dtype):
    """A new plain layer with `layer`'s settings and name, built like it, under `dtype`; zero kernel."""
    config = {**base_class(layer).get_config(layer), "dtype": dtype}
    config.update({key: "zeros" for key in ("kernel_initializer", "embeddings_initializer") if key in config})
    if "quantization_config" in config:  # layers Keras quantizes
        config["quantization_config"] = None
    scratch = base_class(layer).from_config(config)
    scratch.build_from_config(layer.get_build_config())
    return scratch


def _quantize_like(scratch, layer):
    config = layer.quantization_config
    block_size = getattr(layer.dtype_policy, "block_size", None)
    if config is None and block_size is not None:  # a layer restored without its config: the policy has the size
        config = keras.quantizers.Int4QuantizationConfig(block_size=block_size)
    scratch.quantize(layer.quantization_mode, config=config)
    got = (scratch.dtype_policy.quantization_mode, getattr(scratch.dtype_policy, "block_size", None))
    if got != (layer.quantization_mode, block_size):
        raise ValueError(
            f"{layer.path}: requantizing the merged kernel gave (mode, block size) {got}, the layer has "
            f"{(layer.quantization_mode, block_size)}; the kernel was left unchanged."
        )


def requantized(layer, float_kernel):
    """Storage values for `float_kernel`, quantized by Keras' own `quantize` as `layer` was.

    A scratch plain `Dense`/`EinsumDense`/`Embedding` with the layer's settings, float32
    and built like it, gets `float_kernel` and is quantized with the layer's
    mode and config; its integer kernel and scale are returned.
    """
    scratch = _scratch(layer, "float32")
    (scratch._embeddings if isinstance(scratch, keras.layers.Embedding) else scratch._kernel).assign(float_kernel)
    _quantize_like(scratch, layer)
    return storage_values(scratch)


def plain_twin(layer, storage):
    """A plain layer like `layer` (quantized alike) whose kernel storage is `storage`, with `layer`'s bias."""
    if layer.quantization_mode is None:
        twin = _scratch(layer, layer.dtype_policy)
    else:
        twin = _scratch(layer, "float32")
        _quantize_like(twin, layer)
    variables = own_variables(twin)
    for name, value in storage.items():
        variables[name].assign(value)
    if layer.bias is not None:
        twin.bias.assign(layer.bias)
    return twin


class ReadOnlyView:
    """`layer` as Keras' quantized matmul reads it, with some attributes replaced; `layer` itself unchanged.

    Keras' `_int8_call` / `_int4_call` only read the layer's attributes, so
    they run on a view that answers `overrides` (e.g. `bias=None`) and
    `layer`'s attributes otherwise; concurrent calls of the layer stay right.
    """

    def __init__(self, layer, **overrides):
        object.__setattr__(self, "_layer", layer)
        for name, value in overrides.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def __setattr__(self, name, value):
        raise AttributeError(f"the quantized matmul tried to set {name!r} on the layer '{self._layer.name}'")


def rebind_quantize(layer):
    """Points `layer.quantize` at its (new) class's method, wrapped as Keras wraps it.

    Keras wraps each layer's `quantize` when the layer is created (resolve
    the config, check the arguments, unlock the layer's state) and stores the
    wrapper on the instance, so a layer whose class `inject.py` swaps would
    keep calling its old class's method.
    """
    from keras.src.quantizers.quantization_config import validate_and_resolve_config  # what Keras' wrapper does

    method = type(layer).quantize.__get__(layer)

    @functools.wraps(method)
    def quantize(mode=None, config=None, **kwargs):
        config = validate_and_resolve_config(mode, config)
        layer._check_quantize_args(config.mode, layer.compute_dtype)
        layer._tracker.unlock()
        try:
            method(mode=config.mode, config=config, **kwargs)
        finally:
            layer._tracker.lock()

    object.__setattr__(layer, "quantize", quantize)


class QuantizedBase:
    """Mixin of `GraLoRAAdapter`: the quantized call path and `quantize`."""

    def quantized_call(self, inputs, training=None):
        mode = check_quantization_mode(self.quantization_mode, self._gralora_where())
        if mode == "int8" and 0 in tuple(inputs.shape):  # Keras' int8 input quantizer takes the max of the
            x = self._base_output(inputs, ops.cast(self._kernel, self.compute_dtype))  # batch: torch, tf raise
        else:
            keras_call = getattr(base_class(self), f"_{mode}_call")  # Keras' own quantized matmul
            x = keras_call(ReadOnlyView(self, bias=None, activation=None), inputs, training=training)
        return self._add_bias_adapters_activation(x, inputs, training)

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantizes the base kernel with Keras' quantizer (`"int8"`, `"int4"`); keeps the adapters.

        Refuses every other mode with a `ValueError` before anything changes
        (Keras' `Model.quantize` would turn a `NotImplementedError` into a
        warning and skip the layer).
        """
        check_quantization_mode(mode, self._gralora_where())
        if self.merged:
            raise ValueError(
                f"{self._gralora_where()}: adapters {self.merged_adapters} are merged into the float kernel; "
                "quantizing would freeze them into the integer kernel. Call `unmerge_gralora(model)` first."
            )
        super().quantize(mode, type_check=False, config=config)
        self.freeze_base()
