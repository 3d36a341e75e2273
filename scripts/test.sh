#!/usr/bin/env bash
# Runs the test suite once per Keras backend (KERAS_BACKEND is fixed at import,
# so each backend gets its own process), then the multi-device tests. Extra arguments go to pytest;
# a run that `-k` leaves without tests (pytest's exit status 5) passes.
source "$(dirname "$0")/env.sh"
failed=()
for backend in ${BACKENDS:-jax torch tensorflow}; do
  echo "===== KERAS_BACKEND=$backend ====="
  KERAS_BACKEND=$backend "$PYTHON" -m pytest -p no:cacheprovider "$@" || [ $? = 5 ] || failed+=("$backend")
done
# keras.distribution on 8 virtual CPU devices: jax only (see the README), in a process of its own
# because XLA reads the device count when jax starts.
echo "===== KERAS_BACKEND=jax, 8 devices (tests/distributed) ====="
KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=8 GRALORA_DISTRIBUTED=1 \
  "$PYTHON" -m pytest -p no:cacheprovider "$@" tests/distributed || [ $? = 5 ] || failed+=("jax x 8 devices")
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "All backends passed: ${BACKENDS:-jax torch tensorflow}"
