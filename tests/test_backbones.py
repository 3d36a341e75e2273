"""Every KerasHub backbone, on its own tiny test configuration: enable, train, reload, merge (`backbone_checks.py`).

By default eleven run (one per family of past failures: kernel readers,
shared paths, auto-numbered names, defaults from our table, no attention,
convolutions, expert weights); `GRALORA_ALL_BACKBONES=1` runs all 73 with
both the default targets and "all", which also adapts every expert weight
(about 12 minutes on torch, 17 on tensorflow, 80 on jax, per
`scripts/backbone_table.py`, which also writes the README's table).
"""

import os

import pytest

pytest.importorskip("keras_hub")

import backbone_checks

FAST = [
    ("bert", None),  # KerasHub's own defaults
    ("gemma4", "all"),  # feed-forward layers that matmul by `ffw_gating.kernel` themselves
    ("smollm3", "all"),  # two layers share the path `o_proj`
    ("mixtral", None),  # auto-numbered names: dense_128 in one build, dense_130 in the next
    ("gpt_oss", "all"),  # expert weights (`target_parameters`), GPT-OSS's with their frozen biases
    ("gpt_neo_x", None),  # a default from our table (fused query_key_value)
    ("vit_det", None),  # a default by structure key (auto-numbered qkv layers)
    ("rqvae", "all"),  # no attention
    ("t5", None),  # an encoder-decoder with its defaults from our table (query_projector, value_projector)
    ("resnet", None),  # convolutional: every Conv2D that splits into k channel blocks
    ("vae", "all"),  # convolutions with channels-last attention between them
]
ALL = [(name, targets) for name in backbone_checks.BACKBONES for targets in (None, "all")]
CASES = ALL if os.environ.get("GRALORA_ALL_BACKBONES") else FAST


@pytest.mark.parametrize("name, targets", CASES, ids=[f"{name}-{targets or 'default'}" for name, targets in CASES])
def test_backbone(name, targets):
    result = backbone_checks.check_backbone(name, targets, experts=targets == "all")
    assert result.adapted > 0
