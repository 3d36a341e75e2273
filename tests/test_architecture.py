"""The house reads one way: each module imports only from its own layer or the layers below it."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "keras_gralora"
LAYERS = [  # bottom-up, as the architecture guide shows them
    {"config", "backend", "ops"},
    {"layers"},
    {"surgery"},
    {"lifecycle"},
    {"files"},
    {"serving", "interop"},
    {"integration"},
    {"cli", "__main__", "__init__", "moved"},
]


def layer_of(module):
    """The layer of `keras_gralora.<first part>...`."""
    first = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if first in names)


def imports(path):
    """Every `keras_gralora...` module that `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("keras_gralora.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_gralora"):
            if node.module == "keras_gralora":  # `from keras_gralora import config, ...`: modules of the top
                found |= {f"keras_gralora.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("keras_gralora", *path.relative_to(ROOT).with_suffix("").parts))
        module = module.removesuffix(".__init__") if path.name == "__init__.py" and path.parent != ROOT else module
        own = layer_of(module if path.parent != ROOT or path.name != "__init__.py" else "keras_gralora")
        upward += [f"{module} -> {name}" for name in imports(path) if layer_of(name) > own]
    assert not upward, upward


def test_every_top_level_module_and_subpackage_has_a_layer():
    names = {
        path.stem if path.is_file() else path.name
        for path in ROOT.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").exists()
    }
    assert names == set().union(*LAYERS)


def test_the_module_paths_of_the_reference_before_the_subpackages_still_import():
    import importlib

    from keras_gralora import moved

    for old, new in moved.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from keras_gralora.saving import load_gralora_weights  # as the reference showed it

    assert load_gralora_weights.__module__ == "keras_gralora.files.saving"
