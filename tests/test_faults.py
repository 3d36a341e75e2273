"""Saves interrupted by SIGKILL, a full disk and a read-only disk; file modes; leftovers of killed saves.

The kill trials run a child (`fault_child.py`) that imports once and then
forks one saver per trial, which writes the two models onto one target in
turn until it is killed at a random moment. Forking keeps a trial at a
fraction of a second; jax's runtime deadlocks in a forked child (its thread
pools do not survive `fork`), so under jax the child saves with Keras'
numpy backend. The files are the same on every backend, and each trial's
artifact is loaded here, on the backend under test.
"""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import HERE, adapted_model, to_numpy

import keras_gralora

keras_hub = pytest.importorskip("keras_hub")
import fault_child  # noqa: E402  (the saving side; its tiny Llama config and inputs)

BACKEND = keras.backend.backend()
TRIALS = int(os.environ.get("GRALORA_KILL_TRIALS", "10"))  # per artifact; the README says how to run more
ARTIFACTS = ("adapter", "export", "peft")


class Child:
    """The saving process of the kill trials, driven line by line."""

    def __init__(self, folder):
        env = {**os.environ, "KERAS_BACKEND": "numpy" if BACKEND == "jax" else BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fault_child.py"), str(folder)],
            cwd=HERE,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.durations = json.loads(self._line())

    def _line(self):
        line = self.process.stdout.readline()
        assert line, f"the saving child ended (exit code {self.process.poll()})"
        return line.strip()

    def kill_during(self, name, rng):
        """Starts a saver of `name` and SIGKILLs it after a random part of about three saves."""
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        pid = int(self._line())
        time.sleep(rng.uniform(0, 3 * self.durations[name]))
        os.kill(pid, signal.SIGKILL)
        assert self._line() == "killed"

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def temporaries(folder, name):
    return {f for f in os.listdir(folder) if f.startswith(f".{fault_child.TARGETS[name]}.keras_gralora-tmp-")}


def matches_one(outputs, expected):
    return any(np.allclose(outputs, e, rtol=1e-4, atol=1e-4 * np.abs(e).max()) for e in expected)


def test_saves_killed_at_random_moments_leave_the_old_or_the_new_artifact_complete(tmp_path):
    child = Child(tmp_path)
    expected = [np.load(tmp_path / f"outputs_{i}.npy") for i in range(2)]
    base = keras_hub.models.LlamaBackbone(**fault_child.CONFIG)
    base.load_weights(tmp_path / "base.weights.h5")
    inputs = fault_child.INPUTS
    loads = {
        "adapter": lambda: keras_gralora.load_gralora_weights(base, tmp_path / "task.gralora.weights.h5"),
        "peft": lambda: keras_gralora.load_peft_adapter(base, tmp_path / "peft"),
    }
    rng = np.random.default_rng(0)
    survived, inside = {name: 0 for name in ARTIFACTS}, 0
    for trial in range(TRIALS * len(ARTIFACTS)):
        name = ARTIFACTS[trial % len(ARTIFACTS)]
        before = temporaries(tmp_path, name)
        child.kill_during(name, rng)
        inside += bool(temporaries(tmp_path, name) - before)  # killed while writing its files
        if name == "export":
            outputs = to_numpy(keras.saving.load_model(tmp_path / "served.keras")(inputs))
        else:
            keras_gralora.unload_gralora(base)
            loads[name]()
            outputs = to_numpy(base(inputs))
        assert matches_one(outputs, expected), f"trial {trial}: {name} is neither model"
        survived[name] += 1
    child.close()
    assert inside, "no kill landed while a file was written: the trials tested nothing"
    print(f"{BACKEND}: {sum(survived.values())} kills, {inside} while a file was written, every artifact complete")
    keras_gralora.save_gralora_weights(base, tmp_path / "task.gralora.weights.h5")
    keras_gralora.export_merged(base, tmp_path / "served.keras")
    keras_gralora.save_peft_adapter(base, tmp_path / "peft")
    assert [f for f in os.listdir(tmp_path) if ".keras_gralora-tmp-" in f] == []  # the next saves clean up
    assert survived == {name: TRIALS for name in ARTIFACTS}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode:
        pytest.skip(f"disk-full and read-only tests mount a tmpfs (root only): {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def llama_pair():
    keras.utils.set_random_seed(1)
    models = []
    for r in (4, 16):
        model = keras_hub.models.LlamaBackbone(**fault_child.CONFIG)
        model.enable_gralora(r=r, k=2, target_layer_names=["query", "value"])
        models.append(model)
    return models


SAVES = {
    "adapter file": ("a.gralora.weights.h5", keras_gralora.save_gralora_weights),
    "export": ("m.keras", keras_gralora.export_merged),
    "peft directory": ("peft", keras_gralora.save_peft_adapter),
}


def contents(path):
    if os.path.isdir(path):
        return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}
    return path.read_bytes()


@pytest.mark.parametrize("what", list(SAVES))
def test_a_full_disk_or_a_read_only_one_raises_naming_the_path_and_keeps_the_old_artifact(small_disk, what):
    name, save = SAVES[what]
    small, large = llama_pair()
    target = small_disk / name
    save(small, target)
    old = contents(target)
    filler = small_disk / "filler"
    with pytest.raises(OSError), open(filler, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    with pytest.raises(OSError, match=rf"cannot write '{target}'") as error:
        save(large, target)
    assert ".keras_gralora-tmp-" not in str(error.value)
    assert contents(target) == old
    assert sorted(os.listdir(small_disk)) == sorted([name, "filler"])
    os.remove(filler)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OSError, match=rf"cannot write '{target}'"):
        save(large, target)
    assert contents(target) == old


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saves_follow_the_umask_and_keep_an_existing_files_mode(tmp_path, umask):
    model = llama_pair()[0]
    previous = os.umask(umask)
    try:
        for name, save in SAVES.values():
            save(model, tmp_path / name)
        files = [
            tmp_path / "a.gralora.weights.h5",
            tmp_path / "m.keras",
            tmp_path / "peft" / "adapter_config.json",
            tmp_path / "peft" / "adapter_model.safetensors",
        ]
        assert [oct(os.stat(f).st_mode & 0o777) for f in files] == [oct(0o666 & ~umask)] * 4
        assert os.stat(tmp_path / "peft").st_mode & 0o777 == 0o777 & ~umask
        for f in files:
            os.chmod(f, 0o604)
        for name, save in SAVES.values():
            save(model, tmp_path / name)
        assert [oct(os.stat(f).st_mode & 0o777) for f in files] == [oct(0o604)] * 4
    finally:
        os.umask(previous)


def test_a_peft_directory_keeps_its_other_files_and_a_killed_saves_leftovers_are_removed(tmp_path):
    model = adapted_model()
    target = tmp_path / "a.weights.h5"
    dead, alive = (
        tmp_path / f".a.weights.h5.keras_gralora-tmp-{2**22 + 7}-0",
        tmp_path / f".a.weights.h5.keras_gralora-tmp-{os.getpid()}-0",
    )
    dead.write_bytes(b"partial")
    alive.write_bytes(b"another thread's")
    keras_gralora.save_gralora_weights(model, target)
    assert not dead.exists() and alive.exists()
    backbone = llama_pair()[0]
    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "README.md").write_text("model card")
    keras_gralora.save_peft_adapter(backbone, tmp_path / "peft")
    assert sorted(os.listdir(tmp_path / "peft")) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert (tmp_path / "peft" / "README.md").read_text() == "model card"
