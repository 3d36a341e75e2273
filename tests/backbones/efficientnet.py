"""EfficientNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/efficientnet/efficientnet_backbone_test.py
"""

import keras
from keras_hub.src.models.efficientnet.efficientnet_backbone import EfficientNetBackbone
import types

BACKBONE = EfficientNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stackwise_kernel_sizes": [3, 3, 3, 3, 3, 3],
        "stackwise_num_repeats": [2, 4, 4, 6, 9, 15],
        "stackwise_input_filters": [24, 24, 48, 64, 128, 160],
        "stackwise_output_filters": [24, 48, 64, 128, 160, 256],
        "stackwise_expansion_ratios": [1, 4, 4, 4, 6, 6],
        "stackwise_squeeze_and_excite_ratios": [0.0, 0.0, 0, 0.25, 0.25, 0.25],
        "stackwise_strides": [1, 2, 2, 2, 1, 2],
        "stackwise_block_types": ["fused"] * 3 + ["unfused"] * 3,
        "stackwise_force_input_filters": [0] * 6,
        "stackwise_nores_option": [False] * 6,
        "width_coefficient": 1.0,
        "depth_coefficient": 1.0,
    }
    self.input_data = keras.ops.ones(shape=(8, 224, 224, 3))
    return self.init_kwargs, self.input_data
