"""MiTBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/mit/mit_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.mit.mit_backbone import MiTBackbone
import types

BACKBONE = MiTBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "layerwise_depths": [2, 2],
        "image_shape": (32, 32, 3),
        "hidden_dims": [4, 8],
        "num_layers": 2,
        "layerwise_num_heads": [1, 2],
        "layerwise_sr_ratios": [8, 4],
        "max_drop_path_rate": 0.1,
        "layerwise_patch_sizes": [7, 3],
        "layerwise_strides": [4, 2],
    }
    self.input_size = 32
    self.input_data = np.ones((2, self.input_size, self.input_size, 3), dtype="float32")
    return self.init_kwargs, self.input_data
