"""The checks every KerasHub backbone must pass, on its tiny KerasHub test configuration.

`check_backbone(name, targets)` builds the backbone from `backbones/<name>.py`
(KerasHub's own `setUp`, copied by `scripts/copy_backbone_configs.py`), enables
GraLoRA with the default targets (`targets=None`) or `"all"`, and checks:

- outputs equal the base at init;
- only adapter variables train, and every adapted layer gets a gradient
  wherever KerasHub's `enable_lora` factors on the same layer get one;
- the adapter file loads into a second build (auto-numbered names differ)
  with the same outputs;
- merging gives the unmerged outputs.

It returns a `Result`; `tests/test_backbones.py` runs it, and
`scripts/backbone_table.py` writes the README's table from it.
"""

import dataclasses
import importlib
import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops

from keras_gralora.layers.experts import GraLoRAExpertWeights, expert_weights
from keras_gralora.surgery import inject, structure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers

BACKBONES = sorted(
    name[:-3]
    for name in os.listdir(os.path.join(os.path.dirname(__file__), "backbones"))
    if name.endswith(".py") and not name.startswith("_")
)


@dataclasses.dataclass
class Result:
    name: str
    targets: str
    adapted: int = 0
    lora: int = 0  # layers KerasHub's `enable_lora(4)` adapts with its default targets
    experts: int = 0  # expert weights adapted (`target_parameters`)
    status: str = "ok"


# Configurations KerasHub's tests leave out, on top of a backbone's own: `name: (backbone, arguments changed)`.
VARIANTS = {
    "gemma4_moe": (
        "gemma4",
        dict(enable_moe_block=True, num_experts=4, expert_intermediate_dim=8, num_experts_per_token=2),
    )
}


def build(name):
    """A fresh backbone `name` (or `VARIANTS` entry) and its test inputs.

    A variant's expert weights are drawn at random: KerasHub starts Gemma 4's at zero, where no expert
    weight gets a gradient (`gelu(0) * 0`), adapted or not.
    """
    variant, (name, overrides) = name in VARIANTS, VARIANTS.get(name, (name, {}))
    module = importlib.import_module(f"backbones.{name}")
    init_kwargs, input_data = module.setup()
    model = module.BACKBONE(**{**init_kwargs, **overrides})
    if variant:
        helpers.randomize([weight.variable for weight in expert_weights(model)], seed=11, scale=0.3)
    return model, _varied(input_data)


def _varied(input_data):
    """KerasHub's inputs with all-equal token ids and images varied, so no gradient vanishes by symmetry."""
    rng = np.random.default_rng(3)

    def vary(key, x):
        x = np.asarray(ops.convert_to_numpy(x))
        if x.size == 0 or np.any(x != x.flat[0]):
            return x
        if "int" in str(x.dtype) and key.endswith("token_ids"):
            return rng.integers(1, 8, x.shape).astype(x.dtype)
        if "float" in str(x.dtype) and x.ndim >= 3:
            return rng.uniform(0, 1, x.shape).astype(x.dtype)
        return x

    if isinstance(input_data, dict):
        return {key: vary(key, x) for key, x in input_data.items()}
    return vary("", input_data)


def outputs(model, inputs):
    """Every float output of `model(inputs)` as NumPy, in a flat list (on jax, compiled: op by op is slow)."""
    if keras.backend.backend() == "jax":
        import jax

        call = jax.jit(lambda values, others, x: model.stateless_call(values, others, x, training=False)[0])
        found = call(
            [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], inputs
        )
    else:
        found = model(inputs, training=False)
    found = keras.tree.flatten(found)
    return [np.asarray(ops.convert_to_numpy(ops.stop_gradient(y)), "float64") for y in found if "float" in str(y.dtype)]


# Backbones whose forward pass jax cannot trace with their test inputs: their checks run eagerly on jax.
EAGER_ON_JAX = {"stable_diffusion_3": "its scheduler stores `ops.linspace(..., num_steps)` of an input on itself"}


