"""RobertaBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/roberta/roberta_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.roberta.roberta_backbone import RobertaBackbone
import types

BACKBONE = RobertaBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 2,
        "intermediate_dim": 4,
        "max_sequence_length": 5,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
