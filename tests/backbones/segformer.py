"""SegFormerTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/segformer/segformer_backbone_test.py
"""

import numpy as np
from keras import ops
from keras_hub.src.models.mit.mit_backbone import MiTBackbone
from keras_hub.src.models.segformer.segformer_backbone import SegFormerBackbone
import types

BACKBONE = SegFormerBackbone


def setup():
    self = types.SimpleNamespace()
    encoder_init_kwargs = {
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
    image_encoder = MiTBackbone(**encoder_init_kwargs)
    projection_filters = 256
    self.input_size = 32
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    self.init_kwargs = {"projection_filters": projection_filters, "image_encoder": image_encoder}
    return self.init_kwargs, self.input_data
