"""A keyed adapter file lands only on the layers it was saved from, and on the whole model it was saved from.

Files find their layers by the model's structure, as Keras' own files do, so
a second build of the same model (other auto-generated names) loads. Two
more things are compared, because a structure key alone can reach another
layer:

- the path stored beside each key: a layer put before the saved one takes
  its structure position, and the adapter would land on it
  (`check_paths=False` loads onto layers that were only renamed);
- the saved model's layers (their keys, written beside the adapters): a
  model with layers the saved one lacked (a 2-block model's file and a
  4-block model) would be adapted in part only (`allow_partial=True` loads
  all the same).

Files written before the saved model's layers were recorded are checked by
paths only. A PEFT directory names its modules, so it needs no path check;
when its `target_modules` is a list, PEFT adapts every module those names
reach, so a model layer they reach that the directory lacks means it was
saved from a smaller configuration (`interop/peft_read.py` finds them).
"""

import re

from keras_gralora.layers.experts import ExpertWeight
from keras_gralora.surgery.structure import BACKBONE, TASK


def model_keys(keys):
    """What a file records of the saved model: its layers' structure keys (`structure.layer_keys`), sorted."""
    return sorted({key for key in keys.values() if key not in ("", BACKBONE, TASK) and not key.startswith("~")})


def moved(paths, by_key):
    """`[(stored path, live path)]` for the keys (`paths`: key -> stored path) whose live layer has another name.

    Keras' auto-generated numbering aside.
    """
    return [(path, by_key[key].path) for key, path in paths.items() if _role(path) != _role(by_key[key].path)]


def unsaved(saved_keys, by_key):
    """The live layers (`{key: layer}`, adaptable ones) whose keys the saved model did not have.

    A file saved from a KerasHub backbone is compared over the backbone only
    (it loads into a task holding that backbone). An expert weight not
    adapted yet (`experts.ExpertWeight`) was saved with its layer: its key is
    that layer's, plus the adapter layer's name.
    """
    saved = set(saved_keys)
    from_backbone = all(key.startswith(f"{BACKBONE}/") for key in saved)
    return [
        layer.path
        for key, layer in by_key.items()
        if (key.rsplit("/", 1)[0] if isinstance(layer, ExpertWeight) else key) not in saved
        and not key.startswith("~")
        and (not from_backbone or key.startswith(f"{BACKBONE}/"))
    ]


def check(model, saved, source, by_key):
    """Refuses, naming both layers and the argument that loads anyway, before anything changes."""
    if saved.keyed and source.check_paths and (pairs := moved({key: saved.path(key) for key in saved.layers}, by_key)):
        raise ValueError(
            f"{source.where}: '{source.path}' was saved from other layers than those its structure keys reach in "
            f"model '{model.name}': {_pairs(pairs)} (layer saved -> layer it would land on). The model's layers "
            "differ from the saved model's (another layer before them, or other names). If they are the same "
            "layers renamed, load with check_paths=False."
        )
    if source.allow_partial:
        return
    if extra := unsaved(saved.model_keys, by_key) if saved.model_keys is not None else list(saved.missing_targets):
        raise ValueError(
            f"{source.where}: '{source.path}' was saved from a model without layers {_some(sorted(extra))} of model "
            f"'{model.name}': it was saved from a smaller configuration (fewer blocks, or other layers), so it "
            "would adapt part of this model only. To load it onto the layers it names all the same, pass "
            "allow_partial=True."
        )


def _pairs(pairs):
    return ", ".join(f"'{stored}' -> '{live}'" for stored, live in pairs[:5]) + (" ..." if len(pairs) > 5 else "")


def _some(paths):
    return f"{paths[:5]}{f' and {len(paths) - 5} more' if len(paths) > 5 else ''}"


def _role(path):
    """`path` without Keras' auto-generated numbering (`dense_3` in a second build is `dense`)."""
    return [re.sub(r"_\d+$", "", segment) for segment in path.split("/")]
