"""T5BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/t5/t5_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.t5.t5_backbone import T5Backbone
import types

BACKBONE = T5Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {"vocabulary_size": 10, "num_layers": 2, "num_heads": 2, "hidden_dim": 2, "intermediate_dim": 4}
    self.input_data = {
        "encoder_token_ids": ops.ones((2, 3), dtype="int32"),
        "encoder_padding_mask": ops.zeros((2, 3), dtype="int32"),
        "decoder_token_ids": ops.ones((2, 3), dtype="int32"),
        "decoder_padding_mask": ops.zeros((2, 3), dtype="int32"),
    }
    return self.init_kwargs, self.input_data
