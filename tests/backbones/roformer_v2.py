"""RoformerV2BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/roformer_v2/roformer_v2_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.roformer_v2.roformer_v2_backbone import RoformerV2Backbone
import types

BACKBONE = RoformerV2Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_heads": 1,
        "hidden_dim": 2,
        "intermediate_dim": 4,
        "head_size": 2,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "segment_ids": ops.zeros((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
