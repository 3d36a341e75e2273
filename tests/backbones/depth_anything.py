"""DepthAnythingBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/depth_anything/depth_anything_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.depth_anything.depth_anything_backbone import DepthAnythingBackbone
from keras_hub.src.models.dinov2.dinov2_backbone import DINOV2Backbone
import types

BACKBONE = DepthAnythingBackbone


def setup():
    self = types.SimpleNamespace()
    image_encoder = DINOV2Backbone(
        14, 4, 16, 2, 16 * 4, 1.0, 0, image_shape=(126, 126, 3), apply_layernorm=True, name="image_encoder"
    )
    self.init_kwargs = {
        "image_encoder": image_encoder,
        "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_dims": [16, 32, 64, 128],
        "fusion_hidden_dim": 128,
        "head_hidden_dim": 16,
        "head_in_index": -1,
        "feature_keys": ["stage1", "stage2", "stage3", "stage4"],
    }
    self.input_data = np.ones((2, 126, 126, 3), dtype="float32")
    return self.init_kwargs, self.input_data
