"""ResNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/resnet/resnet_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.resnet.resnet_backbone import ResNetBackbone
import types

BACKBONE = ResNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "input_conv_filters": [64],
        "input_conv_kernel_sizes": [7],
        "stackwise_num_filters": [64, 64, 64],
        "stackwise_num_blocks": [2, 2, 2],
        "stackwise_num_strides": [1, 2, 2],
        "image_shape": (None, None, 3),
        "block_type": "bottleneck_block",
        "use_pre_activation": False,
    }
    self.input_size = 64
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    return self.init_kwargs, self.input_data
