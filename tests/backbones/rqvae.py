"""RQVAEBackboneTest.setUp, copied by scripts/copy_backbone_configs.py from keras-hub 71453d08f:

keras_hub/src/models/rqvae/rqvae_backbone_test.py
"""

from keras import ops
from keras_hub.src.models.rqvae.rqvae_backbone import RQVAEBackbone
import types

BACKBONE = RQVAEBackbone


def setup():
    self = types.SimpleNamespace()
    self.input_dim = 16
    self.encoder_layer_dims = [32, 16]
    self.output_dim = 8
    self.decoder_layer_dims = [16, 32]
    self.num_embeddings = 4
    self.num_quantizers = 2
    self.batch_size = 2
    self.init_kwargs = {
        "input_dim": self.input_dim,
        "encoder_layer_dims": self.encoder_layer_dims,
        "output_dim": self.output_dim,
        "decoder_layer_dims": self.decoder_layer_dims,
        "num_embeddings": self.num_embeddings,
        "num_quantizers": self.num_quantizers,
        "decay": 0.99,
        "data_variance": 1.0,
        "commitment_cost": 0.25,
    }
    self.input_data = ops.ones((self.batch_size, self.input_dim))
    return self.init_kwargs, self.input_data
