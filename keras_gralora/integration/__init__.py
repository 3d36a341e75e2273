"""Every change keras_gralora makes to Keras and KerasHub, in one place.

Written against Keras 3.15.1 and KerasHub 0.32.0 (`WRITTEN_AGAINST`). Each
change wraps the original (kept, and called) and is installed once;
`tests/test_integration.py` checks that this list is what is installed.

Each entry: what changes, why, and the module that changes it.

- `keras.Model.quantize` (`guards.py`): checks every GraLoRA layer first.
  Quantizing a merged or disabled model would freeze adapters into integer
  kernels, and Keras turns one layer's refusal into a warning, leaving the
  model half quantized.
- `keras.Model.make_train_function`, `make_test_function`,
  `make_predict_function` (`guards.py`, `feeds.py`): rebuild when stale and
  check. A compiled step traced the layers as they were, so it is rebuilt
  when a layer's state version moved; training a merged adapter or inside a
  routing is refused before Keras clears any variable; predict's step reads
  a routing's rows.
- `keras.Model.predict`, `predict_on_batch` (`feeds.py`): inside
  `adapter_routing`, each row's adapter index travels as data beside its
  batch, so a new routing needs no new trace.
- `keras.Model.__call__`, `predict`, `predict_on_batch`, `evaluate`,
  `test_on_batch`, `fit`, `train_on_batch` (`guards.py`): hold the swap
  lock's shared side, so a hot-swap in another thread is all or nothing to
  a pass (`swap_lock.py`).
- Keras' `.keras` writer: `saving_lib.serialize_keras_object`,
  `saving_lib._walk_saveable`, `naming.to_snake_case` (`keras_saving.py`):
  plain classes and no optimizer during `export_merged`, which writes the
  live model as plain layers without changing it; inert outside an export.
- Keras' weights stores, `H5IOStore.__setitem__` and
  `ShardedH5IOStore.__setitem__` (`keras_saving.py`): a variable sharded
  over several processes (multi-host jax) is gathered with JAX's
  `process_allgather` before Keras fetches it, which JAX refuses for an
  array with shards on other processes; anything else passes unchanged.
- `keras_hub.models.Backbone` gains `enable_gralora`, `merge_gralora`,
  `save_gralora_weights`, `load_gralora_weights` (`hub.py`): KerasHub's own
  `enable_lora` vocabulary.
- `Backbone.save_own_variables`, `load_own_variables` (`hub.py`): an adapted
  backbone's settings in its own slot of any weights file. A backbone's
  config records its arguments, not our layers, so `.keras` files and
  presets would otherwise reload without adapters.
- `KerasPresetLoader.load_backbone` (`hub.py`): keeps a saved
  `DTypePolicyMap`, which KerasHub 0.32's `Backbone.from_preset` drops (its
  task loader keeps it since keras-hub#2367): a quantized backbone could not
  reload.
- `make_generate_function` and `generate` of the four tasks that compile
  `generate`: `CausalLM`, `TextToImage`, `ImageToImage`, `Inpaint` (`hub.py`,
  with `guards.py` and `feeds.py`): as Keras' functions above, for
  `generate`: rebuilt when stale, one adapter name per prompt, the swap
  lock, and outputs split over several processes gathered (KerasHub
  fetches them whole, which JAX refuses). Their subclasses' `generate`
  call these.
- `PipelineModel.predict` (`feeds.py`): a routed task with a preprocessor
  preprocesses the rows in memory, then predicts with the rows beside them.

Not a patch, but a seam all the same: adapting a layer changes its
`__class__` to the GraLoRA subclass of its own Keras class, keeping the
object the model's graph holds (`layers/in_place.py`); a layer holding
adapted expert weights (KerasHub's `MixtralMoeExperts`, ...) becomes
`GraLoRA<its class>`, whose `call` reads those weights adapted
(`layers/expert_hosts.py`); and a quantized LM's `ReversibleEmbedding` gets
the straight-through gradient the same way (`surgery/quantized_gradients.py`).

`install_when_imported()` runs at `import keras_gralora` and imports
nothing: the Keras changes (and the registration of the GraLoRA layers for
`.keras` files) are made when Keras is imported, or at once if it already
is; the KerasHub ones when KerasHub is. So `python -m keras_gralora convert`,
which needs numpy and safetensors alone, never imports Keras.
"""

