"""GemmaBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/gemma/gemma_backbone_test.py
"""

import keras
from keras import ops
from keras_hub.src.models.gemma.gemma_backbone import GemmaBackbone
import types

BACKBONE = GemmaBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 20,
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 1,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "head_dim": 4,
        "layer_norm_epsilon": 1e-06,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
