"""GptOssBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/gpt_oss/gpt_oss_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.gpt_oss.gpt_oss_backbone import GptOssBackbone
import types

BACKBONE = GptOssBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_query_heads": 8,
        "num_key_value_heads": 4,
        "hidden_dim": 16,
        "intermediate_dim": 8,
        "num_experts": 2,
        "top_k": 2,
        "sliding_window": 2,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
