"""ViTDetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/vit_det/vit_det_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.vit_det.vit_det_backbone import ViTDetBackbone
import types

BACKBONE = ViTDetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "image_shape": (16, 16, 3),
        "patch_size": 2,
        "hidden_size": 4,
        "num_layers": 2,
        "global_attention_layer_indices": [2, 5, 8, 11],
        "intermediate_dim": 4 * 4,
        "num_heads": 2,
        "num_output_channels": 2,
        "window_size": 2,
    }
    self.input_data = np.ones((1, 16, 16, 3), dtype="float32")
    return self.init_kwargs, self.input_data
