"""DFineBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/d_fine/d_fine_backbone_test.py
"""

import keras
import numpy as np
from keras_hub.src.models.d_fine.d_fine_backbone import DFineBackbone
from keras_hub.src.models.hgnetv2.hgnetv2_backbone import HGNetV2Backbone
import types

BACKBONE = DFineBackbone


def setup():
    self = types.SimpleNamespace()
    self.labels = [
        {"boxes": np.array([[0.5, 0.5, 0.2, 0.2]]), "labels": np.array([1])},
        {"boxes": np.array([[0.6, 0.6, 0.3, 0.3]]), "labels": np.array([2])},
    ]
    hgnetv2_backbone = HGNetV2Backbone(
        stem_channels=[3, 8, 8],
        stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        depths=[1, 1],
        hidden_sizes=[16, 32],
        embedding_size=8,
        use_learnable_affine_block=True,
        hidden_act="relu",
        image_shape=(None, None, 3),
        out_features=["stage1", "stage2"],
    )
    self.base_init_kwargs = {
        "backbone": hgnetv2_backbone,
        "decoder_in_channels": [16, 16],
        "encoder_hidden_dim": 16,
        "num_denoising": 10,
        "num_labels": 4,
        "hidden_dim": 16,
        "learn_initial_query": False,
        "num_queries": 10,
        "anchor_image_size": (32, 32),
        "feat_strides": [4, 8],
        "num_feature_levels": 2,
        "encoder_in_channels": [16, 32],
        "encode_proj_layers": [1],
        "num_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "num_encoder_layers": 1,
        "hidden_expansion": 0.5,
        "depth_multiplier": 0.5,
        "eval_idx": -1,
        "num_decoder_layers": 3,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": 32,
        "decoder_n_points": [2, 2],
        "lqe_hidden_dim": 16,
        "num_lqe_layers": 2,
        "out_features": ["stage1", "stage2"],
        "image_shape": (None, None, 3),
        "seed": 0,
    }
    self.input_data = keras.random.uniform((2, 32, 32, 3))
    return self.base_init_kwargs, self.input_data
