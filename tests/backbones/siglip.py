"""SigLIPBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/siglip/siglip_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.siglip.siglip_backbone import SigLIPBackbone
from keras_hub.src.models.siglip.siglip_text_encoder import SigLIPTextEncoder
from keras_hub.src.models.siglip.siglip_vision_encoder import SigLIPVisionEncoder
import types

BACKBONE = SigLIPBackbone


def setup():
    self = types.SimpleNamespace()
    vision_encoder = SigLIPVisionEncoder(16, 64, 2, 2, 128, name="vision_encoder")
    text_encoder = SigLIPTextEncoder(64, 64, 64, 2, 2, 128, name="text_encoder")
    self.init_kwargs = {"vision_encoder": vision_encoder, "text_encoder": text_encoder}
    self.input_data = {"images": ops.ones((2, 224, 224, 3)), "token_ids": ops.ones((2, 64), dtype="int32")}
    return self.init_kwargs, self.input_data
