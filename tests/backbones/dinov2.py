"""DINOV2BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/dinov2/dinov2_backbone_test.py
"""

import os
import keras
from keras import ops
from keras_hub.src.models.dinov2.dinov2_backbone import DINOV2Backbone
import types

BACKBONE = DINOV2Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "patch_size": 14,
        "num_layers": 2,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 16 * 4,
        "layer_scale_init_value": 1.0,
        "num_register_tokens": 0,
        "use_swiglu_ffn": False,
        "image_shape": (70, 70, 3),
        "name": "dinov2_backbone",
    }
    self.input_data = {"images": ops.ones((2, 70, 70, 3))}
    return self.init_kwargs, self.input_data
