"""VAEBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/vae/vae_backbone_test.py
"""

from keras import backend
from keras import ops
from keras_hub.src.models.vae.vae_backbone import VAEBackbone
import types

BACKBONE = VAEBackbone


def setup():
    self = types.SimpleNamespace()
    self.height, self.width = (64, 64)
    self.init_kwargs = {
        "encoder_num_filters": [32, 32, 32, 32],
        "encoder_num_blocks": [1, 1, 1, 1],
        "decoder_num_filters": [32, 32, 32, 32],
        "decoder_num_blocks": [1, 1, 1, 1],
        "sampler_method": "mode",
    }
    self.input_data = ops.ones((2, self.height, self.width, 3))
    return self.init_kwargs, self.input_data
