"""A PEFT adapter directory on disk: read without trusting it, written as a whole.

Reading never follows a symbolic link out of the directory and reads no
tensor data before the caller has checked each tensor's declared shape and
dtype (`safetensors.safe_open` reads the header alone). Writing builds both
files in memory and swaps the directory in one step (`files.py`); the
weights' metadata records the SHA-256 of the config written beside them, so
a directory whose two files come from different saves is refused on load.
"""

import hashlib
import json
import os

import numpy as np

from keras_gralora.files import atomic
from keras_gralora.interop import authors

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
OWNED = (WEIGHTS_FILE, CONFIG_FILE, "adapter.gguf")  # what a save writes; `adapter.gguf`: llama.cpp's adapter
PREFIX = "base_model.model."  # every tensor key starts so: `base_model.model.<module>.<tensor>`
CONFIG_HASH = "keras_gralora.adapter_config_sha256"
MAX_CONFIG_BYTES = 16 * 2**20
DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}  # what numpy holds exactly
PEFT_DEFAULTS = {  # what PEFT's configs use for a field adapter_config.json leaves out
    "GRALORA": {"r": 32, "gralora_k": 2, "hybrid_r": 0, "alpha": 64},
    "LORA": {"r": 8, "lora_alpha": 8},
}


def as_peft_config(config, where):
    """A directory's `adapter_config.json` as PEFT's, what every reader of directories uses.

    The GraLoRA authors' layout (`gralora_alpha`, `r` counting `hybrid_r`) is read as PEFT's with the same
    math (`authors.py`), and the fields a config leaves out get PEFT's defaults.
    """
    if authors.is_theirs(config):
        config = authors.as_peft(config, where)
    return {**PEFT_DEFAULTS.get(config.get("peft_type"), {}), **config}


class Directory:
    """An open PEFT directory: `config` (dict), `declared` (`{key: (shape, dtype)}`), `load()` the tensors."""

    def __init__(self, directory, where):
        self.directory, self.where = os.fspath(directory), where
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            path = os.path.join(self.directory, name)
            if os.path.islink(path):
                raise ValueError(
                    f"{where}: '{path}' is a symbolic link; a PEFT directory is read only from its own "
                    "files. Copy the file itself into the directory."
                )
            if not os.path.isfile(path):
                found = sorted(os.listdir(self.directory)) if os.path.isdir(self.directory) else "no such directory"
                raise FileNotFoundError(
                    f"{where}: '{self.directory}' has no {name} ({found}); a PEFT adapter directory is what "
                    "`PeftModel.save_pretrained` writes (adapter_config.json and adapter_model.safetensors)."
                )
        self.config_bytes = self._config_bytes()
        self.config = self._parse_config()
        self._open_weights()

    def _config_bytes(self):
        path = os.path.join(self.directory, CONFIG_FILE)
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise ValueError(f"{self.where}: '{path}' is over {MAX_CONFIG_BYTES // 2**20} MiB: not a PEFT config.")
        with open(path, "rb") as f:
            return f.read()

    def _parse_config(self):
        path = os.path.join(self.directory, CONFIG_FILE)
        try:
            config = json.loads(self.config_bytes)
        except RecursionError:
            raise ValueError(
                f"{self.where}: '{path}' nests its JSON too deeply to read; a PEFT config is a flat object of "
                "settings. Write it again with PEFT's `save_pretrained` or `save_peft_adapter`."
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{self.where}: '{path}' is not JSON ({error}). Write it again with PEFT's "
                "`save_pretrained` or `save_peft_adapter`."
            ) from error
        if not isinstance(config, dict):
            raise ValueError(
                f"{self.where}: '{path}' holds a JSON {type(config).__name__}, not the object of a "
                'PEFT config ({"peft_type": ..., "r": ...}).'
            )
        return config

    def _open_weights(self):
        from safetensors import SafetensorError, safe_open

        path = os.path.join(self.directory, WEIGHTS_FILE)
        try:
            with safe_open(path, framework="numpy") as f:
                metadata = f.metadata() or {}
                self.declared = {
                    key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()
                }
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(
                f"{self.where}: cannot read '{path}' as safetensors (truncated or not safetensors): "
                f"{error}. Save the adapter again."
            ) from error
        recorded = metadata.get(CONFIG_HASH)
        if recorded is not None and recorded != hashlib.sha256(self.config_bytes).hexdigest():
            raise ValueError(
                f"{self.where}: '{self.directory}' mixes two saves: its {WEIGHTS_FILE} was written with another "
                f"{CONFIG_FILE} than the one beside it (an interrupted copy or save). Save the adapter again."
            )

    def load(self):
        """Every tensor, as numpy arrays (call after checking `declared`)."""
        from safetensors import safe_open

        with safe_open(os.path.join(self.directory, WEIGHTS_FILE), framework="numpy") as f:
            arrays = {key: f.get_tensor(key) for key in f.keys()}
        if {key: (array.shape, array.dtype) for key, array in arrays.items()} != {
            key: (shape, np.dtype(DTYPES[dtype])) for key, (shape, dtype) in self.declared.items()
        }:
            raise ValueError(f"{self.where}: '{self.directory}' changed while it was read. Load it again.")
        return arrays


def write(directory, document, arrays, where, extra_files=None):
    """Writes `adapter_config.json` (`document`) and the safetensors `arrays` as one directory swap.

    `extra_files`: `{name: write(path)}` of files written beside them (`adapter.gguf`, of `OWNED`); an owned
    file an earlier save wrote and this one does not is gone from the new directory (no stale companion).
    """
    from safetensors.numpy import save

    text = json.dumps(document, indent=2, sort_keys=True).encode()
    data = save(
        {key: np.ascontiguousarray(array) for key, array in arrays.items()},
        metadata={"format": "pt", CONFIG_HASH: hashlib.sha256(text).hexdigest()},
    )
    writers = {name: _bytes_writer(content) for name, content in ((WEIGHTS_FILE, data), (CONFIG_FILE, text))}
    with atomic.replacing_directory(directory, where, owned=OWNED) as tmp, atomic.naming_errors(directory, where):
        for name, write_file in {**writers, **(extra_files or {})}.items():
            write_file(os.path.join(tmp, name))
            atomic.keep_mode_and_owner(os.path.join(directory, name), os.path.join(tmp, name), where)


def _bytes_writer(content):
    def write_file(path):
        with open(path, "wb") as f:
            f.write(content)

    return write_file
