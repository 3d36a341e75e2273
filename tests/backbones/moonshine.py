"""MoonshineBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/moonshine/moonshine_backbone_test.py
"""

import keras
from keras_hub.src.models.moonshine.moonshine_backbone import MoonshineBackbone
import types

BACKBONE = MoonshineBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10000,
        "filter_dim": 64,
        "encoder_num_layers": 2,
        "decoder_num_layers": 2,
        "hidden_dim": 64,
        "intermediate_dim": 512,
        "encoder_num_heads": 8,
        "decoder_num_heads": 8,
        "feedforward_expansion_factor": 4,
        "encoder_use_swiglu_activation": False,
        "decoder_use_swiglu_activation": True,
        "max_position_embeddings": 2048,
        "pad_head_dim_to_multiple_of": None,
        "partial_rotary_factor": 0.62,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
    }
    encoder_input_values = keras.random.uniform((2, 16000, 1))
    decoder_token_ids = keras.random.randint(shape=(2, 10), minval=0, maxval=10000)
    encoder_padding_mask = keras.ops.ones((2, 16000), dtype="bool")
    decoder_padding_mask = keras.ops.ones((2, 10), dtype="bool")
    self.input_data = {
        "encoder_input_values": encoder_input_values,
        "decoder_token_ids": decoder_token_ids,
        "encoder_padding_mask": encoder_padding_mask,
        "decoder_padding_mask": decoder_padding_mask,
    }
    return self.init_kwargs, self.input_data
