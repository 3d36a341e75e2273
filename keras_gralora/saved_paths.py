"""A keyed adapter file's layers carry the names they were saved from.

Files find their layers by the model's structure, as Keras' own files do, so
a second build of the same model (other auto-generated names) loads. The
path stored beside each key is compared too: a layer put before the saved
one takes its structure position, and without this check the adapter would
land on it. `check_paths=False` (`load_gralora_weights`) loads onto layers
that were only renamed.
"""

import re


def _role(path):
    """`path` without Keras' auto-generated numbering (`dense_3` in a second build is `dense`)."""
    return [re.sub(r"_\d+$", "", segment) for segment in path.split("/")]


def check(model, saved, source, by_name):
    """The layers a file's structure keys land on carry the names it was saved from, numbering aside."""
    moved = [
        (saved.path(key), by_name[key].path)
        for key in saved.layers
        if _role(saved.path(key)) != _role(by_name[key].path)
    ]
    if moved:
        pairs = ", ".join(f"'{stored}' -> '{live}'" for stored, live in moved[:5])
        raise ValueError(
            f"{source.where}: '{source.path}' was saved from other layers than those its structure keys reach in "
            f"model '{model.name}': {pairs}{' ...' if len(moved) > 5 else ''} (layer saved -> layer it would land "
            "on). The model's layers differ from the saved model's (another layer before them, or other names). "
            "If they are the same layers renamed, load with check_paths=False."
        )
