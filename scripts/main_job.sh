#!/usr/bin/env bash
# The main job on its default settings, on KERAS_BACKEND (default jax).
# Extra arguments go to the example.
source "$(dirname "$0")/env.sh"
KERAS_BACKEND=${KERAS_BACKEND:-jax} "$PYTHON" examples/quickstart.py "$@"
