"""Weights between a transformers module and a KerasHub layer (biases and `modules_to_save`).

A transformers `Linear` weight is `[out, in]` (a `Conv1D`'s, GPT-2's, is
`[in, out]`); the Keras kernel is the `[in, out]` matrix, and for an `EinsumDense` reshaped and permuted to the
kernel's own axes (`ProjectionLayout.kernel_view`, as GraLoRA reads it).
Every other weight (biases, normalization scales, embeddings) keeps its
numbers in order and takes the Keras variable's shape.
"""

import keras
import numpy as np

from keras_gralora.layers.einsum_dense import ProjectionLayout

KERAS_NAMES = {"weight": ("kernel", "gamma", "scale", "embeddings"), "bias": ("bias", "beta")}


def keras_variable(layer, tensor, module, where):
    """The variable of `layer` that transformers' `<module>.<tensor>` ("weight" or "bias") became."""
    found = [v for v in layer.weights if v.name in KERAS_NAMES.get(tensor, ())]
    if len(found) != 1:
        raise ValueError(
            f"{where}: '{module}.{tensor}' has no single counterpart in layer '{layer.path}' "
            f"(its weights: {[v.name for v in layer.weights]})."
        )
    return found[0]


def transformers_name(variable_name, module, where):
    """`"weight"` or `"bias"`: what transformers calls the Keras variable `variable_name` of `module`."""
    for tensor, keras_names in KERAS_NAMES.items():
        if variable_name in keras_names:
            return tensor
    raise ValueError(f"{where}: weight '{variable_name}' of module '{module}' has no transformers name.")


def to_keras(layer, variable, array, fan_in_fan_out=False):
    """`array` (transformers layout; `[in, out]` for a Conv1D's, `fan_in_fan_out`) as `variable` of `layer` holds it."""
    shape = tuple(variable.shape)
    if _is_kernel(layer, variable.name):
        matrix_shape, view, perm = _matrix_layout(layer)
        matrix = np.asarray(array) if fan_in_fan_out else np.asarray(array).T
        if matrix.shape != matrix_shape:
            raise ValueError(f"weight of shape {array.shape} cannot become '{variable.path}' of shape {shape}.")
        return np.ascontiguousarray(matrix.reshape(view).transpose(perm))
    if np.size(array) != np.prod(shape) or (np.ndim(array) == 2 and tuple(array.shape) != shape):
        raise ValueError(f"weight of shape {array.shape} cannot become '{variable.path}' of shape {shape}.")
    return np.reshape(array, shape)


def to_transformers(layer, variable_name, array, fan_in_fan_out=False):
    """`array` (a Keras variable's value) in transformers' layout."""
    if _is_kernel(layer, variable_name):
        matrix_shape, _, perm = _matrix_layout(layer)
        matrix = np.transpose(array, np.argsort(perm)).reshape(matrix_shape)
        return np.ascontiguousarray(matrix if fan_in_fan_out else matrix.T)
    return np.ascontiguousarray(array if variable_name == "embeddings" else np.reshape(array, -1))


def _is_kernel(layer, variable_name):
    return variable_name == "kernel" and isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def _matrix_layout(layer):
    """`(matrix shape, view, perm)`: the kernel is its `[in, out]` matrix reshaped to `view`, then transposed."""
    shape = tuple(layer.kernel.shape)
    if isinstance(layer, keras.layers.EinsumDense):
        layout = ProjectionLayout.of(layer)
        return (layout.matrix_shape(shape), *layout.kernel_view(shape))
    return shape, shape, (0, 1)
