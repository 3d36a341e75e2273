"""The multi-device tests need jax with 8 devices, so they run in a process of their own.

`XLA_FLAGS=--xla_force_host_platform_device_count=8` must be set before jax
starts (the README's test command, `scripts/test.sh`, does so and sets
`GRALORA_DISTRIBUTED=1`, under which too few devices is an error). In the
per-backend runs this folder is not collected: keras.distribution places
variables on jax only (see the README's "Sharded training").
"""

import os

import keras
import pytest

DEVICES = 8
devices = 0
if keras.backend.backend() == "jax":
    import jax

    devices = jax.device_count()
if os.environ.get("GRALORA_DISTRIBUTED") == "1" and devices < DEVICES:
    raise pytest.UsageError(
        f"tests/distributed needs jax with {DEVICES} devices, found {devices} on {keras.backend.backend()}: run "
        f"KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count={DEVICES} GRALORA_DISTRIBUTED=1 "
        "pytest tests/distributed"
    )
# processes_worker.py is a script the tests start (it runs on import).
collect_ignore_glob = ["processes_worker.py"] + ([] if devices >= DEVICES else ["test_*.py"])
