"""Layer identity that survives rebuilds: keys from the model's object structure.

A layer's `path` comes from its name, and Keras numbers unnamed layers per
process (`dense_128` in one build, `dense_130` in the next), and two layers
may even share a path. Keras' own weights files avoid both by keying each
object by where it sits in the object structure (`saving_lib`: the attribute
that holds it, or its class name and position in a list). A key here is
that same place: `layers/transformer_layer_1/_self_attention_layer/_query_dense`.
It is the same in every build of the same architecture, in any process.

Keys are measured from the model itself, except that a KerasHub task's
backbone layers are keyed from its backbone (`backbone/...`), so a file
saved from a task loads into its backbone and back. An adapted layer (or
host of adapted expert weights) is keyed by its plain class, so enabling
GraLoRA changes no key.
"""

import keras
from keras.src.saving import saving_lib  # Keras' own walk of the object structure
from keras.src.utils import naming

from keras_gralora.layers.expert_hosts import PLAIN_HOST_CLASS
from keras_gralora.layers.experts import ExpertWeight, expert_weights, holder_attribute
from keras_gralora.layers.kinds import BASE_CLASS

BACKBONE = "backbone"
TASK = "task"


def layer_keys(model):
    """`{id(layer): key}` for `model` and every layer inside it."""
    if is_backbone(model):
        return _walk(model, BACKBONE, {})
    if (backbone := task_backbone(model)) is not None:
        keys = _walk(backbone, BACKBONE, {})
        return _walk(model, TASK, keys, visited=set(keys))  # the task's own layers: head, preprocessor...
    return _walk(model, "", {})


def is_backbone(model):
    """Whether `model` is a KerasHub backbone (keras_hub is not imported here)."""
    return any(cls.__name__ == "Backbone" and cls.__module__.startswith("keras_hub") for cls in type(model).__mro__)


def task_backbone(model):
    """The backbone of a KerasHub task (or of any model with a `backbone` layer), else `None`.

    A backbone that holds another one (D-FINE's `backbone`) is no task.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.layers.Layer) and backbone is not model and not is_backbone(model):
        return backbone
    return None


def key_of(keys, layer):
    """`layer`'s key in `keys` (from `layer_keys`); one the structure does not reach is keyed by its path."""
    return keys.get(id(layer), f"~{layer.path}")


def layers_by_key(model, keys=None):
    """`{key: layer}` for every layer inside `model`; `keys` from `layer_keys`, if already walked."""
    keys = layer_keys(model) if keys is None else keys
    return {key_of(keys, layer): layer for layer in model._flatten_layers(include_self=False)}


def variable_keys(model, keys=None):
    """`{id(variable): key}` for every variable of `model`: its layer's key and the variable's name."""
    keys = layer_keys(model) if keys is None else keys
    found = {}
    for layer in model._flatten_layers(include_self=True):
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            found.setdefault(id(variable), f"{key_of(keys, layer)}/{variable.name}")
    return found


def places(model, keyed):
    """`(layers, variables)` of `model` by the names a file uses: structure keys, or paths (older files, PEFT).

    One walk of the structure serves both.

    Expert weights not adapted yet (`experts.ExpertWeight`) are places too,
    under the key and path their adapter layer will have.
    """
    unadapted = [weight for weight in expert_weights(model) if isinstance(weight, ExpertWeight)]
    if not keyed:
        layers = {layer.path: layer for layer in model._flatten_layers(include_self=False)}
        return {**layers, **{weight.path: weight for weight in unadapted}}, {v.path: v for v in model.weights}
    keys = layer_keys(model)
    by_id = {id(v): v for v in model.variables}
    variables = {key: by_id[i] for i, key in variable_keys(model, keys).items() if i in by_id}
    experts = {f"{key_of(keys, w.host)}/{holder_attribute(w.attribute)}": w for w in unadapted}
    return {**layers_by_key(model, keys), **experts}, variables


def _walk(obj, key, keys, visited=None):
    """Keys `obj` and the layers it reaches, as `saving_lib._save_state` names them."""
    visited = set() if visited is None else visited
    if id(obj) in visited:
        return keys
    visited.add(id(obj))
    keys.setdefault(id(obj), key)
    for attribute, child in saving_lib._walk_saveable(obj):
        if isinstance(child, keras.layers.Layer):
            _walk(child, _join(key, attribute), keys, visited)
        elif isinstance(child, (list, tuple, dict)):
            _walk_container(child, _join(key, attribute), keys, visited, containers=set())
    return keys


def _walk_container(container, key, keys, visited, containers):
    """A list's layers are keyed by their class and position, as `saving_lib._save_container_state` does.

    `containers` holds the ids of the containers on this walk, which are
    alive until it returns (a property's fresh list may reuse a freed id).
    """
    if id(container) in containers:
        return
    containers.add(id(container))
    used = {}
    for child in container.values() if isinstance(container, dict) else container:
        if isinstance(child, keras.layers.Layer):
            plain = BASE_CLASS.get(type(child)) or PLAIN_HOST_CLASS.get(type(child), type(child))
            _walk(
                child,
                _join(key, saving_lib._get_unique_name(naming.to_snake_case(plain.__name__), used)),
                keys,
                visited,
            )
        elif isinstance(child, (list, tuple, dict)):
            name = saving_lib._get_unique_name("container", used)
            _walk_container(child, _join(key, name), keys, visited, containers)


def _join(key, name):
    return f"{key}/{name}" if key else name
