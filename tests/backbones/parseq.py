"""PARSeqBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/parseq/parseq_backbone_test.py
"""

import keras
from keras import ops
from keras_hub.src.models.parseq.parseq_backbone import PARSeqBackbone
from keras_hub.src.models.vit.vit_backbone import ViTBackbone
import types

BACKBONE = PARSeqBackbone


def setup():
    self = types.SimpleNamespace()
    self.batch_size = 2
    self.image_height = 32
    self.image_width = 128
    self.num_channels = 3
    self.vit_patch_size = (4, 8)
    self.vit_num_layers = 2
    self.vit_num_heads = 2
    self.vit_hidden_dim = 64
    self.vit_mlp_dim = self.vit_hidden_dim * 4
    self.vocabulary_size = 97
    self.max_label_length = 25
    self.decoder_hidden_dim = self.vit_hidden_dim
    self.num_decoder_layers = 1
    self.num_decoder_heads = 2
    self.decoder_mlp_dim = self.decoder_hidden_dim * 4
    self.image_encoder = ViTBackbone(
        image_shape=(self.image_height, self.image_width, self.num_channels),
        patch_size=self.vit_patch_size,
        num_layers=self.vit_num_layers,
        num_heads=self.vit_num_heads,
        hidden_dim=self.vit_hidden_dim,
        mlp_dim=self.vit_mlp_dim,
        use_class_token=False,
        name="image_encoder",
    )
    self.init_kwargs = {
        "image_encoder": self.image_encoder,
        "vocabulary_size": self.vocabulary_size,
        "max_label_length": self.max_label_length,
        "decoder_hidden_dim": self.decoder_hidden_dim,
        "num_decoder_layers": self.num_decoder_layers,
        "num_decoder_heads": self.num_decoder_heads,
        "decoder_mlp_dim": self.decoder_mlp_dim,
        "dropout_rate": 0.0,
        "attention_dropout": 0.0,
    }
    dummy_images = keras.random.normal(shape=(self.batch_size, self.image_height, self.image_width, self.num_channels))
    dummy_token_ids = keras.random.randint(
        minval=0, maxval=self.vocabulary_size, shape=(self.batch_size, self.max_label_length)
    )
    dummy_padding_mask = ops.ones(shape=(self.batch_size, self.max_label_length), dtype="int32")
    self.input_data = {"images": dummy_images, "token_ids": dummy_token_ids, "padding_mask": dummy_padding_mask}
    return self.init_kwargs, self.input_data
