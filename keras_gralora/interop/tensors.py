"""Weights between a transformers module and a KerasHub layer (biases and `modules_to_save`).

A transformers `Linear` weight is `[out, in]`; the Keras kernel is that
matrix transposed, and for an `EinsumDense` reshaped and permuted to the
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


def to_keras(layer, variable, array):
    """`array` (transformers layout) as `variable` of `layer` holds it."""
    shape = tuple(variable.shape)
    if _is_kernel(layer, variable.name):
        matrix = np.asarray(array).T
        view, perm = _kernel_view(layer)
        if matrix.size != np.prod(view):
            raise ValueError(f"weight of shape {array.shape} cannot become '{variable.path}' of shape {shape}.")
        return np.ascontiguousarray(matrix.reshape(view).transpose(perm))
    if np.size(array) != np.prod(shape) or (np.ndim(array) == 2 and tuple(array.shape) != shape):
        raise ValueError(f"weight of shape {array.shape} cannot become '{variable.path}' of shape {shape}.")
    return np.reshape(array, shape)


def to_transformers(layer, variable_name, array):
    """`array` (a Keras variable's value) in transformers' layout."""
    if _is_kernel(layer, variable_name):
        view, perm = _kernel_view(layer)
        matrix = np.transpose(array, np.argsort(perm)).reshape(int(np.prod(view[: -_out_rank(layer)])), -1)
        return np.ascontiguousarray(matrix.T)
    return np.ascontiguousarray(array if variable_name == "embeddings" else np.reshape(array, -1))


def _is_kernel(layer, variable_name):
    return variable_name == "kernel" and isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))


def _kernel_view(layer):
    if isinstance(layer, keras.layers.EinsumDense):
        return ProjectionLayout.of(layer).kernel_view(tuple(layer.kernel.shape))
    return tuple(layer.kernel.shape), (0, 1)


def _out_rank(layer):
    return len(ProjectionLayout.of(layer).out_axes) if isinstance(layer, keras.layers.EinsumDense) else 1
