"""What importing keras_gralora changes in Keras and KerasHub is exactly the integration package's table."""

import importlib
import subprocess
import sys

import keras
import pytest

from keras_gralora import integration


def owner(path):
    """The class or module `path` names ("keras.Model", "keras.src.utils.naming", "pkg.module.Class")."""
    module, _, name = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), name)


def ours(owner_object):
    """The names of `owner_object`'s own attributes that keras_gralora wrote (functions defined in this package)."""
    return {
        name
        for name, value in vars(owner_object).items()
        if getattr(value, "__module__", None) is not None and value.__module__.startswith("keras_gralora")
    }


def test_every_change_to_keras_and_keras_hub_is_in_the_table_and_installed():
    pytest.importorskip("keras_hub")
    import keras_hub

    for path, names in integration.CHANGES.items():
        assert all(f"{name}`" in integration.__doc__ for name in names), path  # the list shows each one
        assert ours(owner(path)) == set(names), path
    named = {owner(path) for path in integration.CHANGES}
    for task in [cls for cls in vars(keras_hub.models).values() if isinstance(cls, type) and cls not in named]:
        assert not ours(task), task  # Gemma 3's `generate` and the like call the wrapped base class's
    for cls in (keras.layers.Layer, keras.layers.Dense, keras.layers.EinsumDense, keras.Sequential, keras.Layer):
        assert not ours(cls), cls  # nothing else: the layers are adapted by subclassing (`layers/in_place.py`)


def test_importing_the_package_alone_imports_no_keras():
    code = "import sys, keras_gralora; print(sorted(m for m in ('keras', 'keras_hub', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]"]
