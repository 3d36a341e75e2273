"""StableDiffusion3BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/stable_diffusion_3/stable_diffusion_3_backbone_test.py
"""

from keras import backend
from keras import distribution
from keras import ops
from keras_hub.src.models.clip.clip_text_encoder import CLIPTextEncoder
from keras_hub.src.models.stable_diffusion_3.stable_diffusion_3_backbone import StableDiffusion3Backbone
from keras_hub.src.models.vae.vae_backbone import VAEBackbone
import types

BACKBONE = StableDiffusion3Backbone


def setup():
    self = types.SimpleNamespace()
    is_jax_cpu = backend.backend() == "jax" and "cpu" in distribution.list_devices()[0].lower()
    image_shape = (64, 64, 3)
    height, width = (image_shape[0], image_shape[1])
    vae = VAEBackbone([32, 32, 32, 32], [1, 1, 1, 1], [32, 32, 32, 32], [1, 1, 1, 1], sampler_method="mode", name="vae")
    clip_l = CLIPTextEncoder(
        20, 32, 32, 2, 2, 64, "quick_gelu", -2, dtype="float16" if not is_jax_cpu else None, name="clip_l"
    )
    clip_g = CLIPTextEncoder(
        20, 64, 64, 2, 2, 128, "gelu", -2, dtype="float16" if not is_jax_cpu else None, name="clip_g"
    )
    self.init_kwargs = {
        "mmdit_patch_size": 2,
        "mmdit_hidden_dim": 16 * 2,
        "mmdit_num_layers": 2,
        "mmdit_num_heads": 2,
        "mmdit_position_size": 192,
        "mmdit_qk_norm": None,
        "mmdit_dual_attention_indices": None,
        "vae": vae,
        "clip_l": clip_l,
        "clip_g": clip_g,
        "image_shape": image_shape,
    }
    self.input_data = {
        "images": ops.ones((2, height, width, 3)),
        "latents": ops.ones((2, height // 8, width // 8, 16)),
        "clip_l_token_ids": ops.ones((2, 5), dtype="int32"),
        "clip_l_negative_token_ids": ops.ones((2, 5), dtype="int32"),
        "clip_g_token_ids": ops.ones((2, 5), dtype="int32"),
        "clip_g_negative_token_ids": ops.ones((2, 5), dtype="int32"),
        "num_steps": ops.ones((2,), dtype="int32"),
        "guidance_scale": ops.ones((2,)),
    }
    return self.init_kwargs, self.input_data
