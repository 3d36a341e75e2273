#!/usr/bin/env bash
# Runs the test suite once per Keras backend (KERAS_BACKEND is fixed at import,
# so each backend gets its own process). Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
failed=()
for backend in ${BACKENDS:-jax torch tensorflow}; do
  echo "===== KERAS_BACKEND=$backend ====="
  KERAS_BACKEND=$backend "$PYTHON" -m pytest -p no:cacheprovider "$@" || failed+=("$backend")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "All backends passed: ${BACKENDS:-jax torch tensorflow}"