def check_backbone(name, targets=None, r=4, k=2, experts=False):
    """Runs every check on backbone `name`; raises `AssertionError` naming the failed one.

    `experts=True`: its expert weights too (`target_parameters="all"`), where it has any.
    """
    if keras.backend.backend() == "jax" and name in EAGER_ON_JAX:
        import jax

        with jax.disable_jit():
            return _check_backbone(name, targets, r, k, experts)
    return _check_backbone(name, targets, r, k, experts)


def _check_backbone(name, targets, r, k, experts):
    result = Result(name, "default" if targets is None else targets)
    model, inputs = build(name)
    result.lora = _lora_count(name)
    base = outputs(model, inputs)
    base_weights = model.get_weights()
    target_parameters = "all" if experts and expert_weights(model) else None
    paths = model.enable_gralora(r=r, k=k, target_layer_names=targets, target_parameters=target_parameters)
    result.experts = sum(1 for layer in inject.adapted_layers(model) if isinstance(layer, GraLoRAExpertWeights))
    result.adapted = len(paths)
    _close(outputs(model, inputs), base, "outputs at init differ from the base")
    _check_trainable(model)
    _check_gradients(name, model, inputs, base_weights)
    _randomize_adapters(model)
    adapted = outputs(model, inputs)
    with tempfile.TemporaryDirectory() as folder:
        filepath = os.path.join(folder, "a.gralora.weights.h5")
        model.save_gralora_weights(filepath)
        second, _ = build(name)
        second.set_weights(base_weights)  # KerasHub's configs draw random base weights
        second.load_gralora_weights(filepath)
    _close(outputs(second, inputs), adapted, "a second build that loaded the adapter file gives other outputs")
    rounding = _kernel_rounding(model)
    sensitivity = _sensitivity(model, inputs, adapted)
    model.merge_gralora()
    merged = outputs(model, inputs)
    _close(
        merged,
        adapted,
        "merged outputs differ from the unmerged ones",
        scale_from=base,
        rounding=rounding,
        sensitivity=sensitivity,
    )
    return result


def _sensitivity(model, inputs, adapted):
    """Per output, how far one float32 rounding step moves it: of the float inputs, or of every adapted kernel.

    A merge rounds each kernel entry once (half a step); the unmerged pass
    rounds the sum of its two products. Each output's largest move over the
    two perturbations (a random sign per entry) is what rounding alone does.
    """
    moved = [np.abs(a - b) for a, b in zip(outputs(model, _rounded(inputs)), adapted)]
    kernels = [layer._kernel for layer in inject.adapted_layers(model) if layer.quantization_mode is None]
    saved = [np.asarray(ops.convert_to_numpy(variable)) for variable in kernels]
    for variable, value in zip(kernels, saved):
        variable.assign(_rounded(value))
    try:
        moved = [np.maximum(m, np.abs(a - b)) for m, a, b in zip(moved, outputs(model, inputs), adapted)]
    finally:
        for variable, value in zip(kernels, saved):
            variable.assign(value)
    return moved


def _rounded(inputs):
    """`inputs` with every float array moved by one float32 rounding step (relative 2**-23), at random."""
    rng = np.random.default_rng(5)

    def move(x):
        x = np.asarray(ops.convert_to_numpy(x))
        if "float" not in str(x.dtype):
            return x
        return (x * (1 + 2.0**-23 * rng.choice([-1.0, 1.0], x.shape))).astype(x.dtype)

    return keras.tree.map_structure(move, inputs)


def _lora_count(name):
    model, _ = build(name)
    model.enable_lora(4)
    return sum(1 for layer in model._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False))


def _check_trainable(model):
    names = {v.name for v in model.trainable_variables}
    assert model.trainable_variables, "nothing trains"
    assert all(name.startswith("gralora_") for name in names), f"trainable: {names}"


