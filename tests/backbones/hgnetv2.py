"""HGNetV2BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/hgnetv2/hgnetv2_backbone_test.py
"""

import keras
import numpy as np
from keras_hub.src.models.hgnetv2.hgnetv2_backbone import HGNetV2Backbone
import types

BACKBONE = HGNetV2Backbone


def setup():
    self = types.SimpleNamespace()
    self.default_input_shape = (64, 64, 3)
    self.num_channels = self.default_input_shape[-1]
    self.batch_size = 2
    self.stem_channels = [self.num_channels, 16, 32]
    self.default_stage_out_filters = [64, 128]
    self.default_num_stages = 2
    self.stackwise_stage_filters = [[32, 16, 64, 1, 1, 3], [64, 32, 128, 1, 1, 3]]
    self.init_kwargs = {
        "embedding_size": self.stem_channels[-1],
        "stem_channels": self.stem_channels,
        "hidden_act": "relu",
        "use_learnable_affine_block": False,
        "image_shape": self.default_input_shape,
        "depths": [1] * self.default_num_stages,
        "hidden_sizes": [stage[2] for stage in self.stackwise_stage_filters],
        "stackwise_stage_filters": self.stackwise_stage_filters,
        "apply_downsample": [False, True],
        "use_lightweight_conv_block": [False, False],
        "out_features": ["stem", "stage1", "stage2"],
    }
    self.input_data = keras.ops.convert_to_tensor(
        np.random.rand(self.batch_size, *self.default_input_shape).astype(np.float32)
    )
    return self.init_kwargs, self.input_data
