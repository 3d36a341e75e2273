"""SmolLM3BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/smollm3/smollm3_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.smollm3.smollm3_backbone import SmolLM3Backbone
from keras_hub.src.models.smollm3.smollm3_layers import SmolLM3Attention
import types

BACKBONE = SmolLM3Backbone


def setup():
    self = types.SimpleNamespace()
    self.init_kwargs = {
        "vocabulary_size": 100,
        "hidden_dim": 64,
        "intermediate_dim": 128,
        "num_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "rope_layer_enabled_list": [True, True],
        "layer_types": ["attention", "attention"],
        "mlp_bias": False,
        "layer_norm_epsilon": 1e-05,
        "max_position_embeddings": 128,
        "rope_theta": 10000.0,
        "partial_rotary_factor": 1.0,
    }
    self.input_data = {"token_ids": ops.ones((2, 5), dtype="int32"), "padding_mask": ops.ones((2, 5), dtype="int32")}
    return self.init_kwargs, self.input_data
