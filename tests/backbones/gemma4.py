"""Gemma4BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/gemma4/gemma4_backbone_test.py
"""

import copy
import numpy as np
from keras_hub.src.models.gemma4.gemma4_audio_encoder import Gemma4AudioEncoder
from keras_hub.src.models.gemma4.gemma4_backbone import Gemma4Backbone
from keras_hub.src.models.gemma4.gemma4_vision_encoder import Gemma4VisionEncoder
import types

BACKBONE = Gemma4Backbone


def setup():
    self = types.SimpleNamespace()
    self.batch_size = 2
    self.vocabulary_size = 256
    self.text_sequence_length = 64
    self.image_size = 16
    self.vision_tokens_per_image = int((self.image_size / 4) ** 2 // 4)
    self.max_images_per_prompt = 3
    vision_encoder = Gemma4VisionEncoder(
        image_size=self.image_size,
        patch_size=4,
        pool_size=2,
        num_layers=2,
        num_heads=2,
        head_dim=4,
        num_key_value_heads=2,
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
        "use_sliding_window_attention": True,
        "sliding_window_size": 16,
        "attention_logit_soft_cap": None,
        "final_logit_soft_cap": None,
        "vision_encoder": vision_encoder,
    }
    num_patches = int((self.image_size / 4) ** 2)
    patch_dim = 3 * 4 * 4
    dummy_pixel_values = np.random.rand(self.batch_size, self.max_images_per_prompt, num_patches, patch_dim).astype(
        "float32"
    )
    dummy_pixel_pos = np.ones((self.batch_size, self.max_images_per_prompt, num_patches, 2), dtype="int32")
    dummy_text_token_ids = np.random.rand(self.batch_size, self.text_sequence_length)
    self.input_data = {
        "token_ids": dummy_text_token_ids,
        "pixel_values": dummy_pixel_values,
        "pixel_position_ids": dummy_pixel_pos,
        "padding_mask": np.ones((self.batch_size, self.text_sequence_length), dtype="int32"),
        "position_ids": np.tile(
            np.arange(self.text_sequence_length, dtype="int32")[np.newaxis, :], (self.batch_size, 1)
        ),
    }
    vision_mask_0 = [False] * 20 + [True] * 4 + [False] * 16 + [True] * 4 + [False] * 16 + [True] * 4
    vision_mask_1 = [False] * 16 + [True] * 4 + [False] * 16 + [True] * 4 + [False] * 20 + [True] * 4
    self.input_data["vision_mask"] = np.array([vision_mask_0, vision_mask_1])
    self.input_data["vision_indices"] = np.array(
        [
            list(range(20, 24)) + list(range(40, 44)) + list(range(60, 64)),
            list(range(16, 20)) + list(range(36, 40)) + list(range(60, 64)),
        ]
    )
    self.text_init_kwargs = copy.deepcopy(self.init_kwargs)
    del self.text_init_kwargs["vision_encoder"]
    self.text_backbone_input_data = copy.deepcopy(self.input_data)
    del self.text_backbone_input_data["pixel_values"]
    del self.text_backbone_input_data["pixel_position_ids"]
    del self.text_backbone_input_data["vision_mask"]
    del self.text_backbone_input_data["vision_indices"]
    return self.init_kwargs, self.input_data
