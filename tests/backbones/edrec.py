"""EdRecBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/edrec/edrec_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.edrec.edrec_backbone import EdRecBackbone
import types

BACKBONE = EdRecBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocab_size": 10,
        "num_layers_enc": 2,
        "num_layers_dec": 2,
        "num_heads": 2,
        "hidden_dim": 4,
        "intermediate_dim": 8,
        "dropout": 0.0,
    }
    self.input_data = {
        "encoder_token_ids": ops.ones((2, 5), dtype="int32"),
        "encoder_padding_mask": ops.zeros((2, 5), dtype="int32"),
        "decoder_token_ids": ops.ones((2, 5), dtype="int32"),
        "decoder_padding_mask": ops.zeros((2, 5), dtype="int32"),
    }
    return self.init_kwargs, self.input_data
