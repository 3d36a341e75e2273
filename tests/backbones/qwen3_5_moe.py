"""Qwen3_5MoeBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/qwen3_5_moe/qwen3_5_moe_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.qwen3_5_moe.qwen3_5_moe_backbone import Qwen3_5MoeBackbone
import types

BACKBONE = Qwen3_5MoeBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 10,
        "num_layers": 4,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "hidden_dim": 16,
        "moe_intermediate_dim": 8,
        "shared_expert_intermediate_size": 8,
        "num_experts": 4,
        "top_k": 2,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "partial_rotary_factor": 0.25,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 4,
        "linear_value_head_dim": 4,
        "linear_conv_kernel_dim": 4,
        "router_aux_loss_coefficient": 0.01,
        "dtype": "float32",
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
