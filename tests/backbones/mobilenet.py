"""MobileNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/mobilenet/mobilenet_backbone_test.py
"""

import keras
from keras_hub.src.models.mobilenet.mobilenet_backbone import MobileNetBackbone
import types

BACKBONE = MobileNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stackwise_expansion": [[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
        "stackwise_num_blocks": [2, 3, 2, 3],
        "stackwise_num_filters": [[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        "stackwise_kernel_size": [[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        "stackwise_num_strides": [[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        "stackwise_se_ratio": [[None, None], [0.25, 0.25, 0.25], [0.25, 0.25], [0.25, 0.25, 0.25]],
        "stackwise_activation": [
            ["relu", "relu"],
            ["hard_swish", "hard_swish", "hard_swish"],
            ["hard_swish", "hard_swish"],
            ["hard_swish", "hard_swish", "hard_swish"],
            ["hard_swish"],
        ],
        "stackwise_padding": [[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        "output_num_filters": 1024,
        "input_activation": "hard_swish",
        "output_activation": "hard_swish",
        "input_num_filters": 16,
        "image_shape": (32, 32, 3),
        "depthwise_filters": 8,
        "depthwise_stride": 2,
        "depthwise_residual": False,
        "squeeze_and_excite": 0.5,
        "last_layer_filter": 288,
    }
    self.input_data = keras.ops.ones((2, 32, 32, 3), dtype="float32")
    return self.init_kwargs, self.input_data
