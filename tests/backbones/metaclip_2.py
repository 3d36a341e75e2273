"""MetaCLIP2BackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/metaclip_2/metaclip_2_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.metaclip_2.metaclip_2_backbone import MetaCLIP2Backbone
from keras_hub.src.models.metaclip_2.metaclip_2_text_encoder import MetaCLIP2TextEncoder
from keras_hub.src.models.metaclip_2.metaclip_2_vision_encoder import MetaCLIP2VisionEncoder
import types

BACKBONE = MetaCLIP2Backbone


def setup():
    self = types.SimpleNamespace()
    vision_encoder = MetaCLIP2VisionEncoder(16, 64, 2, 2, 128, name="vision_encoder")
    text_encoder = MetaCLIP2TextEncoder(64, 64, 64, 2, 2, 128, name="text_encoder")
    self.init_kwargs = {"vision_encoder": vision_encoder, "text_encoder": text_encoder, "projection_dim": 64}
    self.input_data = {"images": ops.ones((2, 224, 224, 3)), "token_ids": ops.ones((2, 77), dtype="int32")}
    return self.init_kwargs, self.input_data
