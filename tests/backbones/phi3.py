"""Phi3Test.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/phi3/phi3_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.phi3.phi3_backbone import Phi3Backbone
import types

BACKBONE = Phi3Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 8,
        "intermediate_dim": 8,
    }
    self.su_rotary_init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 8,
        "intermediate_dim": 12,
        "max_sequence_length": 10,
        "pretraining_sequence_length": 5,
        "rope_scaling_type": "su",
        "rope_scaling_short_factor": [1.2, 1.4],
        "rope_scaling_long_factor": [0.8, 0.6],
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
