"""LlamaTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/llama/llama_backbone_test.py
"""

import keras
from keras import ops
from keras_hub.src.models.llama.llama_backbone import LlamaBackbone
import types

BACKBONE = LlamaBackbone


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
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
