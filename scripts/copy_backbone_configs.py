"""Copies KerasHub's tiny backbone test configurations into `tests/backbones/`.

Each `keras_hub/src/models/*/*_backbone_test.py` of a keras-hub checkout has a
`setUp` that builds a tiny `init_kwargs` and `input_data`; this script copies
that code, with the module's imports, into one module per backbone, so the
tests build every backbone offline:

    python scripts/copy_backbone_configs.py path/to/keras-hub
    ruff format --line-length 120 tests/backbones

Each module has `BACKBONE` (the class the test checks) and `setup()`, which
returns `(init_kwargs, input_data)` built afresh on every call.
"""

import ast
import pathlib
import subprocess
import sys

SKIPPED_IMPORTS = ("pytest", "unittest", "keras_hub.src.tests", "absl")
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "backbones"


def convert(source, origin):
    tree = ast.parse(source)
    imports = [
        node
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and not any(_module(node).startswith(skip) for skip in SKIPPED_IMPORTS)
    ]
    test = next(node for node in tree.body if isinstance(node, ast.ClassDef) and _method(node, "setUp"))
    body = [s for s in _method(test, "setUp").body if not _is_super_setup(s)]
    backbone, inputs = _backbone_test(tree, origin.split()[-1])
    commit, path = origin.split()
    lines = [
        f'"""{test.name}.setUp, copied by scripts/copy_backbone_configs.py from keras-hub {commit}:',
        "",
        f"{path}",
        '"""',
        "",
    ]
    lines += [ast.unparse(node) for node in imports] + ["import types", "", f"BACKBONE = {backbone}", "", ""]
    lines += ["def setup():", "    self = types.SimpleNamespace()"]
    lines += ["    " + line for s in body for line in ast.unparse(s).splitlines()]
    kwargs = _kwargs_name(body)
    if not inputs.startswith("self."):  # a local of the test: the inputs that go with the kwargs
        inputs = "self." + (kwargs.replace("init_kwargs", "input_data") if kwargs != "init_kwargs" else "input_data")
    lines += [f"    return self.{kwargs}, {inputs}", ""]
    return "\n".join(lines)


def _kwargs_name(body):
    """`init_kwargs`, or the one the tests build on (d_fine's `base_init_kwargs`)."""
    assigned = [
        target.attr
        for s in body
        if isinstance(s, ast.Assign)
        for target in s.targets
        if isinstance(target, ast.Attribute)
    ]
    return "init_kwargs" if "init_kwargs" in assigned else next(n for n in assigned if n.endswith("init_kwargs"))


def _module(node):
    return node.module or "" if isinstance(node, ast.ImportFrom) else node.names[0].name


def _method(cls, name):
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _is_super_setup(statement):
    return "super().setUp" in ast.unparse(statement)


def _backbone_test(tree, test_path):
    """`(class, inputs)`: the `cls=` and `input_data=` of the first `run_backbone_test` call.

    Tests without that call check the class their `*_backbone` module
    exports, on `self.input_data`.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "run_backbone_test":
            arguments = {keyword.arg: ast.unparse(keyword.value) for keyword in node.keywords}
            return arguments["cls"], arguments.get("input_data", "self.input_data")
    module = test_path.removesuffix("_test.py").replace("/", ".")
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == module:
            return node.names[0].asname or node.names[0].name, "self.input_data"
    raise ValueError(f"{test_path}: no run_backbone_test(cls=...) call and no import from {module}")


def main(checkout):
    checkout = pathlib.Path(checkout)
    commit = (
        subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "checkout"
    )
    OUT.mkdir(exist_ok=True)
    for test in sorted(checkout.glob("keras_hub/src/models/*/*_backbone_test.py")):
        name = test.name.removesuffix("_backbone_test.py")
        origin = f"{commit} {test.relative_to(checkout)}"
        (OUT / f"{name}.py").write_text(convert(test.read_text(), origin))
    print(f"wrote {len(list(OUT.glob('*.py')))} modules to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
