"""The adapter file format: named adapters in one HDF5 file, read and written whole.

An adapter file holds adapter variables keyed by each layer's `path` (never
by position, see keras-hub issue 2701), the settings that re-create them,
and what trains with each adapter (biases, `modules_to_save` weights).

Layout, format version 2:

    attrs: format="keras_gralora.adapters", format_version=2
    adapters/<name>/ attrs: active (bool), index (creation order)
        layers/<i>/  attrs: path, in_features, out_features, config (JSON)
                     datasets: gralora_a, gralora_b[, gralora_hybrid_a, gralora_hybrid_b]
        biases/<i>   dataset, attrs: path (the bias variable's path)
        modules/<i>  dataset, attrs: path (a modules_to_save variable's path)

Version 1 (keras_gralora 0.1) had one unnamed adapter: its `layers/<i>`
groups sat at the top. It reads as one active adapter named "default".
"""

import contextlib
import dataclasses
import json
import os
import tempfile

import h5py
import numpy as np

from keras_gralora.config import DEFAULT_ADAPTER, GraLoRAConfig

FORMAT = "keras_gralora.adapters"
FORMAT_VERSION = 2
READS = (1, 2)
SUFFIX = ".weights.h5"


@dataclasses.dataclass
class LayerEntry:
    config: GraLoRAConfig
    shape: tuple  # (in_features, out_features)
    arrays: dict  # role ("gralora_a", ...) -> array


@dataclasses.dataclass
class FileAdapter:
    """One adapter as a file holds it."""

    name: str
    active: bool
    layers: dict  # layer path -> LayerEntry, model order
    biases: dict = dataclasses.field(default_factory=dict)  # variable path -> array
    modules: dict = dataclasses.field(default_factory=dict)  # variable path -> array

    @property
    def config(self):
        """The adapter's settings (its first layer's; bias and modules_to_save are the adapter's)."""
        return next(iter(self.layers.values())).config


def write(filepath, adapters):
    """Writes `adapters` (a list of `FileAdapter`) to `filepath`, atomically."""
    with atomic_write(filepath, SUFFIX) as tmp, h5py.File(tmp, "w", libver="latest") as f:  # compact groups
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for index, adapter in enumerate(adapters):
            group = f.create_group(f"adapters/{adapter.name}")
            group.attrs.update(active=adapter.active, index=index)  # HDF5 lists groups by name
            for i, (path, entry) in enumerate(adapter.layers.items()):
                layer = group.create_group(f"layers/{i}")
                layer.attrs.update(path=path, in_features=entry.shape[0], out_features=entry.shape[1],
                                   config=json.dumps(entry.config.to_dict()))
                for role, array in entry.arrays.items():
                    layer.create_dataset(role, data=array)
            for kind in ("biases", "modules"):
                for i, (path, array) in enumerate(getattr(adapter, kind).items()):
                    group.create_dataset(f"{kind}/{i}", data=array).attrs["path"] = path


def read(filepath, where):
    """Reads and checks a whole adapter file: `{name: FileAdapter}` in file order."""
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"{where}: no adapter file at '{filepath}'.")
    try:
        with h5py.File(filepath, "r") as f:
            version = _check_header(f, filepath, where)
            if version == 1:
                return {DEFAULT_ADAPTER: FileAdapter(DEFAULT_ADAPTER, True, _read_layers(f))}
            adapters = {}
            for name, group in sorted(f.get("adapters", {}).items(), key=lambda item: int(item[1].attrs["index"])):
                biases, modules = (
                    {str(d.attrs["path"]): np.asarray(d) for d in group.get(kind, {}).values()}
                    for kind in ("biases", "modules")
                )
                adapters[name] = FileAdapter(name, bool(group.attrs["active"]), _read_layers(group), biases, modules)
            return adapters
    except OSError as error:  # h5py's word for "not HDF5", "truncated", "unreadable"
        raise ValueError(
            f"{where}: cannot read '{filepath}' as HDF5 (not an HDF5 file, or truncated): {error}"
        ) from error


def _check_header(f, filepath, where):
    if f.attrs.get("format") != FORMAT:
        raise ValueError(
            f"{where}: '{filepath}' is an HDF5 file but not a keras_gralora adapter file "
            f"(format attribute {f.attrs.get('format')!r}, expected {FORMAT!r}). Adapter files "
            "come from `save_gralora_weights`; whole-model weights load with `model.load_weights`."
        )
    version = int(f.attrs.get("format_version", -1))
    if version not in READS:
        raise ValueError(
            f"{where}: '{filepath}' has format version {version}; this keras_gralora reads versions "
            f"{list(READS)}. Use the keras_gralora release that wrote it."
        )
    return version


def _read_layers(group):
    layers = {}
    for layer in sorted(group.get("layers", {}).values(), key=lambda g: int(g.name.rsplit("/", 1)[-1])):
        attrs = layer.attrs
        layers[str(attrs["path"])] = LayerEntry(
            GraLoRAConfig(**json.loads(attrs["config"])),
            (int(attrs["in_features"]), int(attrs["out_features"])),
            {role: np.asarray(data) for role, data in layer.items()},
        )
    return layers


def check_filename(filepath):
    filepath = os.fspath(filepath)
    if not filepath.endswith(SUFFIX):
        raise ValueError(
            f"Adapter files must end in '{SUFFIX}', got '{filepath}'. For example: 'task.gralora{SUFFIX}'."
        )
    return filepath


@contextlib.contextmanager
def atomic_write(filepath, suffix):
    """Yields a temporary path beside `filepath`; renames it into place on success only."""
    folder = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot save '{filepath}': the folder '{folder}' does not exist. Create it first.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
