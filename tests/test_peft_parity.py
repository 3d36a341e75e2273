"""Bit-level parity with PEFT's own GraLoRA (`pip install -e .[peft]`; skipped without it).

PEFT runs in torch whatever Keras' backend is; weights are copied across in
PEFT's layout, which is ours (kernels transposed: torch keeps `[out, in]`).
"""

import numpy as np
import pytest
from helpers import array, copy_peft_adapter
from keras import ops

from keras_gralora import GraLoRADense

peft = pytest.importorskip("peft")
torch = pytest.importorskip("torch")


def peft_linear(in_features, out_features, r, k, hybrid_r, alpha):
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(in_features, out_features))
    config = peft.GraloraConfig(
        r=r, gralora_k=k, hybrid_r=hybrid_r, alpha=alpha, target_modules=["proj"], init_weights=False
    )
    model = peft.get_peft_model(model, config)
    return model, model.base_model.model.proj


def copy_peft_weights(layer, module):
    layer._kernel.assign(array(module.base_layer.weight).T)
    layer.bias.assign(array(module.base_layer.bias))
    copy_peft_adapter(layer, module, "default")


@pytest.mark.parametrize(
    "in_features, out_features, r, k, hybrid_r, alpha",
    [(64, 64, 32, 2, 0, 64), (96, 48, 16, 4, 0, 16), (48, 96, 8, 2, 4, 24), (40, 24, 6, 1, 2, 8)],
)
def test_outputs_deltas_and_counts_equal_peft(in_features, out_features, r, k, hybrid_r, alpha):
    model, module = peft_linear(in_features, out_features, r, k, hybrid_r, alpha)
    layer = GraLoRADense(out_features, r=r, k=k, hybrid_r=hybrid_r, alpha=alpha)
    layer.build((None, in_features))
    copy_peft_weights(layer, module)
    x = np.random.default_rng(0).standard_normal((3, 7, in_features)).astype("float32")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
        expected_delta = module.get_delta_weight("default").numpy().T
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.delta_kernel()), expected_delta, rtol=1e-5, atol=1e-6)
    peft_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(int(np.prod(v.shape)) for v in layer.trainable_weights) == peft_trainable
    assert layer.adapter("default").config.scale == module.scaling["default"]
