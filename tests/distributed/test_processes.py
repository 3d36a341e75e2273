"""GraLoRA across two processes (jax, 4 CPU devices each, gloo) equals one process with all 8 devices.

Two real processes (`processes_worker.py`) join on a free local port and
run `processes_scenario.scenario`: training, then every call that reads or
writes weights (files, merges, exports, hot-swap, routing, generate). This
process runs the same scenario with its 8 devices. Every result must agree,
on both processes, and each file must be written by process 0 alone.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import processes_scenario as scenario
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
pytest.importorskip("keras_hub")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`(one process's results, [process 0's, process 1's])`."""
    root = tmp_path_factory.mktemp("processes")
    shared, alone = root / "shared", root / "alone"
    shared.mkdir(), alone.mkdir()
    port = str(_free_port())
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    script = os.path.join(HERE, "processes_worker.py")
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(open(root / f"{i}.log", "w")) for i in range(2)]  # a full pipe would stall one
        workers = [
            subprocess.Popen(
                [sys.executable, script, str(i), port, str(shared), str(root / f"{i}.json")],
                env=env,
                stdout=logs[i],
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        try:
            for worker in workers:
                worker.wait(timeout=600)
        finally:
            for worker in workers:
                worker.kill()
    for i, worker in enumerate(workers):
        assert worker.returncode == 0, f"process {i} failed:\n{(root / f'{i}.log').read_text()[-4000:]}"
    x, y = scenario.data()

    def feed(task):
        return task.fit(x, y, batch_size=scenario.BATCH, shuffle=False, verbose=0).history["loss"]

    single = scenario.scenario(feed, str(alone))
    return single, [json.loads((root / f"{i}.json").read_text()) for i in range(2)]


NUMBERS = [
    "losses",
    "adapters",
    "outputs",
    "merged outputs",
    "hot-swapped outputs",
    "routed outputs",
    "routed predict",
    "merged export outputs",
    "reloaded outputs",
]


@pytest.mark.parametrize("name", NUMBERS)
def test_every_process_computes_what_one_process_does(runs, name):
    single, processes = runs
    for process in processes:
        expected = single[name]
        if isinstance(expected, list) and expected and isinstance(expected[0], list) and name == "adapters":
            for a, b in zip(process[name], expected):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(process[name], expected, rtol=1e-5, atol=1e-5)


def test_generate_and_merges_agree(runs):
    single, processes = runs
    for name in ("generated", "routed generate"):
        assert all(process[name] == single[name] for process in processes)
    assert all(process["merge keeps layouts"] for process in processes) and single["merge keeps layouts"]


def test_each_file_is_written_once_by_process_zero(runs):
    single, processes = runs
    by_process = {process["process"]: process for process in processes}
    assert by_process[1]["writes"] == []  # it waited while process 0 wrote
    assert sorted(by_process[0]["writes"]) == sorted(single["writes"]) != []
    assert all(process["left over"] == [] for process in processes)


def test_a_save_that_fails_on_the_writing_process_fails_on_every_process(runs):
    _, processes = runs
    by_process = {process["process"]: process for process in processes}
    assert "missing" in by_process[0]["failed save"]  # its own error, naming the folder
    assert "another process failed" in by_process[1]["failed save"]