import importlib.abc
import sys
import typing

WRITTEN_AGAINST = {"keras": "3.15.1", "keras_hub": "0.32.0"}

CHANGES = {  # the list above, by owner: `tests/test_integration.py` checks it against what is installed
    "keras.Model": (
        "quantize",
        "make_train_function",
        "make_test_function",
        "make_predict_function",
        "predict",
        "predict_on_batch",
        "__call__",
        "evaluate",
        "test_on_batch",
        "fit",
        "train_on_batch",
    ),
    "keras.src.saving.saving_lib": ("serialize_keras_object", "_walk_saveable"),
    "keras.src.saving.saving_lib.H5IOStore": ("__setitem__",),
    "keras.src.saving.saving_lib.ShardedH5IOStore": ("__setitem__",),
    "keras.src.utils.naming": ("to_snake_case",),
    "keras_hub.models.Backbone": (
        "enable_gralora",
        "merge_gralora",
        "save_gralora_weights",
        "load_gralora_weights",
        "save_own_variables",
        "load_own_variables",
    ),
    "keras_hub.src.utils.preset_utils.KerasPresetLoader": ("load_backbone",),
    "keras_hub.src.utils.pipeline_model.PipelineModel": ("predict",),
    "keras_hub.models.CausalLM": ("make_generate_function", "generate"),
    "keras_hub.models.TextToImage": ("make_generate_function", "generate"),
    "keras_hub.models.ImageToImage": ("make_generate_function", "generate"),
    "keras_hub.models.Inpaint": ("make_generate_function", "generate"),
}


def install_keras(keras):
    """The Keras changes of the table, once: registration of the layers, `guards.py`, `keras_saving.py`."""
    from keras_gralora.integration import guards, keras_saving

    guards.install()
    keras_saving.install()


def install_keras_hub(keras_hub):
    """The KerasHub changes of the table, once (`hub.py`)."""
    from keras_gralora.integration import hub

    hub.install(keras_hub)


INSTALLERS = {"keras": install_keras, "keras_hub": install_keras_hub}


def install_when_imported():
    """Installs each library's changes now if it is imported, else right after its import completes.

    An installer imports most of keras_gralora, so one that would run while
    a keras_gralora module is still executing (it imported Keras) waits
    until that import is done (`_OwnImports`).
    """
    if not any(isinstance(finder, _OwnImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OwnImports())
    for name, installer in INSTALLERS.items():
        module = sys.modules.get(name)
        if module is not None and not _importing(module):
            installer(module)
        elif not any(isinstance(finder, _AfterImport) and finder.name == name for finder in sys.meta_path):
            sys.meta_path.insert(0, _AfterImport(name, installer))


def _importing(module):
    """Whether `module` is still executing (its import has not completed)."""
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds module `name` as the other finders would, and runs `installer(module)` once it has executed."""

    def __init__(self, name, installer):
        self.name, self.installer = name, installer

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None

        def exec_then_install(exec_module, module):
            exec_module(module)
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
            _OwnImports.run_after_own_imports(lambda: self.installer(module))

        return _wrapped_spec(self, fullname, path, target, exec_then_install)


class _OwnImports(importlib.abc.MetaPathFinder):
    """Counts keras_gralora modules being executed; runs deferred installers once the outermost one is done."""

    depth = 0
    pending: typing.ClassVar[list] = []

    @classmethod
    def run_after_own_imports(cls, action):
        if cls.depth:
            cls.pending.append(action)
        else:
            action()

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("keras_gralora."):
            return None

        def counted(exec_module, module):
            cls = _OwnImports
            cls.depth += 1
            try:
                exec_module(module)
            finally:
                cls.depth -= 1
            while not cls.depth and cls.pending:
                cls.pending.pop(0)()

        return _wrapped_spec(self, fullname, path, target, counted)


def _wrapped_spec(finder, fullname, path, target, wrapper):
    """The spec the other finders give `fullname`, its loader running `wrapper(exec_module, module)` instead."""
    others = (other for other in sys.meta_path if other is not finder and hasattr(other, "find_spec"))
    spec = next((spec for other in others if (spec := other.find_spec(fullname, path, target))), None)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return spec
    exec_module = spec.loader.exec_module
    spec.loader.exec_module = lambda module: wrapper(exec_module, module)
    return spec