def _check_gradients(name, model, inputs, base_weights):
    """Every adapted layer's B factor gets a gradient wherever `enable_lora`'s does on the same layer.

    An expert weight, which Keras' LoRA does not adapt: wherever the weight itself gets one (an expert
    no token is routed to gets none). The two start from other random A factors, so gradients differ in
    size; an adapter outside the computation gets none at all. A layer fails when
    LoRA's gradient there is above 1e-7 of its largest and ours is below
    1e-3 of LoRA's (KerasHub's inputs are often all ones, which leaves some
    gradients at rounding noise in both).
    """
    keys = structure.layer_keys(model)
    adapted = inject.adapted_layers(model)
    ours = {keys[id(layer)]: layer for layer in adapted if not isinstance(layer, GraLoRAExpertWeights)}
    factors = {keys[id(layer)]: layer.adapter("default").variables[1] for layer in adapted}
    our_sizes = _sizes(gradients(model, inputs), factors)
    twin, _ = build(name)
    twin.set_weights(base_weights)
    twin_layers, _ = structure.places(twin, keyed=True)  # expert weights (no Keras LoRA): their own gradient
    twin.trainable = True
    for key in ours:
        twin_layers[key].enable_lora(4)
    references = {
        key: twin_layers[key].variable if key not in ours else twin_layers[key].lora_kernel_b for key in factors
    }
    lora_sizes = _sizes(gradients(twin, inputs), references)
    largest = max(lora_sizes.values(), default=0.0)
    missing = sorted(
        layer.path
        for layer in adapted
        if lora_sizes[keys[id(layer)]] > 1e-7 * largest
        and our_sizes[keys[id(layer)]] <= 1e-3 * lora_sizes[keys[id(layer)]]
    )
    assert not missing, f"{len(missing)} of {len(adapted)} adapted layers get no gradient: {missing}"


def _sizes(grads, factors):
    """`{key: largest absolute gradient}` of `factors` (`{key: variable}`); 0 for none."""
    return {key: np.max(np.abs(grads[id(v)])) if grads.get(id(v)) is not None else 0.0 for key, v in factors.items()}


def gradients(model, inputs):
    """`{id(variable): gradient}` of a fixed random projection of every float output, per trainable variable."""
    grads = helpers.gradients(model, inputs, _projection)
    return {id(v): g for v, g in zip(model.trainable_variables, grads)}


def _projection(found):
    total = 0.0
    for i, y in enumerate(y for y in keras.tree.flatten(found) if "float" in str(y.dtype)):
        weights = np.random.default_rng(i).standard_normal(tuple(y.shape)).astype("float32")
        total = total + ops.sum(ops.multiply(ops.cast(y, "float32"), ops.convert_to_tensor(weights)))
    return total


def _randomize_adapters(model):
    helpers.randomize(model.trainable_variables, seed=7, scale=0.1)


EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def _kernel_rounding(model):
    """The coarsest rounding of the adapted kernels: a merge is exact only to that (SD3's CLIP is float16)."""
    layers = inject.adapted_layers(model)
    kernels = [keras.backend.standardize_dtype(layer._kernel.dtype) for layer in layers]
    return max((EPS.get(dtype, 0.0) for dtype in kernels), default=0.0)


def _close(found, expected, message, scale_from=None, rounding=0.0, sensitivity=None):
    """`found` equals `expected` up to float rounding of the outputs and of the kernels.

    `sensitivity`: how far one float32 rounding step of the inputs or of the
    adapted kernels alone moves each output (`_sensitivity`). A deep random
    network can amplify rounding a thousandfold (a tiny BASNet: 1e-6 per
    convolution, 1e-3 at its sigmoid outputs), so a merge, which rounds each
    kernel and sums in another order in every layer at once, may differ by a
    small multiple of it (measured: up to 7 on tensorflow; the limit is 16).
    """
    assert len(found) == len(expected), message
    for i, (a, b) in enumerate(zip(found, expected)):
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{message}: output {i} has NaNs elsewhere"
        finite = ~np.isnan(b)  # SD3's tiny config gives NaN in places: the same ones each time
        a, b = a[finite], b[finite]
        if scale_from is not None:
            scale_from = [c[~np.isnan(c)] if j == i else c for j, c in enumerate(scale_from)]
        if not a.size:
            continue
        size = np.max(np.abs(b))
        scale = np.max(np.abs(b - scale_from[i])) if scale_from is not None else size
        error = np.max(np.abs(a - b))  # float32 rounding of the outputs, or 1e-4 of what the adapters move
        limit = 1e-4 * scale + max(1e-5, 8 * rounding) * max(size, 1.0)
        if sensitivity is not None:
            limit = max(limit, 16 * float(np.max(sensitivity[i][finite])))
        assert error <= limit, f"{message}: output {i} off by {error:.3g} ({scale:.3g})"
