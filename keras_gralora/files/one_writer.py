"""One writer per file when several processes save the same model (multi-host jax, `keras.distribution`).

Every process runs the same save: the gathers of arrays sharded over the
processes (`backend.to_numpy`) are collectives, which every process must
take part in, in the same order. Process 0 writes the file (through
`atomic.py`); the others write into a scratch folder of their own,
discarded, so no two processes write one path. Then all of them agree on
the outcome (`backend.all_agree`, a collective that also waits for process
0): each returns once the file is complete, or raises if any process
failed, naming the file. Reading needs nothing of the sort: every process
reads the complete file.

Without Keras loaded there is no distribution, so one process writes: the
`convert` command writes files through `atomic.py` and never loads Keras
(nor a backend).
"""

import contextlib
import shutil
import sys
import tempfile


@contextlib.contextmanager
def one_writer(target, where):
    """Yields whether this process writes `target`; under several processes, returns once every one is done."""
    backend = _backend()
    if backend is None or backend.process_count() == 1:
        yield True
        return
    failure = None
    try:
        yield backend.is_writer()
    except BaseException as error:  # reported to the other processes first, then raised
        failure = error
    done = backend.all_agree(failure is None)
    if failure is not None:
        raise failure
    if not done:
        raise OSError(
            f"{where}: another process failed while '{target}' was saved (process 0 writes it, the others wait); "
            "see that process's error. The file was left as it was."
        )


def _backend():
    """`keras_gralora.backend`, or None while Keras is not loaded (no distribution then)."""
    if "keras" not in sys.modules:
        return None
    from keras_gralora import backend

    return backend


@contextlib.contextmanager
def scratch():
    """A private folder for a process that does not write, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="keras_gralora-scratch-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
