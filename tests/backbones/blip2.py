"""BLIP2BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/blip2/blip2_backbone_test.py
"""

import numpy as np
from keras_hub.src.models.blip2.blip2_backbone import BLIP2Backbone
from keras_hub.src.models.blip2.blip2_custom_opt import BLIP2CustomOPT
from keras_hub.src.models.blip2.blip2_qformer import BLIP2QFormer
from keras_hub.src.models.blip2.blip2_vision_encoder import BLIP2VisionEncoder
import types

BACKBONE = BLIP2Backbone


def setup():
    self = types.SimpleNamespace()
    self.batch_size = 2
    self.image_size = 32
    self.seq_length = 5
    self.num_query_tokens = 2
    self.hidden_dim = 4
    vision_encoder = BLIP2VisionEncoder(
        image_size=self.image_size,
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        use_patch_bias=True,
        use_class_token=True,
        use_mha_bias=True,
        use_mlp_bias=True,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-06,
        initializer_range=0.02,
        dtype="float32",
    )
    qformer = BLIP2QFormer(
        num_query_tokens=self.num_query_tokens,
        num_layers=2,
        num_heads=2,
        hidden_dim=self.hidden_dim,
        intermediate_dim=8,
        vision_dim=8,
        cross_attention_frequency=1,
        dropout=0.0,
        layer_norm_epsilon=1e-06,
        dtype="float32",
    )
    language_model = BLIP2CustomOPT(
        vocabulary_size=14,
        num_layers=2,
        num_heads=2,
        hidden_dim=self.hidden_dim,
        intermediate_dim=8,
        num_query_tokens=self.num_query_tokens,
        qformer_hidden_dim=self.hidden_dim,
        max_sequence_length=10,
        dropout=0.0,
        language_projection=None,
        dtype="float32",
    )
    self.init_kwargs = {"vision_encoder": vision_encoder, "qformer": qformer, "language_model": language_model}
    self.input_data = {
        "images": np.ones((self.batch_size, self.image_size, self.image_size, 3), dtype="float32"),
        "token_ids": np.ones((self.batch_size, self.seq_length), dtype="int32"),
        "padding_mask": np.ones((self.batch_size, self.seq_length), dtype="bool"),
    }
    return self.init_kwargs, self.input_data
