"""One of two processes (4 CPU devices each) running `processes_scenario.scenario`: `ID PORT SHARED OUT`.

JAX's CPU collectives go through gloo; `keras.distribution.initialize`
joins the two processes (KerasHub's own recipe); each process feeds its
rows of every global batch as a `tf.data.Dataset` (Keras refuses numpy
input whose global batch size it cannot know). The results go to `OUT`
as JSON.
"""

import faulthandler
import json
import os
import sys

process, port, shared, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
faulthandler.dump_traceback_later(300, exit=True)  # a hang ends with every thread's stack in the log
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402

keras.distribution.initialize(job_addresses=f"127.0.0.1:{port}", num_processes=2, process_id=process)

import processes_scenario as scenario  # noqa: E402
import tensorflow as tf  # noqa: E402


def feed(task):
    x, y = scenario.data()
    rows = scenario.local_rows(process)
    local = tf.data.Dataset.from_tensor_slices(({key: value[rows] for key, value in x.items()}, y[rows]))
    return task.fit(local.batch(scenario.BATCH // 2, drop_remainder=True), verbose=0).history["loss"]


result = scenario.scenario(feed, shared, process)
result["process"] = jax.process_index()
with open(out, "w") as file:
    json.dump(result, file)
