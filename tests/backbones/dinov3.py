"""DINOV3BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/dinov3/dinov3_backbone_test.py
"""

import os
import keras
from keras import ops
from keras_hub.src.models.dinov3.dinov3_backbone import DINOV3Backbone
import types

BACKBONE = DINOV3Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "patch_size": 16,
        "num_layers": 2,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 16 * 4,
        "layer_scale_init_value": 1.0,
        "num_register_tokens": 4,
        "use_gated_mlp": False,
        "image_shape": (64, 64, 3),
        "name": "dinov3_backbone",
    }
    self.input_data = {"pixel_values": ops.ones((2, 64, 64, 3))}
    return self.init_kwargs, self.input_data
