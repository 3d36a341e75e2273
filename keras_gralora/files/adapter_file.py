"""The adapter file format: named adapters in one HDF5 file, read and written whole.

An adapter file holds adapter variables keyed by each layer's place in the
model's object structure (`structure.py`: the same in every build, unlike
auto-numbered names, and never a position, see keras-hub issue 2701) with
its `path` beside it for people, the settings that re-create them, and what
trains with each adapter (biases, `modules_to_save` weights).

Layout, format version 3:

    attrs: format="keras_gralora.lifecycle.adapters", format_version=3
    model_layers             dataset of strings: the saved model's layer keys
                             (optional: files before it was written lack it)
    adapters/<name>/ attrs: active (bool), index (creation order),
                            modules_to_save (JSON: the modules' keys)
        layers/<i>/  attrs: key, path, in_features, out_features, config (JSON)
                     datasets: gralora_a, gralora_b[, gralora_hybrid_a, gralora_hybrid_b]
        biases/<i>   dataset, attrs: key, path (the bias variable's)
        modules/<i>  dataset, attrs: key, path (a modules_to_save variable's)

Version 2 had no keys: its layers and variables are found by path, as are
those of version 1 (keras_gralora 0.1), which had one unnamed adapter with
its `layers/<i>` groups at the top; it reads as one active adapter named
"default".
"""

import contextlib
import dataclasses
import io
import json
import os

import h5py
import numpy as np

from keras_gralora.config import DEFAULT_ADAPTER, GraLoRAConfig, check_adapter_name
from keras_gralora.files import atomic, hdf5_contents

FORMAT = "keras_gralora.lifecycle.adapters"
FORMAT_VERSION = 3
READS = (1, 2, 3)
SUFFIX = ".weights.h5"
MAX_MODEL_LAYERS = 1_000_000


@dataclasses.dataclass
class LayerEntry:
    config: GraLoRAConfig
    shape: tuple  # (in_features, out_features)
    arrays: dict  # role ("gralora_a", ...) -> array


@dataclasses.dataclass
class FileAdapter:
    """One adapter as a file holds it.

    Layers and variables are named by their structure key (`keyed`, see
    `structure.py`), or by their path (files before version 3, PEFT's).
    """

    name: str
    active: bool
    layers: dict  # layer key (or path) -> LayerEntry, model order
    biases: dict = dataclasses.field(default_factory=dict)  # variable key (or path) -> array
    modules: dict = dataclasses.field(default_factory=dict)  # variable key (or path) -> array
    keyed: bool = False
    paths: dict = dataclasses.field(default_factory=dict)  # key -> path, for messages and PEFT's names
    module_keys: tuple = ()  # the keys of the config's `modules_to_save` layers
    model_keys: list | None = None  # the saved model's layer keys (`saved_structure.py`); None: not recorded
    missing_targets: tuple = ()  # paths of the model's layers its own targets name but it lacks (PEFT's)

    def path(self, name):
        """The path of the layer or variable `name` (a key, or already a path)."""
        return self.paths.get(name, name)

    @property
    def config(self):
        """The adapter's settings (its first layer's; bias and modules_to_save are the adapter's)."""
        return next(iter(self.layers.values())).config


