"""BloomBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/bloom/bloom_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.bloom.bloom_backbone import BloomBackbone
import types

BACKBONE = BloomBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {"vocabulary_size": 10, "num_layers": 2, "num_heads": 4, "hidden_dim": 8, "intermediate_dim": 32}
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
