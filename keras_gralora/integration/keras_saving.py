"""Keras' `.keras` writer during `export_merged`: the GraLoRA layers written as the plain layers they merge into.

Inside `serialization.exporting_plain_layers()` (this thread, one export),
each GraLoRA layer saves the variables of a plain twin; what Keras' writer
looks up by name must also see the plain class, and the export holds no
optimizer and no adapter layer of expert weights (their hosts save the
merged weights). Three names of Keras' saving code are wrapped, inert outside an
export (`exporting()` is False there): see the table in `integration/__init__.py`.
And Keras' weights stores gather a variable sharded over several processes
before writing it (`install_gathering_writes`).
"""

import keras
from keras.src.saving import saving_lib  # Keras' own .keras writer: its class-named slots and config
from keras.src.utils import naming

from keras_gralora.backend import gathered
from keras_gralora.layers.expert_hosts import PLAIN_HOST_CLASS
from keras_gralora.layers.experts import GraLoRAExpertWeights
from keras_gralora.layers.kinds import BASE_CLASS
from keras_gralora.layers.reversible_embedding import ReversibleEmbedding
from keras_gralora.layers.serialization import exporting

PLAIN = {**BASE_CLASS, ReversibleEmbedding: keras.layers.ReversibleEmbedding}
_PLAIN_NAMES = {cls.__name__: plain.__name__ for cls, plain in PLAIN.items()}
_REGISTERED = {keras.saving.get_registered_name(cls): plain for cls, plain in PLAIN.items()}


def _plain_config(config):
    """Keras' serialized `config` with the GraLoRA layers as their plain classes (and no compile state)."""
    if isinstance(config, list):
        return [_plain_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: _plain_config(value) for key, value in config.items() if key != "compile_config"}
    plain = _REGISTERED.get(config.get("registered_name"))
    if plain is not None:
        config.update(module="keras.layers", class_name=plain.__name__, registered_name=None)
    return config


def install():
    """Wraps three names Keras' `.keras` writer looks up (once); inert outside an export. And its store's writes."""
    if getattr(saving_lib.serialize_keras_object, "_gralora", False):
        return
    install_gathering_writes()
    serialize, snake_case, walk = saving_lib.serialize_keras_object, naming.to_snake_case, saving_lib._walk_saveable

    def serialize_keras_object(obj):
        config = serialize(obj)
        return _plain_config(config) if exporting() else config

    def to_snake_case(name):
        if exporting():
            hosts = {cls.__name__: plain.__name__ for cls, plain in PLAIN_HOST_CLASS.items()}
            name = _PLAIN_NAMES.get(name) or hosts.get(name, name)
        return snake_case(name)

    def walk_saveable(saveable):
        for name, child in walk(saveable):
            if not (exporting() and isinstance(child, (keras.optimizers.Optimizer, GraLoRAExpertWeights))):
                yield name, child

    serialize_keras_object._gralora = True
    saving_lib.serialize_keras_object = serialize_keras_object
    naming.to_snake_case = to_snake_case
    saving_lib._walk_saveable = walk_saveable


def install_gathering_writes():
    """Keras' weights stores gather a variable sharded over processes (multi-host jax) before writing it.

    Keras' `H5IOStore.__setitem__` fetches the value whole, which JAX
    refuses for an array with shards on other processes ("Fetching value
    for `jax.Array` that spans non-addressable devices is not possible");
    `backend.to_numpy` gathers it with JAX's `process_allgather` (every
    process saves, `files/one_writer.py`). Anything else passes unchanged.
    """
    for store in (saving_lib.H5IOStore, saving_lib.ShardedH5IOStore):
        setitem = store.__setitem__

        def __setitem__(self, key, value, setitem=setitem):
            return setitem(self, key, gathered(value))

        store.__setitem__ = __setitem__
