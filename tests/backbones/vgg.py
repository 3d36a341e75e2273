"""VGGBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/vgg/vgg_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.vgg.vgg_backbone import VGGBackbone
import types

BACKBONE = VGGBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stackwise_num_repeats": [2, 3, 3],
        "stackwise_num_filters": [8, 64, 64],
        "image_shape": (16, 16, 3),
    }
    self.input_data = np.ones((2, 16, 16, 3), dtype="float32")
    return self.init_kwargs, self.input_data
