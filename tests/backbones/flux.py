"""FluxBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/flux/flux_backbone_test.py
"""

from keras import backend
from keras import ops
from keras_hub.src.models.clip.clip_text_encoder import CLIPTextEncoder
from keras_hub.src.models.flux.flux_model import FluxBackbone
from keras_hub.src.models.vae.vae_backbone import VAEBackbone
import types

BACKBONE = FluxBackbone


def setup():
    self = types.SimpleNamespace()
    vae = VAEBackbone([32, 32, 32, 32], [1, 1, 1, 1], [32, 32, 32, 32], [1, 1, 1, 1], sampler_method="mode", name="vae")
    clip_l = CLIPTextEncoder(10, 16, 16, 2, 2, 32, "quick_gelu", -2, name="clip_l")
    self.init_kwargs = {
        "input_channels": 64,
        "hidden_size": 256,
        "mlp_ratio": 2.0,
        "num_heads": 4,
        "depth": 2,
        "depth_single_blocks": 4,
        "axes_dim": [8, 28, 28],
        "theta": 10000,
        "use_bias": True,
        "guidance_embed": True,
        "image_shape": (16, 64),
        "text_shape": (16, 64),
        "image_ids_shape": (16, 3),
        "text_ids_shape": (16, 3),
        "y_shape": (64,),
    }
    self.pipeline_models = {"vae": vae, "clip_l": clip_l}
    self.input_data = {
        "image": ops.ones((1, 16, 64)),
        "image_ids": ops.ones((1, 16, 3)),
        "text": ops.ones((1, 16, 64)),
        "text_ids": ops.ones((1, 16, 3)),
        "y": ops.ones((1, 64)),
        "timesteps": ops.ones(1),
        "guidance": ops.ones(1),
    }
    return self.init_kwargs, self.input_data
