"""Module paths that moved into the package's subpackages, still importing.

The modules of the public reference lived at the package's top level
(`keras_gralora.merge`, `keras_gralora.saving`, ...) before the house was
split into subpackages. `import keras_gralora.merge` and
`from keras_gralora.saving import load_gralora_weights` keep working: the
finder below answers only for these names, with the module at its new home
(the same object, so state and monkeypatches are shared).
"""

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "keras_gralora.adapters": "keras_gralora.lifecycle.adapters",
    "keras_gralora.merge": "keras_gralora.lifecycle.merge",
    "keras_gralora.summary": "keras_gralora.lifecycle.summary",
    "keras_gralora.inject": "keras_gralora.surgery.inject",
    "keras_gralora.quantized_gradients": "keras_gralora.surgery.quantized_gradients",
    "keras_gralora.saving": "keras_gralora.files.saving",
    "keras_gralora.export": "keras_gralora.files.export",
    "keras_gralora.routing": "keras_gralora.serving.routing",
    "keras_gralora.hotswap": "keras_gralora.serving.hotswap",
    "keras_gralora.hub": "keras_gralora.integration.hub",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # executed at its new home


def install():
    """Answers imports of the old paths (once)."""
    if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
        sys.meta_path.append(_Moved())
