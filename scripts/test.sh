#!/usr/bin/env bash
# Runs the test suite once per Keras backend (KERAS_BACKEND is fixed at import, so each backend gets
# its own process), then the multi-device tests. Extra arguments go to pytest; a run that `-k`
# leaves without tests (pytest's exit status 5) passes.
#
# A pytest process keeps about one core busy (measured: torch 350 s of CPU in 325 s), so on a machine
# with two or more cores the runs go in lanes at once (LANES, "|" between lanes), each printed whole
# when it ends; on 2 cores three lanes finished in 1417 s, two in 1472 s, one after another ~2300 s.
# PARALLEL=0 runs them one after another with live output.
#
# First come the checks of scripts/checks.sh (ruff, mkdocs build --strict, the wheel in a fresh
# environment; about a minute); CHECKS=0 skips them. A failed check fails the run after the tests.
source "$(dirname "$0")/env.sh"
checks_status=0
if [ "${CHECKS:-1}" != 0 ]; then
  bash scripts/checks.sh || checks_status=$?
fi
BACKENDS=${BACKENDS:-jax torch tensorflow}
LANES=${LANES:-"tensorflow|jax|torch distributed"}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run() {  # run NAME PYTEST_ARGS...: one backend's suite, or "distributed" (8 virtual CPU devices, jax)
  local name=$1 status=0
  shift
  if [ "$name" = distributed ]; then
    # keras.distribution: jax only (see the README), in a process of its own because XLA reads the
    # device count when jax starts.
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=8 GRALORA_DISTRIBUTED=1 \
      "$PYTHON" -m pytest -p no:cacheprovider --basetemp="$logs/tmp-$name" "$@" tests/distributed || status=$?
  else
    KERAS_BACKEND=$name "$PYTHON" -m pytest -p no:cacheprovider --basetemp="$logs/tmp-$name" "$@" || status=$?
  fi
  if [ $status = 5 ]; then status=0; fi
  echo $status > "$logs/$name.status"
}

title() {
  if [ "$1" = distributed ]; then echo "===== KERAS_BACKEND=jax, 8 devices (tests/distributed) ====="
  else echo "===== KERAS_BACKEND=$1 ====="; fi
}

selected=()
for name in $(echo "$LANES" | tr '|' ' '); do
  if [ "$name" = distributed ] || [[ " $BACKENDS " == *" $name "* ]]; then selected+=("$name"); fi
done
if [ "${PARALLEL:-1}" = 0 ] || [ "$(nproc)" -lt 2 ]; then
  for name in "${selected[@]}"; do
    title "$name"
    run "$name" "$@"
  done
else
  IFS='|' read -ra lanes <<< "$LANES"
  for lane in "${lanes[@]}"; do
    (
      for name in $lane; do
        if [[ " ${selected[*]} " == *" $name "* ]]; then
          { title "$name"; run "$name" "$@"; } > "$logs/$name.log" 2>&1
          echo "finished: $name (exit $(cat "$logs/$name.status"), $SECONDS s since the start)"
        fi
      done
    ) &
  done
  wait
  for name in "${selected[@]}"; do cat "$logs/$name.log"; done
fi
failed=()
if [ $checks_status != 0 ]; then failed+=("checks"); fi
for name in "${selected[@]}"; do
  [ "$(cat "$logs/$name.status" 2>/dev/null)" = 0 ] || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "All passed: ${selected[*]}"
