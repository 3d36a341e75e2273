"""RWKV7BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/rwkv7/rwkv7_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.rwkv7.rwkv7_backbone import RWKV7Backbone
import types

BACKBONE = RWKV7Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "hidden_size": 16,
        "num_layers": 2,
        "head_size": 4,
        "intermediate_dim": 32,
        "gate_lora": 32,
        "mv_lora": 16,
        "aaa_lora": 16,
        "decay_lora": 16,
    }
    test_input = ops.ones((2, 16), dtype="int32")
    self.input_data = {"token_ids": test_input, "padding_mask": test_input}
    return self.init_kwargs, self.input_data
