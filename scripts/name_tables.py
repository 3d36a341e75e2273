"""Writes keras_gralora/interop/name_tables.json: every name table, read off KerasHub's converters.

    .venv/bin/python scripts/name_tables.py

Each tiny random checkpoint of `tests/tiny_transformers.py` is converted by
KerasHub's own converter with a recording loader
(`keras_gralora.interop.converter_records`); `tests/test_name_tables.py`
checks that the file is what this writes.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import tiny_transformers

from keras_gralora.interop import converter_records

TARGET = os.path.join(os.path.dirname(__file__), "..", "keras_gralora", "interop", "name_tables.json")


def derive(model_type, root):
    directory = os.path.join(root, model_type)
    classes = tiny_transformers.write(model_type, directory)
    backbone, found = converter_records.records(directory)
    return converter_records.table(model_type, classes, backbone, found)


def main():
    with tempfile.TemporaryDirectory() as root:
        tables = {model_type: derive(model_type, root) for model_type in tiny_transformers.TINY}
    with open(TARGET + ".tmp", "w") as file:
        json.dump(tables, file, indent=1)
        file.write("\n")
    os.replace(TARGET + ".tmp", TARGET)
    print(f"{len(tables)} tables -> {os.path.normpath(TARGET)}")


if __name__ == "__main__":
    main()
