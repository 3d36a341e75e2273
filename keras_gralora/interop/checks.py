"""A PEFT directory's tensors checked against the model from their declared shapes (no data read yet).

Also PEFT's own rule for `rank_pattern` / `alpha_pattern` keys: each key is
a regular expression, and the first key `key` for which
`re.match(rf"(.*\\.)?({key})$", module)` matches gives the module's value
(`peft.utils.other.get_pattern_key`, peft 0.18-0.21), matched in linear time
(`pattern_keys.py`): a key from a file cannot hang the load.
"""

import math

from keras_gralora.interop import tensors
from keras_gralora.interop.peft_files import DTYPES
from keras_gralora.surgery import inject
from keras_gralora.surgery.pattern_keys import key_matcher


def pattern_value(config, field, module, default, where):
    """The value `config[field]` (a PEFT pattern dict) gives `module`, else `default`."""
    patterns = config.get(field) or {}
    if not isinstance(patterns, dict):
        raise ValueError(f"{where}: {field} must map regular expressions to values, got {patterns!r}.")
    for key, value in patterns.items():
        if key_matcher(key, r"\.", where, field)(module):
            return value
    return default


def check_module(source, layer, module, kind, found, config, peft_type):
    """Raises `ValueError` unless `found` (`{tensor: (declared shape, dtype)}`) fits `layer` and the config."""
    where = f"{source.where}: '{source.directory}'"
    for tensor, (_, dtype) in found.items():
        if dtype not in DTYPES:
            raise ValueError(
                f"{where}: tensor '{module}.{tensor}' is {dtype}; keras_gralora reads {sorted(DTYPES)} "
                "tensors. Save the adapter in float32 (PEFT's default for adapters)."
            )
    expected = _adapter_shapes(layer, module, config, peft_type, where) if kind == "adapter" else {}
    for tensor, shape in expected.items():
        if tensor not in found:
            raise ValueError(
                f"{where}: module '{module}' has no tensor '{tensor}' (it has {sorted(found)}). Save the adapter again."
            )
        if found[tensor][0] != shape:
            raise ValueError(
                f"{where}: tensor '{module}.{tensor}' declares shape {found[tensor][0]}; layer '{layer.path}' with "
                f"this adapter_config.json needs {shape}. The config and the weights do not belong together."
            )
    for tensor, (shape, _) in found.items():
        if tensor in expected:
            continue
        if kind == "adapter" and tensor not in ("bias", "base_layer.bias"):
            raise ValueError(
                f"{where}: tensor '{module}.{tensor}' does not belong to this adapter_config.json "
                f"(it expects {sorted(expected)} for '{module}')."
            )
        variable = tensors.keras_variable(layer, tensor.rsplit(".", 1)[-1], module, source.where)
        if math.prod(shape) != math.prod(variable.shape):
            raise ValueError(
                f"{where}: tensor '{module}.{tensor}' declares shape {shape}; it becomes "
                f"'{variable.path}' of shape {tuple(variable.shape)}."
            )


def _adapter_shapes(layer, module, config, peft_type, where):
    cls = inject.adapted_class(layer)
    if cls is None:
        raise ValueError(
            f"{where}: module '{module}' maps to layer '{layer.path}', a {type(layer).__name__}; "
            "adapters go on Dense/EinsumDense layers."
        )
    in_features, out_features = cls.matrix_shape_of(layer)
    if peft_type == "LORA":
        r = pattern_value(config, "rank_pattern", module, config["r"], where)
        _check_positive(r, f"r of '{module}'", where)
        return {"lora_A.weight": (r, in_features), "lora_B.weight": (out_features, r)}
    r, k, hybrid_r = config["r"], config["gralora_k"], config["hybrid_r"]
    for name, value in (("r", r), ("gralora_k", k)):
        _check_positive(value, name, where)
    if not isinstance(hybrid_r, int) or hybrid_r < 0 or in_features % k or out_features % k or r % k:
        raise ValueError(
            f"{where}: r={r}, gralora_k={k}, hybrid_r={hybrid_r} cannot adapt layer '{layer.path}' "
            f"({in_features} -> {out_features} features)."
        )
    shapes = {"gralora_A": (k, in_features // k, r), "gralora_B": (k, r, out_features // k)}
    if hybrid_r:
        shapes.update(
            {"gralora_A_general.weight": (hybrid_r, in_features), "gralora_B_general.weight": (out_features, hybrid_r)}
        )
    return shapes


def _check_positive(value, name, where):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: {name}={value!r} must be a positive integer.")
