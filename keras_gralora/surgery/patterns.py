"""Per-layer settings: `rank_pattern`, `alpha_pattern`, `k_pattern` and `k="auto"`.

A pattern maps regular expressions to values, with PEFT's rule
(`peft.utils.other.get_pattern_key`): the first key for which
`re.match(rf"(.*/)?({key})$", layer.path)` matches gives that layer's value
(PEFT matches module names, with `.` where Keras paths have `/`). Layers
no key matches keep the adapter's own value. Keys are matched in linear
time (`pattern_keys.py`), as the keys PEFT files bring.

`k="auto"` follows the paper's advice per layer: `k=2` for `r <= 32`, `k=4`
above; where that k does not divide the layer's input and output widths
and its rank, the next smaller one that does (down to 1).
"""

import dataclasses

from keras_gralora.layers.named_adapter import describe
from keras_gralora.surgery.pattern_keys import key_matcher

FIELDS = {"rank_pattern": "r", "alpha_pattern": "alpha", "k_pattern": "k"}


def check_patterns(patterns, where):
    """Raises `ValueError` for a pattern that is no dict of compiling regular expressions to numbers."""
    for field, pattern in patterns.items():
        if pattern is None:
            continue
        if not isinstance(pattern, dict) or not all(isinstance(key, str) for key in pattern):
            raise ValueError(f"{where}: {field} must map regular expressions (strings) to values, got {pattern!r}.")
        for key, value in pattern.items():
            key_matcher(key, "/", where, field)
            wanted = (int, float) if field == "alpha_pattern" else int
            if isinstance(value, bool) or not isinstance(value, wanted) or value <= 0:
                raise ValueError(
                    f"{where}: {field}[{key!r}] = {value!r} must be a positive "
                    f"{'number' if field == 'alpha_pattern' else 'integer'}."
                )


def matching_key(pattern, path):
    """The first key of `pattern` that matches layer `path` by PEFT's rule, or `None`."""
    return next((key for key in pattern or {} if key_matcher(key, "/", "matching_key", "pattern")(path)), None)


def layer_configs(targets, config, patterns, auto_k, sizes_of, where):
    """`[(layer, config)]`: each target's settings after the patterns and `k="auto"`, each checked.

    Raises `ValueError`, naming the pattern and the layer, for a key that matches no target or a value
    that does not fit a layer; nothing is changed by the caller before this returns.
    """
    planned = []
    for layer in targets:
        if not layer.built:  # refused with its own reason when enabled (`inject.check_adaptable`)
            planned.append((layer, config))
            continue
        changes, source = {}, {}
        for field, pattern in patterns.items():
            if (key := matching_key(pattern, layer.path)) is not None:
                changes[FIELDS[field]], source[FIELDS[field]] = pattern[key], f"{field}[{key!r}]"
        if auto_k and "k" not in changes:
            changes["k"], source["k"] = paper_k(changes.get("r", config.r), *sizes_of(layer)), 'k="auto"'
        layer_config = dataclasses.replace(config, **changes)
        try:
            layer_config.validate(describe(layer))
            layer_config.validate_features(*sizes_of(layer), describe(layer))
        except ValueError as error:
            given = ", ".join(f"{field}={changes[field]} from {source[field]}" for field in changes) or "no pattern"
            raise ValueError(f"{where}: layer '{layer.path}' ({given}): {error}") from None
        planned.append((layer, layer_config))
    for field, pattern in patterns.items():
        for key in pattern or {}:
            if not any(matching_key({key: None}, layer.path) is not None for layer in targets):
                raise ValueError(
                    f"{where}: {field} key {key!r} matches none of the targeted layers "
                    f"{sorted(layer.path for layer in targets)[:6]}...; it is matched against the end of each "
                    "layer path, as PEFT matches module names (e.g. 'query' or 'transformer_layer_0/.*query')."
                )
    return planned


def paper_k(r, in_features, out_features):
    """The paper's k for rank `r` (2 up to 32, else 4), or the largest smaller one dividing both widths and r."""
    preferred = 2 if r <= 32 else 4
    return next(k for k in range(preferred, 0, -1) if not (r % k or in_features % k or out_features % k))


def describe_choices(planned):
    """`k=2: 12 layers (a, b, ...); k=4: ...`, what `k="auto"` chose."""
    by_k = {}
    for layer, config in planned:
        by_k.setdefault(config.k, []).append(layer.path)
    return "; ".join(
        f"k={k}: {len(paths)} layers ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})"
        for k, paths in sorted(by_k.items())
    )
