"""Pattern keys (`rank_pattern`, `alpha_pattern`, `k_pattern`) mean what PEFT's `re.match` means, and cannot hang."""

import json
import re

import numpy as np
import pytest
from helpers import assert_unchanged, layouts_model, snapshot, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_gralora
from keras_gralora.surgery.pattern_keys import key_matcher

ATOMS = ["a", "b", "q", ".", r"\.", "[ab]", "[^a]", "(a|b)", "(?:ab)*", r"\d", r"\w", "x?", "(?i:A)", "^", "$"]
ATOMS += [r"\Z", r"\A", "(a|)", "b{1,3}", "a{2}", "(?s:.)", "(?m:$)", "(?m:^)", "|", "_proj", "(.*.)"]
QUANTIFIERS = ["", "*", "+", "?", "*?", "{0,2}"]
CATASTROPHIC = "(.*.){14}X"  # Python's re backtracks for minutes on a 30-character name


@settings(max_examples=300, deadline=None)
@given(
    key=st.lists(st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTIFIERS)), min_size=1, max_size=4),
    names=st.lists(st.text(alphabet="ab.1xqA\n_", max_size=9), min_size=1, max_size=8),
)
def test_keys_match_exactly_as_pythons_re_match_in_peft_form(key, names):
    key = "".join(atom + quantifier for atom, quantifier in key)
    try:
        wanted = re.compile(rf"(.*\.)?({key})$")
    except re.error:
        with pytest.raises(ValueError, match="is not a regular expression as PEFT matches it"):
            key_matcher(key, r"\.", "test", "rank_pattern")
        return
    try:
        matches = key_matcher(key, r"\.", "test", "rank_pattern")
    except ValueError as error:  # only what needs backtracking is refused, by name
        assert "possessive quantifier" in str(error), error
        return
    for name in names:
        assert matches(name) == (wanted.match(name) is not None), (key, name)


def test_what_needs_backtracking_is_refused_by_name_and_hangs_nothing():
    matches = key_matcher(CATASTROPHIC, r"\.", "load", "alpha_pattern")
    assert not matches("model.layers.0.self_attn.q_proj" * 4) and matches("a.b.c.d.e.f.g.h.i.j.k.l.m.n.X")
    for key, construct in [
        (r"(q)\1", "a backreference"),
        ("q(?=_proj)", "a lookahead or lookbehind"),
        (r"\bq", "a word boundary"),
        ("q{5000}", "a repeat of up to 5000 copies"),
        ("(?:q{0,90}){0,90}", "more than 4096 automaton states"),
    ]:
        with pytest.raises(
            ValueError, match=f"alpha_pattern key .* uses {re.escape(construct)}.*, which keras_gralora"
        ):
            key_matcher(key, r"\.", "load", "alpha_pattern")
    with pytest.raises(
        ValueError, match=r"'\(\?i\)QUERY' is not a regular expression as PEFT matches it.*global flags"
    ):
        key_matcher("(?i)QUERY", "/", "enable_gralora", "rank_pattern")
    assert key_matcher("(?i:QUERY)", "/", "enable_gralora", "rank_pattern")("block/query")


def test_enable_gralora_refuses_a_bad_key_before_any_change():
    model = layouts_model()
    before, names = snapshot(model), keras_gralora.adapter_names(model)
    for key, message in [("(?i)QUERY", "global flags not at the start"), (r"(q)\1", "uses a backreference")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            keras_gralora.enable_gralora(model, r=2, k=2, adapter_name="new", rank_pattern={key: 4})
    assert_unchanged(model, before)
    assert keras_gralora.adapter_names(model) == names


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("keras_hub")
    import hf_checkpoints as hf

    return hf.write_checkpoint("llama", str(tmp_path_factory.mktemp("hf") / "llama"))


def lora_directory(path, alpha_pattern):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    path.mkdir()
    config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["layers.0.self_attn.q_proj"],  # the one module it holds
        "alpha_pattern": alpha_pattern,
    }
    (path / "adapter_config.json").write_text(json.dumps(config))
    tensors = {
        f"{module}.lora_A.weight": rng.standard_normal((4, 16)),
        f"{module}.lora_B.weight": rng.standard_normal((16, 4)),
    }
    save_file({key: value.astype("float32") for key, value in tensors.items()}, str(path / "adapter_model.safetensors"))
    return path


def test_a_peft_directory_with_a_catastrophic_key_loads_and_a_refused_one_changes_nothing(llama, tmp_path):
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(llama)
    keras_gralora.load_peft_adapter(backbone, lora_directory(tmp_path / "plain", {}), adapter_name="plain")
    keras_gralora.load_peft_adapter(backbone, lora_directory(tmp_path / "hostile", {CATASTROPHIC: 2}), adapter_name="h")
    layer = next(layer for layer in backbone._flatten_layers() if isinstance(layer, keras_gralora.GraLoRAAdapter))
    np.testing.assert_array_equal(to_numpy(layer.delta_matrix("h")), to_numpy(layer.delta_matrix("plain")))
    before = snapshot(backbone)
    for key, message in [(r"(q)\1", "uses a backreference"), ("(?i)Q_PROJ", "global flags not at the start")]:
        with pytest.raises(ValueError, match=f"alpha_pattern key .*{re.escape(message)}"):
            keras_gralora.load_peft_adapter(backbone, lora_directory(tmp_path / f"bad{len(message)}", {key: 2}))
    assert_unchanged(backbone, before)
    assert keras_gralora.adapter_names(backbone) == ["plain", "h"]
