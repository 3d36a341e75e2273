"""Runs every check on all 73 KerasHub backbones (`tests/backbone_checks.py`); writes the README's table.

    for b in jax torch tensorflow; do
      KERAS_BACKEND=$b .venv/bin/python scripts/backbone_table.py > backbones-$b.tsv
    done
    .venv/bin/python scripts/backbone_table.py --markdown backbones-*.tsv
    KERAS_BACKEND=torch .venv/bin/python scripts/backbone_table.py --defaults > docs/default-targets.md

The first form prints one tab-separated row per backbone on this backend:
the layers adapted with the default targets and with "all" (which also
adapts every expert weight of a mixture-of-experts backbone,
`target_parameters="all"`), those expert weights, what KerasHub's
`enable_lora(4)` adapts, and the status ("ok", the refusal of a
convolutional backbone, or the failed check). `--markdown` merges such files
into one table, a status column per backend. `--defaults` writes the docs'
table of the layers `enable_gralora` adapts by default on each backbone.
"""

import csv
import os
import re
import sys
import time
import warnings

FIELDS = ("backbone", "default", "all", "experts", "enable_lora", "status", "seconds")


def row(name):
    import backbone_checks
    import keras

    cells, status, start, experts = [], "ok", time.time(), "-"
    for targets in (None, "all"):
        try:  # "all" with every expert weight too (`target_parameters="all"`), where the backbone has any
            result = backbone_checks.check_backbone(name, targets, experts=targets == "all")
            cells.append(str(result.adapted - result.experts))
            experts = str(result.experts) if targets == "all" else experts
        except Exception as error:
            cells.append("-")
            text = " ".join(str(error).split())
            refused = "has no Dense, EinsumDense or Conv1D/2D/3D" in text
            status = "refused: nothing to adapt" if refused else f"FAIL: {text[:200]}"
        keras.backend.clear_session()
    return [name, *cells, experts, str(backbone_checks._lora_count(name)), status, f"{time.time() - start:.1f}"]


def sweep(names):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    warnings.filterwarnings("ignore")
    import backbone_checks
    import keras

    out = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    out.writerow([f"# KERAS_BACKEND={keras.backend.backend()}"])
    out.writerow(FIELDS)
    for name in names or backbone_checks.BACKBONES:
        out.writerow(row(name))
        sys.stdout.flush()


def markdown(paths):
    tables = {}
    for path in paths:
        with open(path) as f:
            backend = f.readline().strip().split("=")[-1]
            tables[backend] = {r["backbone"]: r for r in csv.DictReader(f, delimiter="\t")}
    names = sorted({name for table in tables.values() for name in table})
    print(f'| backbone | adapted (default) | adapted ("all") | expert weights | enable_lora | {" | ".join(tables)} |')
    print("|---|---|---|---|---|" + "---|" * len(tables))
    for name in names:
        r = next(table[name] for table in tables.values() if name in table)
        statuses = [tables[b].get(name, {}).get("status", "not run") for b in tables]
        experts = r.get("experts", "-")
        print(f"| {name} | {r['default']} | {r['all']} | {experts} | {r['enable_lora']} | {' | '.join(statuses)} |")
    for backend, table in tables.items():
        passed = sum(r["status"] == "ok" for r in table.values())
        refused = sum(r["status"].startswith("refused") for r in table.values())
        seconds = sum(float(r["seconds"]) for r in table.values())
        print(
            f"\n{backend}: {passed} pass every check, {refused} refused (convolutional), "
            f"{len(table) - passed - refused} fail; {seconds / 60:.0f} min.",
            end="",
        )
    print()


def defaults():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    warnings.filterwarnings("ignore")
    import backbone_checks
    import keras

    from keras_gralora import GraLoRAConfig
    from keras_gralora.surgery import selection, structure

    print("# Default targets per KerasHub backbone\n")
    print("What `enable_gralora(target_layer_names=None)` adapts on each backbone KerasHub 0.32 ships, on its")
    print("tiny test configuration (`scripts/backbone_table.py --defaults`). The targets come from")
    print("`keras_gralora/surgery/default_targets.py` where KerasHub's `default_lora_layer_names()` finds nothing,")
    print('else from KerasHub. A backbone without Dense/EinsumDense layers (convolutional) takes "all": every')
    print("Conv1D/2D/3D with groups 1 whose channels split into k blocks (k=2 here).\n")
    print("| backbone | class | default targets | layer names adapted | layers |")
    print("|---|---|---|---|---|")
    for name in backbone_checks.BACKBONES:
        model, _ = backbone_checks.build(name)
        targets = selection.default_target_names(model)
        try:
            found = selection.select_targets(model, None, GraLoRAConfig(r=4, k=2))
        except ValueError:
            print(f"| {name} | {type(model).__name__} | - | refused: nothing to adapt | 0 |")
            continue
        if hasattr(targets, "pattern"):  # auto-numbered names: the end of each layer's structure key
            keys = structure.layer_keys(model)
            names = {re.sub(r"_\d+(?=/|$)", "", "/".join(keys[id(layer)].split("/")[-2:])) for layer in found}
            shown = f"`{targets.pattern}` (structure keys)".replace("|", "\\|")
        elif isinstance(targets, str):  # "all": a convolutional backbone
            names, shown = {type(layer).__name__ for layer in found}, f'"{targets}" (every convolution)'
        else:
            names, shown = {layer.name for layer in found}, ", ".join(targets)
        print(f"| {name} | {type(model).__name__} | {shown} | {', '.join(sorted(names))} | {len(found)} |")
        keras.backend.clear_session()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--markdown"]:
        markdown(sys.argv[2:])
    elif sys.argv[1:2] == ["--defaults"]:
        defaults()
    else:
        sweep(sys.argv[1:])