def write(filepath, adapters, where):
    """Writes `adapters` (a list of `FileAdapter`) to `filepath`, atomically (`atomic.write_bytes`).

    The file is built in memory, then written whole: HDF5 never writes to
    the disk itself, so a full disk is an `OSError` and leaves the old file.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="latest") as f:  # compact groups
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        if (keys := adapters[0].model_keys) is not None:
            f.create_dataset("model_layers", data=np.array(keys, dtype=h5py.string_dtype()))
        for index, adapter in enumerate(adapters):
            group = f.create_group(f"adapters/{adapter.name}")
            group.attrs.update(
                active=adapter.active,
                index=index,  # HDF5 lists groups by name
                modules_to_save=json.dumps(list(adapter.module_keys)),
            )
            for i, (key, entry) in enumerate(adapter.layers.items()):
                layer = group.create_group(f"layers/{i}")
                layer.attrs.update(
                    key=key,
                    path=adapter.path(key),
                    in_features=entry.shape[0],
                    out_features=entry.shape[1],
                    config=json.dumps(entry.config.to_dict()),
                )
                for role, array in entry.arrays.items():
                    layer.create_dataset(role, data=array)
            for kind in ("biases", "modules"):
                for i, (key, array) in enumerate(getattr(adapter, kind).items()):
                    group.create_dataset(f"{kind}/{i}", data=array).attrs.update(key=key, path=adapter.path(key))
    atomic.write_bytes(filepath, buffer.getvalue(), where)


@contextlib.contextmanager
def reading(filepath, where):
    """Opens an adapter file: yields `{name: FileAdapter}` in file order, arrays as `Stored` references.

    Everything but the tensors' data is read and checked here: the file may
    only hold its own data (no external storage, external or soft links,
    virtual datasets), and every attribute must be what the format says.
    The data is read by `Stored.read`, after the caller has checked each
    declared shape and dtype against the model.
    """
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"{where}: no adapter file at '{filepath}'.")
    try:
        f = h5py.File(filepath, "r")
    except OSError as error:  # h5py's word for "not HDF5", "truncated", "unreadable"
        raise ValueError(
            f"{where}: cannot read '{filepath}' as HDF5 (not an HDF5 file, or truncated): {error}. "
            "Adapter files come from `save_gralora_weights`; save it again."
        ) from error
    with f:
        reader = _Reader(filepath, where)
        hdf5_contents.check_self_contained(f, f"{where}: '{filepath}' refused")
        yield reader.adapters(f)


class _Reader:
    """Reads the structure of one adapter file, naming the file and the object in every error."""

    def __init__(self, filepath, where):
        self.filepath, self.where, self.keyed = filepath, where, False

    def fail(self, obj, problem):
        raise ValueError(
            f"{self.where}: '{self.filepath}' is not a valid keras_gralora adapter file: {obj} {problem}. "
            "Adapter files come from `save_gralora_weights`; save it again (or ask its author to)."
        )

    def adapters(self, f):
        version = self.header(f)
        if version == 1:
            return {DEFAULT_ADAPTER: FileAdapter(DEFAULT_ADAPTER, True, self.layers(f, {}))}
        self.keyed = version >= 3
        groups = self.group(f, "adapters")
        adapters = {}
        for name, group in sorted(groups.items(), key=lambda item: self.attr(item[1], "index", int)):
            check_adapter_name(name, f"{self.where}: '{self.filepath}'")
            paths = {}
            layers = self.layers(group, paths)
            biases, modules = (
                self.arrays_with_paths(self.group(group, kind, optional=True), paths) for kind in ("biases", "modules")
            )
            module_keys = tuple(self.json(group, "modules_to_save", list)) if self.keyed else ()
            adapters[name] = FileAdapter(
                name, self.attr(group, "active", bool), layers, biases, modules, self.keyed, paths, module_keys
            )
        if not adapters:
            self.fail("group 'adapters'", "holds no adapter")
        if self.keyed and "model_layers" in f:
            keys = self.model_layers(f["model_layers"])
            adapters = {name: dataclasses.replace(a, model_keys=keys) for name, a in adapters.items()}
        return adapters

    def model_layers(self, dataset):
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1 or dataset.dtype.kind != "O":
            self.fail("'model_layers'", "is no list of strings")
        if dataset.shape[0] > MAX_MODEL_LAYERS:
            self.fail("'model_layers'", f"lists {dataset.shape[0]} layers, over {MAX_MODEL_LAYERS}")
        return [key.decode("utf-8", "replace") for key in dataset[()]]

    def header(self, f):
        if f.attrs.get("format") != FORMAT:
            raise ValueError(
                f"{self.where}: '{self.filepath}' is an HDF5 file but not a keras_gralora adapter file "
                f"(format attribute {f.attrs.get('format')!r}, expected {FORMAT!r}). Adapter files "
                "come from `save_gralora_weights`; whole-model weights load with `model.load_weights`."
            )
        version = self.attr(f, "format_version", int)
        if version not in READS:
            raise ValueError(
                f"{self.where}: '{self.filepath}' has format version {version}; this keras_gralora reads "
                f"versions {list(READS)}. Use the keras_gralora release that wrote it."
            )
        return version

    def group(self, parent, name, optional=False):
        obj = parent.get(name)
        if obj is None and optional:
            return {}
        if not isinstance(obj, h5py.Group):
            self.fail(f"'{parent.name}'", f"has no group '{name}'" if obj is None else f"has '{name}' as no group")
        return obj

    def attr(self, obj, name, kind):
        """Attribute `name` of `obj` as `kind` (int, bool or str)."""
        value = obj.attrs.get(name)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            found = "it is missing" if value is None else f"it is {value!r}"
            self.fail(f"'{obj.name}'", f"needs attribute '{name}' as {kind.__name__}, but {found}")
        return kind(value)

    def name(self, obj, paths):
        """The key of `obj` (version 3; its path beside it goes to `paths`), else its path."""
        path = self.attr(obj, "path", str)
        if not self.keyed:
            return path
        key = self.attr(obj, "key", str)
        if key in paths:
            self.fail(f"'{obj.name}'", f"repeats key {key!r}")
        paths[key] = path
        return key

    def layers(self, group, paths):
        layers = {}
        entries = self.group(group, "layers")
        for index in sorted(entries, key=lambda key: int(key) if key.isdigit() else -1):
            layer = self.group(entries, index)
            layers[self.name(layer, paths)] = LayerEntry(
                self.config(layer),
                (self.attr(layer, "in_features", int), self.attr(layer, "out_features", int)),
                {role: self.stored(layer, role) for role in layer},
            )
        if not layers:
            self.fail(f"'{group.name}'", "holds no adapted layer")
        return layers

    def json(self, obj, name, kind):
        """Attribute `name` of `obj`, a JSON text of a `kind` (dict or list of strings)."""
        try:
            value = json.loads(self.attr(obj, name, str))
        except json.JSONDecodeError as error:
            self.fail(f"'{obj.name}'", f"has a {name} that is not JSON ({error})")
        if not isinstance(value, kind) or (kind is list and not all(isinstance(item, str) for item in value)):
            what = "object" if kind is dict else "list of names"
            self.fail(f"'{obj.name}'", f"has a {name} that is no JSON {what} ({type(value).__name__})")
        return value

    def config(self, layer):
        fields = self.json(layer, "config", dict)
        try:
            return GraLoRAConfig(**fields).validate(f"{self.where}: '{self.filepath}' at '{layer.name}'")
        except TypeError as error:
            self.fail(f"'{layer.name}'", f"has a config with unknown fields ({error})")

    def arrays_with_paths(self, group, paths):
        return {self.name(group[key], paths): self.stored(group, key) for key in group}

    def stored(self, group, key):
        dataset = group[key]
        if not isinstance(dataset, h5py.Dataset):
            self.fail(f"'{dataset.name}'", "is a group where a dataset belongs")
        return Stored(tuple(dataset.shape), dataset.dtype, f"'{self.filepath}' at '{dataset.name}'", dataset)


@dataclasses.dataclass(frozen=True)
class Stored:
    """A tensor in an open file: shape and dtype as declared, its data read only by `read`."""

    shape: tuple
    dtype: np.dtype
    where: str
    _dataset: object = dataclasses.field(repr=False)

    def read(self):
        array = np.asarray(self._dataset[()])
        if array.shape != self.shape:
            raise ValueError(f"{self.where}: declared shape {self.shape}, read {array.shape}.")
        return array


def check_filename(filepath):
    filepath = os.fspath(filepath)
    if not filepath.endswith(SUFFIX):
        raise ValueError(
            f"Adapter files must end in '{SUFFIX}', got '{filepath}'. For example: 'task.gralora{SUFFIX}'."
        )
    return filepath
