"""WhisperBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/whisper/whisper_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.whisper.whisper_backbone import WhisperBackbone
import types

BACKBONE = WhisperBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 2,
        "intermediate_dim": 4,
        "max_encoder_sequence_length": 6,
        "max_decoder_sequence_length": 6,
    }
    self.input_data = {
        "encoder_features": ops.ones((2, 5, 80), dtype="float32"),
        "decoder_token_ids": ops.ones((2, 5), dtype="int32"),
        "decoder_padding_mask": ops.ones((2, 5), dtype="int32"),
    }
    return self.init_kwargs, self.input_data
