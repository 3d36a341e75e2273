"""DeiTBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/deit/deit_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.deit.deit_backbone import DeiTBackbone
import types

BACKBONE = DeiTBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "image_shape": (28, 28, 3),
        "patch_size": 4,
        "num_layers": 3,
        "hidden_dim": 48,
        "num_heads": 6,
        "intermediate_dim": 48 * 4,
        "use_mha_bias": True,
    }
    self.input_size = 28
    self.input_data = ops.ones((2, self.input_size, self.input_size, 3))
    return self.init_kwargs, self.input_data
