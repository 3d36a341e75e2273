"""FalconBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/falcon/falcon_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.falcon.falcon_backbone import FalconBackbone
import types

BACKBONE = FalconBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_attention_heads": 8,
        "hidden_dim": 16,
        "intermediate_dim": 32,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
