"""Gemma3BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/gemma3/gemma3_backbone_test.py
"""

import copy
import numpy as np
from keras import ops
from keras_hub.src.models.gemma3.gemma3_backbone import Gemma3Backbone
from keras_hub.src.models.gemma3.gemma3_vision_encoder import Gemma3VisionEncoder
import types

BACKBONE = Gemma3Backbone


def setup():
    self = types.SimpleNamespace()
    self.batch_size = 2
    self.vocabulary_size = 256
    self.text_sequence_length = 64
    self.image_size = 16
    self.vision_tokens_per_image = int((self.image_size / 4) ** 2)
    self.max_images_per_prompt = 3
    vision_encoder = Gemma3VisionEncoder(
        image_size=self.image_size,
        patch_size=4,
        pool_size=2,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        output_dim=8,
    )
    self.init_kwargs = {
        "vocabulary_size": self.vocabulary_size,
        "image_size": self.image_size,
        "num_layers": 6,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 8,
        "intermediate_dim": 16,
        "head_dim": 4,
        "query_head_dim_normalize": True,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "final_logit_soft_cap": None,
        "attention_logit_soft_cap": None,
        "use_sliding_window_attention": True,
        "sliding_window_size": 1024,
        "vision_encoder": vision_encoder,
    }
    dummy_images = np.random.rand(self.batch_size, self.max_images_per_prompt, self.image_size, self.image_size, 3)
    dummy_text_token_ids = np.random.rand(self.batch_size, self.text_sequence_length)
    self.input_data = {
        "token_ids": dummy_text_token_ids,
        "images": dummy_images,
        "padding_mask": np.ones((self.batch_size, self.text_sequence_length), dtype="int32"),
    }
    vision_mask_0 = [False] * 20 + [True] * 8 + [False] * 32 + [True] * 4
    vision_mask_1 = [False] * 16 + [True] * 8 + [False] * 36 + [True] * 4
    self.input_data["vision_mask"] = np.array([vision_mask_0, vision_mask_1])
    self.input_data["vision_indices"] = np.array(
        [list(range(20, 28)) + list(range(60, 64)), list(range(16, 24)) + list(range(60, 64))]
    )
    self.text_init_kwargs = copy.deepcopy(self.init_kwargs)
    del self.text_init_kwargs["vision_encoder"]
    self.text_backbone_input_data = copy.deepcopy(self.input_data)
    del self.text_backbone_input_data["images"]
    del self.text_backbone_input_data["vision_mask"]
    del self.text_backbone_input_data["vision_indices"]
    return self.init_kwargs, self.input_data
