"""VideoPrismBackboneVideoOnlyTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/video_prism/video_prism_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.video_prism.video_prism_backbone import VideoPrismBackbone
import types

BACKBONE = VideoPrismBackbone


def setup():
    self = types.SimpleNamespace()
    self.image_size = 28
    self.num_frames = 4
    self.init_kwargs = {
        "image_shape": (self.image_size, self.image_size, 3),
        "num_frames": self.num_frames,
        "patch_size": 4,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "num_heads": 2,
        "num_spatial_layers": 1,
        "num_temporal_layers": 1,
        "num_auxiliary_layers": 1,
        "vocabulary_size": 0,
        "num_text_layers": 0,
    }
    self.input_data = ops.ones((2, self.num_frames, self.image_size, self.image_size, 3), dtype="float32")
    return self.init_kwargs, self.input_data
