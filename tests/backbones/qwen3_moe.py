"""Qwen3MoeBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/qwen3_moe/qwen3_moe_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.qwen3_moe.qwen3_moe_backbone import Qwen3MoeBackbone
import types

BACKBONE = Qwen3MoeBackbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 20,
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "head_dim": 2,
        "moe_intermediate_dim": 16,
        "num_experts": 4,
        "top_k": 2,
        "norm_top_k_prob": True,
        "decoder_sparse_step": 1,
        "layer_norm_epsilon": 1e-06,
        "rope_max_wavelength": 10000,
        "rope_scaling_factor": 1.0,
        "dropout": 0.0,
        "sliding_window_size": 4096,
        "router_aux_loss_coefficient": 0.01,
        "tie_word_embeddings": False,
        "mlp_only_layers": [],
        "dtype": "float32",
    }
    self.input_data = {"token_ids": ops.ones((2, 7), dtype="int32"), "padding_mask": ops.ones((2, 7), dtype="int32")}
    return self.init_kwargs, self.input_data
