"""Runs every check on all 73 KerasHub backbones (`tests/backbone_checks.py`) and prints the README's table.

    KERAS_BACKEND=torch .venv/bin/python scripts/backbone_table.py [names...]

One row per backbone: the layers adapted with the default targets and with
"all", what KerasHub's `enable_lora(4)` adapts, and the status ("ok", the
refusal of a convolutional backbone, or the failed check).
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
warnings.filterwarnings("ignore")

import keras  # noqa: E402

import backbone_checks  # noqa: E402


def row(name):
    cells, status = [], "ok"
    for targets in (None, "all"):
        try:
            result = backbone_checks.check_backbone(name, targets)
            cells.append(str(result.adapted))
            lora = result.lora
        except Exception as error:  # noqa: BLE001  (the table reports every failure)
            cells.append("-")
            lora = backbone_checks._lora_count(name)
            text = str(error).split(";")[0].split(". ")[0]
            status = "refused: no Dense/EinsumDense" if "has no Dense or EinsumDense" in text else f"FAIL: {text}"
        keras.backend.clear_session()
    return f"| {name} | {cells[0]} | {cells[1]} | {lora} | {status} |"


def main(names):
    print(f"KERAS_BACKEND={keras.backend.backend()}\n")
    print("| backbone | adapted (default) | adapted (\"all\") | enable_lora | status |")
    print("|---|---|---|---|---|")
    for name in names or backbone_checks.BACKBONES:
        print(row(name), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
