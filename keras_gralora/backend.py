"""The one seam that knows which backend runs: compiling a pure function, variable placement, processes.

Eager jax and tensorflow dispatch every op on its own (0.1-0.6 ms each,
more than the whole 1024 x 1024 delta's matmul), and eager jax writes
every intermediate to a new buffer (a reshape of a 4096 x 4096 delta is a
64 MiB copy). Compiled, the few ops of a delta become one program.
Torch runs eagerly at no such cost, so it gets the function unchanged.
Measured in `benchmarks/delta.py`.

Under several processes (multi-host jax: `keras.distribution.initialize`;
torch: a `torch.distributed` process group, as under DDP), `to_numpy`
gathers jax arrays sharded over them, and `is_writer` / `all_agree` let
one process write each file while the others wait for it
(`files/one_writer.py`).
"""

import functools

import keras
import numpy as np


def compiled(fn=None, *, static_argnames=()):
    """`fn` compiled as one program for the current backend.

    The backend's own compiler caches per argument shapes (and per value of
    the `static_argnames`, which must be hashable), so decorate module-level
    functions, not per-object closures, to share that cache.

    Args:
        fn: A function of tensors using `keras.ops` only.
        static_argnames: Keyword arguments that are Python values (sizes,
            axis orders, scales) fixed at compile time.

    Examples:
        >>> @compiled(static_argnames=("scale",))
        ... def scaled_sum(x, y, scale):
        ...     return keras.ops.sum(x + y) * scale
        >>> float(scaled_sum(keras.ops.ones((2,)), keras.ops.ones((2,)), scale=3.0))
        12.0
    """
    if fn is None:
        return functools.partial(compiled, static_argnames=static_argnames)
    compile_once = functools.cache(lambda: _compile(fn, tuple(static_argnames)))

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return compile_once()(*args, **kwargs)

    return call


def _compile(fn, static_argnames):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn, static_argnames=static_argnames)
    if backend == "tensorflow":
        import tensorflow as tf

        # Non-tensor arguments are already static for tf.function.
        return tf.function(fn, jit_compile=True)
    return fn


def dispatches_each_op():
    """Whether layers run op by op here (torch, eager), so fewer ops beat an XLA-friendly layout."""
    return keras.backend.backend() == "torch"


def lays_out_variables():
    """Whether new variables are placed by the active `keras.distribution`.

    Keras 3.15 does so on jax only; its TensorFlow distribution backend is a
    prototype ("DO NOT USE") that places nothing, and torch has none.
    """
    return keras.backend.backend() == "jax"


def keep_tokens_sharded(x, axis):
    """`x`, its token `axis` split over the batch's mesh axis, inside a compiled step under a `keras.distribution`.

    A sharding hint for XLA's SPMD partitioner (jax only, where Keras lays
    out variables; the other axes are left to the partitioner); `x` itself
    is returned everywhere else, and when the tokens do not divide evenly.
    GraLoRA's rank-r features keep their tokens where the batch put them:
    without the hint, under KerasHub's layout maps XLA gathers the output
    gradient of each adapted projection over the batch axis instead
    (`benchmarks/sharded_step.py`).
    """
    if not lays_out_variables():
        return x
    distribution = keras.distribution.distribution()
    batch_axis = getattr(distribution, "batch_dim_name", None)
    if batch_axis is None:
        return x
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = distribution.device_mesh
    shards = mesh.shape[mesh.axis_names.index(batch_axis)]
    if not isinstance(x, jax.core.Tracer) or x.shape[axis] % shards:
        return x
    spec = [PartitionSpec.UNCONSTRAINED] * len(x.shape)
    spec[axis] = batch_axis
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh.backend_mesh, PartitionSpec(*spec)))


def add_same_shape(x, y):
    """`x + y` for two tensors of one shape.

    On tensorflow, Keras' `ops.add` takes a `y` whose axes are all 1 but
    one, or empty, for a bias and calls `tf.nn.bias_add`, which refuses an
    empty batch ("Biases must be 1D: [0, 8]"); an empty `y` gives `x`, the
    same empty tensor.
    """
    if keras.backend.backend() == "tensorflow" and 0 in tuple(y.shape):
        return x
    return keras.ops.add(x, y)


def to_numpy(x):
    """`x` (a tensor or a Keras variable) as a numpy array, without numpy 2's copy warning.

    Keras' jax `convert_to_numpy` calls `np.array` on a Keras variable,
    whose `__array__` takes no `copy` argument, so numpy 2 warns
    (DeprecationWarning) at every read of a variable; its value is a plain
    backend tensor, which converts silently on every backend. An array
    sharded over several processes' devices (multi-host jax) is gathered
    whole with JAX's `process_allgather`, a collective: every process
    reads it, in the same order (as every process runs the same calls).
    """
    value = x.value if isinstance(x, keras.Variable) else x
    if spans_processes(value):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return keras.ops.convert_to_numpy(value)


def spans_processes(value):
    """Whether `value` is a jax array with shards on other processes' devices (which no process can fetch alone)."""
    return keras.backend.backend() == "jax" and getattr(value, "is_fully_addressable", True) is False


def register_parameters(model):
    """On torch, makes `model.parameters()` list its variables as they are now (adapters included).

    Keras' torch layers list their variables as torch parameters in a
    `ParameterDict` made when they are built; KerasHub's backbones and tasks
    make it before torch's `Module` machinery can register it (their
    `__setattr__` works around Keras 2), so `parameters()` is empty and
    torch's `DistributedDataParallel` refuses the model ("doesn't have any
    parameter that requires a gradient"). Made again here, it registers,
    with the adapters' variables. Nothing elsewhere.
    """
    if keras.backend.backend() == "torch" and hasattr(model, "_track_variables"):
        model._track_variables()


def gathered(value):
    """`value`, or its whole numpy array when it spans several processes (`to_numpy`; a Keras variable too)."""
    inner = value.value if isinstance(value, keras.Variable) else value
    return to_numpy(inner) if spans_processes(inner) else value


def process_count():
    """How many processes train one model together: jax's (`keras.distribution.initialize`), or torch's
    (`torch.distributed`, as under `DistributedDataParallel`); 1 otherwise."""
    return _processes()[1]


def process_index():
    """This process's number among `process_count()` (0 when there is one)."""
    return _processes()[0]


def _processes():
    """`(this process's number, how many processes)`: torch's process group, jax's processes, or `(0, 1)`."""
    if (group := _torch_group()) is not None:
        return group.get_rank(), group.get_world_size()
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def is_writer():
    """Whether this process writes the files a save makes: process 0 (every process when there is one)."""
    return process_index() == 0


def all_agree(flag):
    """Whether `flag` holds on every process: a collective under several processes (all call it in turn)."""
    if process_count() == 1:
        return bool(flag)
    if (group := _torch_group()) is not None:
        flags = [None] * group.get_world_size()
        group.all_gather_object(flags, bool(flag))  # any process group's backend: gloo, nccl
        return all(flags)
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.array([bool(flag)]))))


def _torch_group():
    """`torch.distributed` when this torch process belongs to a process group, else None."""
    if keras.backend.backend() != "torch":
        return None
    import torch.distributed

    return torch.distributed if torch.distributed.is_available() and torch.distributed.is_initialized() else None
