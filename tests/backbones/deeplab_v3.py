"""DeepLabV3Test.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/deeplab_v3/deeplab_v3_backbone_test.py
"""

import keras
import numpy as np
from keras_hub.src.models.deeplab_v3.deeplab_v3_backbone import DeepLabV3Backbone
from keras_hub.src.models.deeplab_v3.deeplab_v3_layers import SpatialPyramidPooling
from keras_hub.src.models.resnet.resnet_backbone import ResNetBackbone
import types

BACKBONE = DeepLabV3Backbone


def setup():
    self = types.SimpleNamespace()
    self.resnet_kwargs = {
        "input_conv_filters": [64],
        "input_conv_kernel_sizes": [7],
        "stackwise_num_filters": [64, 64, 64],
        "stackwise_num_blocks": [2, 2, 2],
        "stackwise_num_strides": [1, 2, 2],
        "block_type": "basic_block",
        "use_pre_activation": False,
    }
    self.image_encoder = ResNetBackbone(**self.resnet_kwargs)
    self.init_kwargs = {
        "image_encoder": self.image_encoder,
        "low_level_feature_key": "P2",
        "spatial_pyramid_pooling_key": "P4",
        "dilation_rates": [6, 12, 18],
        "upsampling_size": 4,
        "image_shape": (96, 96, 3),
    }
    self.input_data = np.ones((2, 96, 96, 3), dtype="float32")
    return self.init_kwargs, self.input_data
