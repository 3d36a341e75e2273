#!/usr/bin/env bash
# The main job: fine-tune pretrained MiniLM with GraLoRA on VADER's sentiment
# lexicon (examples/finetune.py), on KERAS_BACKEND (default jax).
# Extra arguments go to the example, e.g. --r 16 --k 4 --epochs 3.
source "$(dirname "$0")/env.sh"
KERAS_BACKEND=${KERAS_BACKEND:-jax} "$PYTHON" examples/finetune.py "$@"
