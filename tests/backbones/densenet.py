"""DenseNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/densenet/densenet_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.densenet.densenet_backbone import DenseNetBackbone
import types

BACKBONE = DenseNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stackwise_num_repeats": [2, 4, 6, 4],
        "compression_ratio": 0.5,
        "growth_rate": 2,
        "image_shape": (32, 32, 3),
    }
    self.input_size = 32
    self.input_data = np.ones((2, self.input_size, self.input_size, 3), dtype="float32")
    return self.init_kwargs, self.input_data
