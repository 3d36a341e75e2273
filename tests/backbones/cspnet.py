"""CSPNetBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/cspnet/cspnet_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.cspnet.cspnet_backbone import CSPNetBackbone
import types

BACKBONE = CSPNetBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stem_filters": 32,
        "stem_kernel_size": 3,
        "stem_strides": 1,
        "stackwise_strides": 2,
        "stackwise_depth": [1, 2, 8],
        "stackwise_num_filters": [16, 24, 48],
        "image_shape": (None, None, 3),
        "down_growth": True,
        "bottle_ratio": (0.5,) + (1.0,),
        "block_ratio": (1.0,) + (0.5,),
        "expand_ratio": (2.0,) + (1.0,),
        "block_type": "dark_block",
        "stage_type": "csp",
        "stem_padding": "same",
    }
    self.input_size = 64
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    return self.init_kwargs, self.input_data
