"""The oldest Keras and KerasHub the package declares are the ones the suite runs on.

`pyproject.toml` declares `keras>=X` and `keras-hub>=Y` (in the `hub` and
`examples` extras); `constraints.txt`, which `scripts/env.sh` installs
with, pins exactly X and Y. So CI runs every test at the floors, and a
floor cannot drift below what was tested.
"""

import importlib.metadata
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name)) as file:
        return file.read()


def floors():
    found = {}
    for package, version in re.findall(r'"(keras|keras-hub)>=([0-9.]+)"', read("pyproject.toml")):
        assert found.setdefault(package, version) == version, f"two floors for {package}"
    return found


def pins():
    return dict(re.findall(r"^(keras|keras-hub)==([0-9.]+)$", read("constraints.txt"), re.M))


def test_the_constraints_pin_the_declared_floors():
    assert floors() == pins() == {"keras": pins()["keras"], "keras-hub": pins()["keras-hub"]}


@pytest.mark.skipif(not os.environ.get("GRALORA_ENV_READY"), reason="an environment not made by scripts/env.sh")
@pytest.mark.parametrize("package", ["keras", "keras-hub"])
def test_the_suite_runs_at_the_floors(package):
    assert importlib.metadata.version(package) == floors()[package]
