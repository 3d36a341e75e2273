"""`python -m keras_gralora convert` under careless and hostile input: one `error:` line and exit 2, or right.

Each case runs the command line in a process of its own (no Keras: it needs
none) on a GraLoRA directory written here with numpy and safetensors.
"""

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "base_model.model.model.layers.0.self_attn.q_proj"


def gralora_directory(path, n_in=16, n_out=8, r=4, k=2, hybrid_r=0, alpha=8.0, authors=False, seed=0):
    """A PEFT GraLoRA directory with random weights; `authors=True` writes the GraLoRA authors' config layout."""
    rng = np.random.default_rng(seed)
    tensors = {
        f"{MODULE}.gralora_A": rng.standard_normal((k, n_in // k, r)).astype("float32"),
        f"{MODULE}.gralora_B": rng.standard_normal((k, r, n_out // k)).astype("float32"),
    }
    if hybrid_r:
        tensors[f"{MODULE}.gralora_A_general.weight"] = rng.standard_normal((hybrid_r, n_in)).astype("float32")
        tensors[f"{MODULE}.gralora_B_general.weight"] = rng.standard_normal((n_out, hybrid_r)).astype("float32")
    config = {"peft_type": "GRALORA", "r": r, "gralora_k": k, "hybrid_r": hybrid_r, "target_modules": ["q_proj"]}
    if authors:  # their r counts the hybrid rank, their scale is gralora_alpha / r
        config.update(r=r + hybrid_r, gralora_alpha=alpha)
    else:
        config.update(alpha=alpha)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(config, f)
    return path


def convert(*args, limits=None):
    """The command line in a fresh process; `limits`: `{resource: bytes}` set in the child before it runs."""

    def set_limits():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails with EFBIG instead
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))

    return subprocess.run(
        [sys.executable, "-m", "keras_gralora", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "no-such-backend", "PYTHONPATH": ROOT},
        cwd=ROOT,
        timeout=300,
        preexec_fn=set_limits,
    )


def refused(done, message):
    """Exit 2 with `message` on one `error:` line, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    last = done.stderr.strip().splitlines()[-1]  # before it, at most tqdm's progress bar
    assert errors == [last] and message in last and "Traceback" not in done.stderr, done.stderr[-2000:]


def listing(path):
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def update(directory):
    """The LoRA update `lora_B @ lora_A` the directory written by `convert` holds, float64."""
    arrays = load_file(os.path.join(directory, "adapter_model.safetensors"))
    a, b = (arrays[f"{MODULE}.lora_{side}.weight"].astype("float64") for side in "AB")
    return b @ a


def test_the_authors_layout_converts_to_the_same_lora_as_peft_layout(tmp_path):
    peft_dir = gralora_directory(tmp_path / "peft", r=4, hybrid_r=2, alpha=6.0)
    theirs = gralora_directory(tmp_path / "theirs", r=4, hybrid_r=2, alpha=6.0, authors=True)
    assert convert(peft_dir, tmp_path / "a").returncode == 0
    done = convert(theirs, tmp_path / "b")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(update(tmp_path / "b"), update(tmp_path / "a"))  # scale 6 / (4 + 2) in both
    config = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (10, 10)  # k * r + hybrid_r, the scale folded into lora_B


def test_out_equal_to_inside_or_holding_in_is_refused_and_in_survives(tmp_path):
    source = gralora_directory(tmp_path / "job" / "gralora")
    before = listing(source)
    os.symlink(source, tmp_path / "alias")
    for target in (source, source / "lora", tmp_path / "job", tmp_path / "alias"):
        refused(convert(source, target), "is, holds or lies inside the input")
    assert listing(source) == before and sorted(os.listdir(tmp_path / "job")) == ["gralora"]


def test_out_a_file_or_deeply_nested_config_or_huge_rank_give_one_error_line(tmp_path):
    source = gralora_directory(tmp_path / "gralora")
    (tmp_path / "taken").write_text("keep me")
    refused(convert(source, tmp_path / "taken"), "a file of that name exists")
    assert (tmp_path / "taken").read_text() == "keep me"
    refused(convert(source, tmp_path / "out", "--rank", "1000000000"), "rank=1000000000 is above")
    nested = gralora_directory(tmp_path / "nested")
    (nested / "adapter_config.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(convert(nested, tmp_path / "out"), "nests its JSON too deeply")
    assert not (tmp_path / "out").exists()


def test_a_full_disk_leaves_the_old_out_and_prints_one_error_line(tmp_path):
    source = gralora_directory(tmp_path / "gralora", n_in=256, n_out=256, r=8)
    assert convert(source, tmp_path / "out", "--rank", "1").returncode == 0
    before = listing(tmp_path / "out")
    refused(convert(source, tmp_path / "out", limits={resource.RLIMIT_FSIZE: 4096}), "cannot write")
    assert listing(tmp_path / "out") == before
    assert sorted(os.listdir(tmp_path)) == ["gralora", "out"]  # no temporary directory left


def test_a_symlinked_out_keeps_its_link_and_an_existing_out_its_owner(tmp_path):
    source = gralora_directory(tmp_path / "gralora")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert convert(source, tmp_path / "link").returncode == 0
    assert os.path.islink(tmp_path / "link") and os.path.isfile(tmp_path / "real" / "adapter_config.json")
    os.chmod(tmp_path / "real", 0o750)
    if os.getuid() == 0:  # root can keep another user's ownership
        os.chown(tmp_path / "real", 12345, 12345)
        os.chown(tmp_path / "real" / "adapter_model.safetensors", 12345, 12345)
        assert convert(source, tmp_path / "link").returncode == 0
        assert (os.stat(tmp_path / "real").st_uid, os.stat(tmp_path / "real").st_mode & 0o777) == (12345, 0o750)
        assert os.stat(tmp_path / "real" / "adapter_model.safetensors").st_uid == 12345
    else:  # a user cannot, and refuses rather than changing the owner
        before = listing(tmp_path / "real")
        os.chmod(tmp_path / "real", 0o777)
        refused(convert(source, tmp_path / "link"), "keeping its owner")
        assert listing(tmp_path / "real") == before
    assert os.path.islink(tmp_path / "link")


def test_a_wide_module_converts_in_memory_proportional_to_its_file(tmp_path):
    """65536 x 65536 at r=4: a dense float64 delta would be 32 GiB; the factors and their errors need ~10 MiB."""
    source = gralora_directory(tmp_path / "wide", n_in=65536, n_out=65536, r=4, k=2)
    done = convert(source, tmp_path / "out", "--rank", "2", limits={resource.RLIMIT_AS: 3 * 2**30})
    assert done.returncode == 0, done.stderr[-2000:]
    error = float(done.stdout.splitlines()[1].split()[-1])
    assert 0 < error < 1
    huge_k = gralora_directory(tmp_path / "huge-k", n_in=8192, n_out=8192, r=128, k=128)  # 8 MiB of weights
    refused(convert(huge_k, tmp_path / "out2"), "GiB to convert (gralora_k=128, r=128")
    assert not (tmp_path / "out2").exists()


def test_without_safetensors_the_command_says_which_extra_to_install(tmp_path):
    """Only a backend extra installed: one line naming the package and the extra, no traceback."""
    source = gralora_directory(tmp_path / "in")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['safetensors'] = None\n")
    done = subprocess.run(
        [sys.executable, "-m", "keras_gralora", "convert", str(source), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "no-such-backend", "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"},
        cwd=ROOT,
        timeout=300,
    )
    refused(done, "convert needs the 'safetensors' package, which is not installed: pip install 'keras_gralora[hub]'")
    assert not (tmp_path / "out").exists()
