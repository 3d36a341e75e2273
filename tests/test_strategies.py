"""GraLoRA under the other backends' own multi-device training: torch's DDP and TensorFlow's MirroredStrategy.

Each runs in fresh processes (`strategy_worker.py`): two DDP ranks over
gloo against one process with whole batches (torch), two logical CPU
devices under MirroredStrategy against no strategy (tensorflow). The
adapters must train to the same values; the DDP ranks save one file,
written by rank 0 alone, which both reload.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("keras_hub")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strategy_worker.py")


def _run(tmp_path, *modes):
    """Runs one worker per `modes` entry (a list of arguments) at once; their results."""
    procs = []
    for i, arguments in enumerate(modes):
        log = open(tmp_path / f"{i}.log", "w")  # noqa: SIM115 (closed below; a pipe could fill and stall a rank)
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, WORKER, *arguments, str(tmp_path / f"{i}.json")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    try:
        for proc, _ in procs:
            proc.wait(timeout=300)
    finally:
        for proc, log in procs:
            proc.kill()
            log.close()
    for i, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"{i}.log").read_text()[-3000:]
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(len(modes))]


def _assert_same_adapters(found, expected):
    assert len(found["adapters"]) == len(expected["adapters"]) > 0
    for a, b in zip(found["adapters"], expected["adapters"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's DistributedDataParallel")
def test_torch_ddp_trains_the_adapters_as_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    rank_0, rank_1, alone = _run(tmp_path, ["ddp", "0", port], ["ddp", "1", port], ["torch"])
    np.testing.assert_allclose(np.add(rank_0["losses"], rank_1["losses"]) / 2, alone["losses"], rtol=1e-5)
    _assert_same_adapters(rank_0, alone)
    _assert_same_adapters(rank_1, alone)
    assert (rank_0["writes"], rank_1["writes"]) == (1, 0)  # one writer: rank 0
    for rank in (rank_0, rank_1):
        _assert_same_adapters({"adapters": rank["reloaded"]}, alone)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's tf.distribute")
def test_tensorflow_mirrored_strategy_trains_the_adapters_as_no_strategy(tmp_path):
    mirrored, alone = _run(tmp_path, ["mirrored"], ["tensorflow"])
    np.testing.assert_allclose(mirrored["losses"], alone["losses"], rtol=1e-5)
    _assert_same_adapters(mirrored, alone)
