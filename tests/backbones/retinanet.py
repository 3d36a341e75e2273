"""RetinaNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/retinanet/retinanet_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.resnet.resnet_backbone import ResNetBackbone
from keras_hub.src.models.retinanet.retinanet_backbone import RetinaNetBackbone
import types

BACKBONE = RetinaNetBackbone


def setup():
    self = types.SimpleNamespace()
    resnet_kwargs = {
        "input_conv_filters": [64],
        "input_conv_kernel_sizes": [7],
        "stackwise_num_filters": [64, 128, 256, 512],
        "stackwise_num_blocks": [3, 4, 6, 3],
        "stackwise_num_strides": [1, 2, 2, 2],
        "block_type": "bottleneck_block",
        "use_pre_activation": False,
    }
    image_encoder = ResNetBackbone(**resnet_kwargs)
    self.init_kwargs = {"image_encoder": image_encoder, "min_level": 3, "max_level": 7, "use_p5": True}
    self.input_size = 256
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    return self.init_kwargs, self.input_data
