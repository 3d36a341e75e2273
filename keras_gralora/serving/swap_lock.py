"""One lock between forward passes and in-place swaps: a pass sees the adapters before a swap or after it, never a mix.

A hot-swap (`hotswap.py`) assigns an adapter's variables one after another.
A forward pass reads them one layer after another. Without a lock, a pass
running beside a swap reads some layers' old weights and others' new ones,
and jax's `predict`, which takes the model's variables out while it runs
and puts them back at its end, would put the old ones back over the swap.

So every model-level pass (`Model.__call__`, `predict`, `evaluate`, `fit`,
their `*_on_batch`, KerasHub's `generate`: wrapped in `guards.py` and
`hub.py`) holds `SWAP_LOCK.reading()`, and a swap holds
`SWAP_LOCK.writing()`. Passes run together; a swap waits for the passes
running to end, and passes that start meanwhile wait for the swap (no swap
waits forever behind a stream of passes). A pass inside a pass in the same
thread (a task calling its backbone, `predict` tracing `model(x)`) is part
of the outer one. A swap inside a pass of its own thread would wait for
itself, so it is refused.
"""

import threading


class SwapLock:
    """Shared for forward passes, exclusive for swaps; see the module docstring."""

    def __init__(self):
        self._condition = threading.Condition(threading.Lock())
        self._passes = 0
        self._swapping = False
        self._swaps_waiting = 0
        self._local = threading.local()

    def depth(self):
        """How many passes this thread is inside (0: none)."""
        return getattr(self._local, "depth", 0)

    def reading(self):
        """Context manager held by a forward pass."""
        return _Reading(self)

    def check_outside_passes(self, where):
        """Raises `ValueError` in a thread inside a pass: a swap there would wait for itself."""
        if self.depth():
            raise ValueError(
                f"{where}: called inside a forward pass, predict or generate of this thread (a callback?); the "
                "swap would wait for that pass to end. Swap between calls, or from another thread."
            )

    def writing(self, where):
        """Context manager held by a swap; `where` names the caller in the error for a swap inside a pass."""
        self.check_outside_passes(where)
        return _Writing(self)


class _Reading:
    __slots__ = ("lock",)

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        lock, local = self.lock, self.lock._local
        depth = getattr(local, "depth", 0)
        if not depth:
            with lock._condition:
                while lock._swapping or lock._swaps_waiting:
                    lock._condition.wait()
                lock._passes += 1
        local.depth = depth + 1

    def __exit__(self, *exc):
        lock, local = self.lock, self.lock._local
        local.depth -= 1
        if not local.depth:
            with lock._condition:
                lock._passes -= 1
                if not lock._passes:
                    lock._condition.notify_all()


class _Writing:
    __slots__ = ("lock",)

    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        lock = self.lock
        with lock._condition:
            lock._swaps_waiting += 1
            try:
                while lock._swapping or lock._passes:
                    lock._condition.wait()
            finally:
                lock._swaps_waiting -= 1
            lock._swapping = True

    def __exit__(self, *exc):
        lock = self.lock
        with lock._condition:
            lock._swapping = False
            lock._condition.notify_all()


SWAP_LOCK = SwapLock()


def reading(method):
    """`method` (a model's pass: `__call__`, `predict`...) run holding `SWAP_LOCK.reading()`."""

    def method_reading(self, *args, **kwargs):
        with _Reading(SWAP_LOCK):
            return method(self, *args, **kwargs)

    method_reading._gralora_guard = method_reading._gralora_swap_lock = True
    method_reading.__wrapped__ = method
    method_reading.__name__, method_reading.__doc__ = method.__name__, method.__doc__
    return method_reading
