"""T5GemmaBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/t5gemma/t5gemma_backbone_test.py
"""

import keras
from keras_hub.src.models.t5gemma.t5gemma_backbone import T5GemmaBackbone
import types

BACKBONE = T5GemmaBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 100,
        "encoder_hidden_dim": 32,
        "encoder_intermediate_dim": 64,
        "encoder_num_layers": 2,
        "encoder_num_attention_heads": 4,
        "encoder_num_key_value_heads": 2,
        "encoder_head_dim": 8,
        "encoder_layer_types": ["sliding_attention", "full_attention"],
        "decoder_hidden_dim": 32,
        "decoder_intermediate_dim": 64,
        "decoder_num_layers": 2,
        "decoder_num_attention_heads": 4,
        "decoder_num_key_value_heads": 2,
        "decoder_head_dim": 8,
        "decoder_layer_types": ["sliding_attention", "full_attention"],
        "dropout_rate": 0.1,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": True,
        "query_pre_attn_scalar": 1.0,
        "attention_bias": False,
        "hidden_activation": "gelu_approximate",
        "sliding_window": 16,
        "cross_attention_hidden_size": 32,
        "attn_logit_softcapping": 50.0,
        "rope_max_wavelength": 10000.0,
        "initializer_range": 0.04,
        "attention_dropout": 0.1,
    }
    self.input_data = {
        "encoder_token_ids": keras.ops.ones((2, 16), dtype="int32"),
        "encoder_padding_mask": keras.ops.ones((2, 16), dtype="int32"),
        "decoder_token_ids": keras.ops.ones((2, 16), dtype="int32"),
        "decoder_padding_mask": keras.ops.ones((2, 16), dtype="int32"),
    }
    return self.init_kwargs, self.input_data
