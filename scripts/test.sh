#!/usr/bin/env bash
# Runs the test suite once per Keras backend (KERAS_BACKEND is fixed at import,
# so each backend gets its own process), then the multi-device tests. Extra arguments go to pytest.
#
# The backends run side by side: their suites are mostly single-threaded Python, so on a 2-core
# machine they end far sooner together than one after another. Each log is printed whole when all
# have ended; SERIAL=1 runs them one at a time.
source "$(dirname "$0")/env.sh"
set +e  # a failing suite is reported at the end, not fatal
logs=$(mktemp -d)
ARGS=("$@")
# keras.distribution on 8 virtual CPU devices: jax only (see the README), in a process of its own
# because XLA reads the device count when jax starts.
DEVICES=(KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=8 GRALORA_DISTRIBUTED=1)

suite() {  # suite NAME ENV...: pytest with ENV set; its log and exit status go to $logs/NAME.*
  local name=$1
  shift
  env "$@" "$PYTHON" -m pytest -p no:cacheprovider --basetemp="$logs/$name.tmp" "${ARGS[@]}" > "$logs/$name.log" 2>&1
  echo $? > "$logs/$name.rc"
}

names=()
for backend in ${BACKENDS:-jax torch tensorflow}; do
  names+=("$backend")
  if [ "$backend" = torch ]; then  # the shortest suite: the 8-device run follows it
    (suite torch KERAS_BACKEND=torch; ARGS=("$@" tests/distributed); suite jax-8-devices "${DEVICES[@]}") &
  else
    suite "$backend" KERAS_BACKEND="$backend" &
  fi
  if [ -n "${SERIAL:-}" ]; then wait; fi
done
if [[ " ${names[*]} " != *" torch "* ]]; then
  ARGS=("$@" tests/distributed)
  suite jax-8-devices "${DEVICES[@]}" &
fi
wait
names+=(jax-8-devices)

failed=()
for name in "${names[@]}"; do
  echo "===== $name ====="
  cat "$logs/$name.log"
  [ "$(cat "$logs/$name.rc")" = 0 ] || failed+=("$name")
done
rm -rf "$logs"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on: ${failed[*]}"
  exit 1
fi
echo "All passed: ${names[*]}"
