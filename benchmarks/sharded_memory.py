"""Bytes per device of Gemma 2B/7B and Llama 3 8B under ModelParallel: frozen base, adapters, optimizer state.

The backbones are built from their preset configurations inside a
`keras.StatelessScope`, so variables have paths and shapes but no values:
nothing that size is allocated. Each configuration is checked against the
parameter count KerasHub's preset metadata gives. Per mesh (data x model:
1x8, 2x4, 8x1), a variable's bytes on one device are its bytes divided by
the mesh axes its layout (KerasHub's `get_layout_map`, our adapters
replicated) shards it over. The base in bfloat16 (the presets' dtype),
adapters in float32, Adam's two float32 slots per trainable variable.
GraLoRA (r=32, k=2) and Keras LoRA (rank 32) on KerasHub's default targets
(query and value).

    KERAS_BACKEND=jax python benchmarks/sharded_memory.py
"""

import json
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub

import keras_gralora  # noqa: F401  (adds Backbone.enable_gralora)

# Preset configurations (config.json of each KerasHub preset) and KerasHub's parameter counts.
PRESETS = {
    "gemma_2b_en": (
        keras_hub.models.GemmaBackbone,
        2506172416,
        dict(
            vocabulary_size=256000,
            num_layers=18,
            num_query_heads=8,
            num_key_value_heads=1,
            hidden_dim=2048,
            intermediate_dim=32768,
            head_dim=256,
        ),
    ),
    "gemma_7b_en": (
        keras_hub.models.GemmaBackbone,
        8537680896,
        dict(
            vocabulary_size=256000,
            num_layers=28,
            num_query_heads=16,
            num_key_value_heads=16,
            hidden_dim=3072,
            intermediate_dim=49152,
            head_dim=256,
        ),
    ),
    "llama3_8b_en": (
        keras_hub.models.Llama3Backbone,
        8030261248,
        dict(
            vocabulary_size=128256,
            num_layers=32,
            num_query_heads=32,
            num_key_value_heads=8,
            hidden_dim=4096,
            intermediate_dim=14336,
            rope_max_wavelength=500000,
        ),
    ),
}
MESHES = ((1, 8), (2, 4), (8, 1))
BASE_BYTES, ADAPTER_BYTES, ADAM_SLOTS = 2, 4, 2


def shapes_only(backbone_class, config, method):
    """The backbone's variables (path, shape, trainable), adapted by `method`, with no values."""
    with keras.StatelessScope(initialize_variables=False):  # shapes only: never given values
        backbone = backbone_class(**config, dtype="bfloat16")
        if method == "gralora":
            backbone.enable_gralora(r=32, k=2)
        else:
            backbone.enable_lora(32)
        return [(v.path, tuple(v.shape), v.trainable) for v in backbone.weights]


def per_device_bytes(variables, backbone_class, mesh_shape):
    """{"base", "adapters", "optimizer"}: bytes on one device of the `data x model` mesh."""
    mesh = keras.distribution.DeviceMesh(mesh_shape, ("batch", "model"), devices=[f"cpu:{i}" for i in range(8)])
    layout_map = backbone_class.get_layout_map(mesh)
    sizes = dict(zip(mesh.axis_names, mesh.shape))
    total = {"base": 0, "adapters": 0, "optimizer": 0}
    for path, shape, trainable in variables:
        layout = layout_map[path]
        axes = layout.axes if layout is not None else ()
        split = math.prod(sizes[a] for a in axes if a is not None)
        count = math.prod(shape) / split
        if trainable:
            total["adapters"] += count * ADAPTER_BYTES
            total["optimizer"] += count * ADAPTER_BYTES * ADAM_SLOTS
        else:
            total["base"] += count * BASE_BYTES
    return total


def main():
    for preset, (backbone_class, params, config) in PRESETS.items():
        for method in ("gralora", "lora"):
            variables = shapes_only(backbone_class, config, method)
            base = sum(math.prod(s) for _, s, trainable in variables if not trainable)
            assert base == params, f"{preset}: {base} parameters, KerasHub says {params}"
            trainable = sum(math.prod(s) for _, s, t in variables if t)
            for mesh_shape in MESHES:
                mib = {k: v / 2**20 for k, v in per_device_bytes(variables, backbone_class, mesh_shape).items()}
                print(
                    json.dumps(
                        {
                            "bench": "sharded_memory",
                            "preset": preset,
                            "method": method,
                            "trainable": trainable,
                            "mesh": "x".join(map(str, mesh_shape)),
                            **{f"{k}_mib": round(v, 1) for k, v in mib.items()},
                        }
                    )
                )


if __name__ == "__main__":
    main()
