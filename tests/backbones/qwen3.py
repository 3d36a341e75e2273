"""Qwen3Test.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/qwen3/qwen3_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.qwen3.qwen3_backbone import Qwen3Backbone
import types

BACKBONE = Qwen3Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 2,
        "hidden_dim": 8,
        "intermediate_dim": 8,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
