"""BASNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/basnet/basnet_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.basnet.basnet_backbone import BASNetBackbone
from keras_hub.src.models.resnet.resnet_backbone import ResNetBackbone
import types

BACKBONE = BASNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.images = np.ones((2, 64, 64, 3))
    self.image_encoder = ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )
    self.init_kwargs = {"image_encoder": self.image_encoder, "num_classes": 1}
    return self.init_kwargs, self.images
