"""SwinTransformerBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/swin_transformer/swin_transformer_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.swin_transformer.swin_transformer_backbone import SwinTransformerBackbone
import types

BACKBONE = SwinTransformerBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "image_shape": (32, 32, 3),
        "embed_dim": 32,
        "depths": (2, 2),
        "num_heads": (2, 4),
        "window_size": 4,
    }
    self.input_data = ops.ones((1, 32, 32, 3))
    return self.init_kwargs, self.input_data
