"""PaliGemmaBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/pali_gemma/pali_gemma_backbone_test.py
"""

import numpy as np
from keras import ops
from keras_hub.src.models.pali_gemma.pali_gemma_backbone import PaliGemmaBackbone
import types

BACKBONE = PaliGemmaBackbone


def setup():
    self = types.SimpleNamespace()
    self.batch_size = 2
    self.vocabulary_size = 256
    self.text_sequence_length = 64
    self.image_size = 16
    self.image_sequence_length = int((self.image_size / 4) ** 2)
    self.init_kwargs = {
        "vocabulary_size": self.vocabulary_size,
        "image_size": self.image_size,
        "num_layers": 2,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 8,
        "intermediate_dim": 16,
        "head_dim": 4,
        "vit_patch_size": 4,
        "vit_num_layers": 2,
        "vit_num_heads": 2,
        "vit_hidden_dim": 8,
        "vit_intermediate_dim": 16,
    }
    dummy_images = np.random.rand(self.batch_size, self.image_size, self.image_size, 3)
    dummy_text_token_ids = np.random.rand(self.batch_size, self.text_sequence_length)
    self.input_data = {
        "token_ids": dummy_text_token_ids,
        "images": dummy_images,
        "padding_mask": np.ones((self.batch_size, self.text_sequence_length), dtype="int32"),
        "response_mask": np.zeros((self.batch_size, self.text_sequence_length), dtype="int32"),
    }
    return self.init_kwargs, self.input_data
