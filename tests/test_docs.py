"""The public API's docstrings: every function has Args, Returns, Raises and runnable Examples (run as doctests).

`pytest --doctest-modules` (pyproject) runs the examples on each backend; `mkdocs build --strict`
(scripts/checks.sh) renders them and fails on a missing type hint or a parameter the docstring
names but the signature lacks. This test fails when a public name loses a section.
"""

import inspect

import keras
import pytest

import keras_gralora
from keras_gralora.cli import main as cli_main
from keras_gralora.integration import hub
from keras_gralora.serving.routing import AdapterRouting

NEVER_RAISE = {"active_adapters", "adapter_names", "gralora_summary"}  # any model or layer gives an answer
FUNCTIONS = [name for name in keras_gralora.__all__ if inspect.isfunction(getattr(keras_gralora, name))]
CLASSES = [name for name in keras_gralora.__all__ if inspect.isclass(getattr(keras_gralora, name))]


def sections(obj):
    doc = inspect.getdoc(obj) or ""
    return {line.strip().rstrip(":") for line in doc.splitlines() if line.strip().endswith(":")}, doc


@pytest.mark.parametrize("name", [*FUNCTIONS, "cli.main"])
def test_public_function_docstrings(name):
    function = cli_main if name == "cli.main" else getattr(keras_gralora, name)
    found, doc = sections(function)
    needed = {"Args", "Returns", "Examples"} | (set() if name in NEVER_RAISE else {"Raises"})
    assert needed <= found, f"{name}: missing {sorted(needed - found)}"
    assert ">>>" in doc, f"{name}: its Examples section has no runnable example"
    signature = inspect.signature(function)
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return annotation"
    unannotated = [p for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not unannotated, f"{name}: parameters without type hints: {unannotated}"


@pytest.mark.parametrize("name", [*CLASSES, "AdapterRouting"])
def test_public_class_docstrings(name):
    cls = AdapterRouting if name == "AdapterRouting" else getattr(keras_gralora, name)
    found, doc = sections(cls)
    assert "Examples" in found and ">>>" in doc, f"{name}: no runnable Examples section"
    if name != "GraLoRAAdapter":  # a mixin: no constructor arguments of its own
        assert "Args" in found, f"{name}: no Args section"
    undocumented = [
        member
        for member, value in inspect.getmembers(cls)
        if not member.startswith("_")
        and not hasattr(keras.layers.EinsumDense, member)  # Keras' own API (build, call, get_config...)
        and not hasattr(keras.layers.Dense, member)
        and getattr(getattr(value, "fget", value), "__module__", "").startswith("keras_gralora")
        and not inspect.getdoc(value)
    ]
    assert not undocumented, f"{name}: public members without docstrings: {undocumented}"


@pytest.mark.parametrize("name", ["enable_gralora", "merge_gralora", "save_gralora_weights", "load_gralora_weights"])
def test_backbone_methods_have_examples(name):
    doc = inspect.getdoc(getattr(hub, name)) or ""
    assert "Examples:" in doc and ">>>" in doc, f"Backbone.{name}: no runnable example"


def test_signatures_show_the_default_adapter_name_as_its_value():
    """The reference shows `adapter_name="default"`, the value, and it is `config.DEFAULT_ADAPTER`."""
    from keras_gralora.config import DEFAULT_ADAPTER

    functions = [keras_gralora.enable_gralora, keras_gralora.GraLoRADense, keras_gralora.GraLoRAEinsumDense]
    for function in [*functions, hub.enable_gralora]:
        assert inspect.signature(function).parameters["adapter_name"].default == DEFAULT_ADAPTER, function
