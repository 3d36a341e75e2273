"""XceptionBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/xception/xception_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.xception.xception_backbone import XceptionBackbone
import types

BACKBONE = XceptionBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "stackwise_conv_filters": [[32, 64], [128, 128], [256, 256]],
        "stackwise_pooling": [False, True, False],
        "image_shape": (None, None, 3),
    }
    self.input_size = 64
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    return self.init_kwargs, self.input_data
